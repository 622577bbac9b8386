"""The unmodified ``deepstack-python==0.9`` (the client of Home Assistant's deepstack_face
integration, which pins 0.8, a subset) against a live faceid with an API key: register,
list, recognise (the enrolled person by name, a stranger ``unknown``), detect, and a wrong
key raised as the client raises it. The client has no delete or match: those are driven
with the project's own httpx, on the same live service.

The client gets a venv of its own, made by ``clientkit`` from
tests/clients/requirements-deepstack.txt (pinned); outside CI a venv that cannot be made (no
PyPI) skips, with CI=true it fails.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import clientkit
import httpx
import pytest
from faceid_testkit import REAL_MODEL_DIR, lfw, live_server, make_settings

from faces import FacePipeline

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-deepstack.txt"
CLIENT = HERE / "deepstack_client.py"
KEY = "deepstack-python-test-key"
PERSON, STRANGER = "Al_Gore", "Adam_Sandler"
NAME = "Al Gore"

pytestmark = [pytest.mark.subprocess, pytest.mark.live_service]


@pytest.fixture(scope="module")
def client_python() -> Path:
    """The python of a venv holding the pinned, unmodified client (``clientkit``)."""
    return clientkit.client_python("deepstack", REQUIREMENTS)


@pytest.fixture(scope="module")
def base(pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(REAL_MODEL_DIR, tmp_path_factory.mktemp("ds-live"), api_keys=KEY)
    with live_server(settings, pipeline) as url:
        yield url


def test_deepstack_python_drives_faceid(client_python: Path, base: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    command = [
        str(client_python), str(CLIENT), host, port, KEY, NAME,
        str(lfw(PERSON, 1)), str(lfw(PERSON, 2)), str(lfw(STRANGER, 1)),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout)

    assert results["register"] == "face added"
    assert results["register_again"] == "face updated"
    assert results["faces"] == [NAME]
    [face] = results["recognize"]
    assert face["userid"] == NAME and face["confidence"] >= 0.6
    assert results["recognized"] == {NAME: round(face["confidence"] * 100, 1)}
    [stranger] = results["recognize_stranger"]
    assert stranger["userid"] == "unknown" and stranger["confidence"] == 0
    assert results["recognized_stranger"] == {}
    [detected] = results["detect"]
    assert set(detected) == {"confidence", "x_min", "y_min", "x_max", "y_max"}
    assert detected["x_min"] == face["x_min"] and detected["y_max"] == face["y_max"]
    for call in ("wrong_key_recognize", "wrong_key_register"):
        assert results[call] == {"exception": "Error from Deepstack request, status code: 401"}, (
            results[call]
        )


def test_delete_and_match_with_httpx(base: str) -> None:
    face = f"{base}/v1/vision/face"
    photo = lfw(PERSON, 1).read_bytes()
    with httpx.Client(timeout=60) as http:
        registered = http.post(
            f"{face}/register",
            data={"api_key": KEY, "userid": "Match Test"},
            files={"image": ("image", photo)},
        )
        assert registered.status_code == 200, registered.text
        same = http.post(
            f"{face}/match",
            data={"api_key": KEY},
            files={
                "image1": ("1.jpg", photo),
                "image2": ("2.jpg", lfw(PERSON, 2).read_bytes()),
            },
        )
        assert same.status_code == 200, same.text
        assert same.json()["success"] is True and same.json()["similarity"] >= 0.6
        # Double Take's delete: a form without a file
        deleted = http.post(f"{face}/delete", data={"userid": "Match Test", "api_key": KEY})
        assert deleted.json() == {"success": True, "duration": 0}
        listed = http.post(f"{face}/list", data={"api_key": KEY}).json()["faces"]
        assert "Match Test" not in listed
        refused = http.post(f"{face}/delete", data={"userid": "Match Test", "api_key": "no"})
        assert refused.status_code == 401
        assert refused.json() == {"success": False, "error": "Incorrect api key", "duration": 0}
