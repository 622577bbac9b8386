"""The CompreFace dialect under attack (tiny model): the hostile-input corpus through
``/api/v1/recognition/recognize`` (multipart and base64), and, over a real socket, the key
checked before the body is read, in CompreFace's shape.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faceid_testkit import live_server, make_settings
from fastapi.testclient import TestClient
from test_hostile_inputs import CORPUS, FACE, NO_FACE

from app.errors import _COMPREFACE
from faces import FacePipeline

RECOGNIZE = "/api/v1/recognition/recognize"
KEY = "compreface-hardening-key"
MIB = 1 << 20


def _expected(outcome: object) -> object:
    """A native outcome of the corpus as the dialect answers it: FACE, or (status, number)."""
    if outcome == FACE:
        return FACE
    if outcome == NO_FACE:
        return (400, 28)
    _status, code = outcome  # type: ignore[misc]
    http, number, _ = _COMPREFACE[code]
    return (http, number)


def _outcome(response: Any) -> object:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert list(body) == ["message", "code"] and body["message"], body
        assert "result" not in body
        return (response.status_code, body["code"])
    assert response.status_code == 200 and body["result"], body
    return FACE


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_hostile_corpus_gets_compreface_answers(client: TestClient, name: str) -> None:
    make, expected = CORPUS[name]
    data = make()
    allowed = {_expected(e) for e in expected}
    multipart = client.post(RECOGNIZE, files={"file": (f"{name}.bin", data)})
    encoded = client.post(RECOGNIZE, json={"file": base64.b64encode(data).decode()})
    outcomes = {"multipart": _outcome(multipart), "base64": _outcome(encoded)}
    if not data:  # an empty JSON field: CompreFace's "Field file cannot be empty"
        assert outcomes.pop("base64") == (400, 5)
    for kind, outcome in outcomes.items():
        assert outcome in allowed, (name, kind, outcome, allowed)
    assert len(set(outcomes.values())) == 1, outcomes


# ------------------------------------------------------------- over a real socket
@pytest.fixture(scope="module")
def live(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    settings = make_settings(
        tiny_model_dir, tmp_path_factory.mktemp("live"), api_keys=KEY, body_idle_timeout_s=2.0
    )
    with live_server(settings, face_pipeline) as base:
        yield base


def _exchange(
    base: str, head: bytes, first_bytes: bytes = b""
) -> tuple[int, dict[str, str], Any, socket.socket]:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head + first_bytes)
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body), sock


def _closed(sock: socket.socket, seconds: float = 3.0) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    ("content_type", "key_header", "status", "number"),
    [
        ("multipart/form-data; boundary=b0undary", "", 400, 20),
        ("application/json", "", 400, 20),
        ("multipart/form-data; boundary=b0undary", "x-api-key: wrong\r\n", 404, 10),
        ("application/json", "x-api-key: wrong\r\n", 404, 10),
    ],
)
def test_the_key_is_checked_before_the_body_is_read(
    live: str, content_type: str, key_header: str, status: int, number: int
) -> None:
    head = (
        f"POST {RECOGNIZE} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {50 * MIB}\r\n{key_header}\r\n"
    ).encode()
    t0 = time.monotonic()
    got, headers, body, sock = _exchange(live, head)  # announces 50 MiB, sends none
    with sock:
        assert time.monotonic() - t0 < 2.0
        assert (got, body["code"]) == (status, number), body
        assert list(body) == ["message", "code"]
        assert headers["connection"] == "close"
        assert _closed(sock)


def test_a_body_over_the_base64_cap_is_413_as_it_streams(live: str) -> None:
    head = (
        f"POST {RECOGNIZE} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {20 * MIB}\r\nx-api-key: {KEY}\r\n\r\n"
    ).encode()
    got, _headers, body, sock = _exchange(live, head)
    with sock:
        assert got == 413 and list(body) == ["message", "code"], body
