"""The README keeps issue 2's promises: two set-up commands that exist, and a curl walk-through
that is exactly what scripts/smoke.sh runs (so every README command is run by CI).

These tests check facts the README states (commands, routes, settings and their defaults,
files, test markers), not its prose or the order of its sections."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SMOKE = (ROOT / "scripts" / "smoke.sh").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE, re.M))


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README lacks the section '## {title}'"
    return match.group(1)


def makefile_recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert match, f"the Makefile lacks a recipe for {target}"
    return match.group(1)


def test_the_two_set_up_commands_serve_the_service_and_run_every_test() -> None:
    commands = section("Two commands")
    assert "make run" in commands and "make test" in commands
    assert "$(PY) -m app" in makefile_recipe("run")  # the README's start command
    assert makefile_recipe("test").strip() == "$(PY) -m pytest $(PYTEST_ARGS)"  # no -m filter


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


def test_linked_repository_files_exist() -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).is_file(), target
    accuracy = section("Accuracy and speed")
    assert "docs/MODEL.md" in accuracy and "docs/BENCHMARKS.md" in accuracy


def test_privacy_names_the_erasure_route_and_citations_the_data() -> None:
    assert "DELETE /identities/{identity}" in section("Privacy")
    assert ("DELETE", "/identities/{identity}") in api_table_rows()
    citations = section("Data and citations")
    for needle in (
        "Labeled Faces in the Wild",
        "Learning to Align from Scratch",
        "CelebA",
        "Samaria",
    ):
        assert needle in citations, needle


def api_table_rows() -> set[tuple[str, str]]:
    return set(re.findall(r"^\| ([A-Z]+) \| `(/[^`]*)` \|", section("API"), re.M))


def test_api_table_lists_every_route_the_service_documents_and_no_other() -> None:
    from app.main import create_app
    from app.route_policy import COLLECTION_PREFIX
    from app.settings import Settings

    document = create_app(Settings(api_keys="")).openapi()  # builds no model
    served = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}
    assert served, "the OpenAPI document lists no route"
    # the gallery routes under /collections/{collection} are one row: the same routes
    in_collections = {(m, p) for m, p in served if p.startswith(COLLECTION_PREFIX + "/")}
    assert in_collections and f"`{COLLECTION_PREFIX}/…`" in section("API")
    unprefixed = {(m, p.removeprefix(COLLECTION_PREFIX)) for m, p in in_collections}
    assert unprefixed <= served
    # the CompreFace and DeepStack dialects are documented in their own section
    dialects = {(m, p) for m, p in served if p.startswith(("/api/v1/", "/v1/vision/"))}
    tools = section("Use it from Double Take, Home Assistant or a CompreFace SDK")
    for _, path in dialects:
        literal = [part for part in path.split("/") if part and not part.startswith("{")]
        assert f"{literal[-1]}`" in tools or f"{literal[-1]} " in tools, path
    assert api_table_rows() == served - in_collections - dialects


def configuration_table() -> dict[str, str]:
    """``FACEID_X`` -> its default cell, from the README's configuration table."""
    rows = re.findall(r"^\| `(FACEID_\w+)` \| ([^|]*) \|", section("Configuration"), re.M)
    return {name: default.strip() for name, default in rows}


def _documented_default(field: Any, cell: str) -> None:
    value = field.default
    if field.default_factory is not None:
        return  # computed at start-up (e.g. from the CPU count): described in words
    first = re.match(r"`([^`]*)`", cell)
    if value is None:
        assert cell.startswith("unset"), cell
    elif value in ((), ""):
        assert cell.startswith("empty"), cell
    elif isinstance(value, bool):
        assert first and first.group(1) == str(value).lower(), cell
    elif isinstance(value, int | float):
        assert first and float(first.group(1)) == float(value), cell
    else:  # strings, choices, paths
        assert first and first.group(1) == str(value), cell


def test_every_setting_is_in_the_configuration_table_with_its_default() -> None:
    from app.settings import Settings

    table = configuration_table()
    prefix = Settings.model_config.get("env_prefix", "")
    settings = {f"{prefix}{name}".upper(): field for name, field in Settings.model_fields.items()}
    assert set(table) == set(settings), set(table) ^ set(settings)
    for name, field in settings.items():
        try:
            _documented_default(field, table[name])
        except AssertionError as exc:
            raise AssertionError(f"{name}: default {field.default!r}, README: {exc}") from None


def test_development_names_both_test_targets_and_every_marker() -> None:
    development = section("Development")
    markers = {m.split(":")[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
    assert {"slow", "postgres", "browser", "live_service", "subprocess"} <= markers
    assert "make test" in development and "make test-fast" in development
    for marker in markers:
        assert f"`{marker}`" in development, marker
    # test-fast leaves out exactly the registered markers; `make test` leaves out none
    fast = re.search(r"^FAST_TESTS := (.*)$", MAKEFILE, re.M)
    assert fast and '-m "$(FAST_TESTS)"' in makefile_recipe("test-fast")
    assert set(re.findall(r"not (\w+)", fast.group(1))) == markers
