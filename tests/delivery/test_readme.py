"""The README keeps issue 2's promises: two set-up commands that exist, and a curl walk-through
that is exactly what scripts/smoke.sh runs (so every README command is run by CI)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SMOKE = (ROOT / "scripts" / "smoke.sh").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE, re.M))


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README lacks the section '## {title}'"
    return match.group(1)


def test_first_screen_says_what_it_does_then_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:30])
    assert re.search(r"identif", first_screen, re.I) and "face" in first_screen.lower()
    assert "make run" in first_screen and "make test" in first_screen
    assert README.index("make run") < README.index("curl ")


def test_every_make_command_in_the_readme_is_a_makefile_target() -> None:
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"run", "test"} <= used
    missing = used - makefile_targets()
    assert not missing, f"README uses make targets the Makefile lacks: {missing}"


def test_walkthrough_is_exactly_what_the_smoke_script_runs() -> None:
    readme_cmds = [
        ln for ln in section("Walk-through with curl").splitlines() if ln.startswith("curl ")
    ]
    smoke_cmds = re.findall(r"^\s+(curl -sS .*?); then$", SMOKE, re.M)
    assert len(readme_cmds) >= 7
    assert readme_cmds == smoke_cmds
    assert "echo 'this is not a photo' > notes.txt" in README
    assert "\necho 'this is not a photo' > notes.txt\n" in SMOKE
    # Same base URL and photo folder as the README's variables.
    assert "BASE=http://127.0.0.1:8000\nDATA=../shared/data\n" in README
    assert 'BASE="${1:-http://127.0.0.1:8000}"' in SMOKE
    assert 'DATA="$(cd "$ROOT/.." && pwd)/shared/data"' in SMOKE


def test_walkthrough_photos_exist_where_the_shared_data_is() -> None:
    shared = ROOT.parent / "shared" / "data"
    if not shared.is_dir():
        return
    for rel in re.findall(r"\$DATA/(\S+?\.jpg)", README):
        assert (shared / rel).is_file(), rel


def test_sections_in_issue_order() -> None:
    titles = re.findall(r"^## (.+)$", README, re.M)
    wanted = [
        "Two commands",
        "Walk-through with curl",
        "API",
        "Configuration",
        "Training and shipping a model",
        "Accuracy and speed",
        "Privacy",
        "Data and citations",
    ]
    positions = [titles.index(t) for t in wanted]
    assert positions == sorted(positions), titles


def test_links_privacy_and_citations() -> None:
    accuracy = section("Accuracy and speed")
    assert "docs/MODEL.md" in accuracy and "docs/BENCHMARKS.md" in accuracy
    privacy = section("Privacy")
    assert "DELETE /identities/{identity}" in privacy
    assert "never" in privacy and "embedding" in privacy.lower()
    citations = section("Data and citations")
    for needle in (
        "Labeled Faces in the Wild",
        "Learning to Align from Scratch",
        "CelebA",
        "Samaria",
    ):
        assert needle in citations, needle


def test_api_table_lists_every_route() -> None:
    api = section("API")
    for method, path in [
        ("GET", "/health"),
        ("POST", "/identify"),
        ("POST", "/identities/{identity}/faces"),
        ("GET", "/identities"),
        ("DELETE", "/identities/{identity}"),
        ("POST", "/verify"),
        ("POST", "/embed"),
        ("GET", "/metrics"),
    ]:
        assert f"| {method} | `{path}` |" in api, (method, path)
