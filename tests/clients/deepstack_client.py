"""Drive faceid with the unmodified ``deepstack-python`` client (run in its own venv by
tests/clients/test_deepstack_python.py).

Usage: ``deepstack_client.py HOST PORT API_KEY NAME ENROL_PHOTO PROBE_PHOTO STRANGER_PHOTO``.
Prints one JSON object: what each client call returned (or the DeepstackException it
raised), as the calling test checks it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import deepstack.core as ds


def call(results: dict[str, Any], name: str, fn: Any, *args: Any) -> None:
    try:
        results[name] = fn(*args)
    except ds.DeepstackException as exc:
        results[name] = {"exception": str(exc)}


def main() -> None:
    host, port, key, name, enrol, probe, stranger = sys.argv[1:8]
    face = ds.DeepstackFace(ip=host, port=int(port), api_key=key, timeout=60)
    read = lambda path: Path(path).read_bytes()  # noqa: E731
    results: dict[str, Any] = {"client_version": "0.9"}
    call(results, "register", face.register, name, read(enrol))
    call(results, "register_again", face.register, name, read(enrol))
    call(results, "faces", face.get_registered_faces)
    call(results, "recognize", face.recognize, read(probe))
    results["recognized"] = ds.get_recognized_faces(results["recognize"])
    call(results, "recognize_stranger", face.recognize, read(stranger))
    results["recognized_stranger"] = ds.get_recognized_faces(results["recognize_stranger"])
    call(results, "detect", face.detect, read(probe))
    wrong = ds.DeepstackFace(ip=host, port=int(port), api_key="wrong-key", timeout=60)
    call(results, "wrong_key_recognize", wrong.recognize, read(probe))
    call(results, "wrong_key_register", wrong.register, name, read(enrol))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
