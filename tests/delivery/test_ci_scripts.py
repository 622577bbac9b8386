""".ci/run and scripts/smoke.sh: valid bash, executable, one start command, and a smoke test that
passes against a service that behaves and fails against one that does not (a stand-in server that
speaks the API without a model, so this runs in a second)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from .test_dockerfile import dockerfile_cmd

ROOT = Path(__file__).resolve().parents[2]
CI_RUN = ROOT / ".ci" / "run"
SMOKE = ROOT / "scripts" / "smoke.sh"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.mark.subprocess
@pytest.mark.parametrize("script", [CI_RUN, SMOKE], ids=lambda p: p.name)
def test_script_is_executable_strict_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def ci_start_cmd() -> list[str]:
    match = re.search(r"^START_CMD=\((.*)\)$", CI_RUN.read_text(), re.M)
    assert match, ".ci/run must define START_CMD=(...)"
    return shlex.split(match.group(1))


def make_run_cmd() -> list[str]:
    match = re.search(r"^run:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile needs a run target"
    return match.group(1).split()


def test_one_start_command_for_make_run_ci_and_the_image() -> None:
    ci = ci_start_cmd()
    assert ci[0] == ".venv/bin/python", "CI starts the service with the venv make run creates"
    assert make_run_cmd() == ["$(PY)", *ci[1:]]
    assert dockerfile_cmd() == ["python", *ci[1:]]
    assert ci[1:] == ["-m", "app"]


def test_ci_runs_tests_lint_and_smoke_and_refuses_an_empty_test_run() -> None:
    text = CI_RUN.read_text()
    steps = ("\nmake test", "\nmake lint", '"${START_CMD[@]}" >', 'scripts/smoke.sh "$BASE"')
    order = [text.index(s) for s in steps]
    assert order == sorted(order)
    assert "trap cleanup EXIT" in text
    assert "junitxml" in text and "total - skipped > 0" in text  # pytest exit 5 or 0 tests fail


# --- a stand-in service for the smoke script --------------------------------------------------


class FakeFaceID(BaseHTTPRequestHandler):
    """Answers like the real API; identifies by the uploaded file's name (no model needed).
    `mode` breaks one behaviour so that the smoke script must notice."""

    mode = "ok"
    key = ""
    gallery: ClassVar[set[str]] = set()

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: object | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self) -> bool:
        if self.key and self.headers.get("Authorization") != f"Bearer {self.key}":
            self.reply(401, {"error": {"code": "unauthorized", "message": "key"}})
            return False
        return True

    def upload(self) -> tuple[str, bytes]:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        name = re.search(rb'filename="([^"]*)"', raw)
        content = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
        return (name.group(1).decode() if name else ""), content

    def do_GET(self) -> None:
        if self.path == "/health":
            n = len(self.gallery)
            self.reply(200, {"status": "ok", "gallery": {"identities": n, "faces": 2 * n}})
        else:
            self.reply(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self) -> None:
        if not self.authorized():
            return
        filename, content = self.upload()
        if not content.startswith(b"\xff\xd8"):
            status = 400 if self.mode == "no_415" else 415
            self.reply(status, {"error": {"code": "unsupported_media_type", "message": "?"}})
            return
        person = filename.rsplit("_", 1)[0]
        enroll = re.fullmatch(r"/identities/([^/]+)/faces", self.path)
        if enroll:
            self.gallery.add(enroll.group(1))
            self.reply(201, {"identity": enroll.group(1), "face_id": "f1", "faces_detected": 1})
        elif self.path.startswith("/identify"):
            known = person in self.gallery or (self.mode == "greedy" and bool(self.gallery))
            identity = (person if person in self.gallery else "George_W_Bush") if known else None
            face = {"box": [0, 0, 9, 9], "identity": identity, "score": 0.9 if known else 0.1}
            self.reply(200, {"faces": [face], "model_version": "fake"})
        else:
            self.reply(404, {"error": {"code": "not_found", "message": self.path}})

    def do_DELETE(self) -> None:
        if not self.authorized():
            return
        name = self.path.rsplit("/", 1)[-1]
        if name not in self.gallery:
            self.reply(404, {"error": {"code": "not_found", "message": name}})
            return
        if self.mode != "forgetful":
            self.gallery.discard(name)
        self.reply(204)


@pytest.fixture
def fake_service() -> Iterator[tuple[str, type[FakeFaceID]]]:
    handler = type("Handler", (FakeFaceID,), {"gallery": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def run_smoke(base: str, key: str = "") -> subprocess.CompletedProcess[str]:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    env = {**os.environ, "FACEID_API_KEY": key}
    return subprocess.run([str(SMOKE), base], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.subprocess
def test_smoke_passes_against_a_correct_service_with_a_key(fake_service) -> None:
    base, handler = fake_service
    handler.key = "s3cret"
    res = run_smoke(base, key="s3cret")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "smoke test passed" in res.stdout
    assert res.stdout.count("==> ") == 8


@pytest.mark.subprocess
def test_smoke_without_the_key_fails(fake_service) -> None:
    base, handler = fake_service
    handler.key = "s3cret"
    res = run_smoke(base)
    assert res.returncode != 0
    assert "expected HTTP 201, got 401" in res.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("mode", "complaint"),
    [
        ("greedy", "expected identity 'null', got 'George_W_Bush'"),
        ("no_415", "expected HTTP 415, got 400"),
        ("forgetful", "expected identity 'null', got 'George_W_Bush'"),
    ],
)
def test_smoke_fails_when_the_service_misbehaves(fake_service, mode: str, complaint: str) -> None:
    base, handler = fake_service
    handler.mode = mode
    res = run_smoke(base)
    assert res.returncode == 1, res.stdout + res.stderr
    assert complaint in res.stderr


@pytest.mark.subprocess
def test_smoke_fails_when_nothing_listens() -> None:
    res = run_smoke("http://127.0.0.1:9")
    assert res.returncode != 0


def test_ci_installs_chromium_before_the_tests_when_it_is_missing() -> None:
    text = CI_RUN.read_text()
    check = text.index("if [[ ! -x /usr/bin/chromium ]]")
    install = text.index("apt-get install -y -qq chromium")
    assert check < install < text.index("\nmake test")
    assert '[[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)' in text  # sudo only when not root
