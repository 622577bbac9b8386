"""The unmodified CompreFace Python SDK (``compreface-sdk==0.6.0``) against a live faceid.

The service runs as ``python -m app`` serves it (uvicorn on a free port, the shipped
model); its key is made the documented way, ``python -m app.keys create --role manage
--collection front-door``. The SDK runs in its own venv (it needs urllib3 1.x) and prints
every answer it got (``compreface_client.py``); this test checks them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clientkit import REPO, client_python
from faceid_testkit import REAL_MODEL_DIR, blank_png, lfw, live_server, make_settings

from faces import FacePipeline

pytestmark = [pytest.mark.subprocess, pytest.mark.live_service, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
NO_FACE = {"message": "No face is found in the given image", "code": 28}


def make_key(data_dir: Path) -> str:
    env = {
        **os.environ,
        "FACEID_DATA_DIR": str(data_dir),
        "FACEID_MODEL_DIR": str(REAL_MODEL_DIR),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.keys",
            "--json",
            "create",
            "--role",
            "manage",
            "--collection",
            "front-door",
            "--name",
            "compreface-sdk",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> dict[str, Any]:
    python = client_python("compreface", HERE / "requirements-compreface.txt")
    data_dir = tmp_path_factory.mktemp("data")
    key = make_key(data_dir)
    blank = tmp_path_factory.mktemp("photos") / "blank.png"
    blank.write_bytes(blank_png())
    photos = {
        "al1": lfw("Al_Gore", 1),
        "al2": lfw("Al_Gore", 2),
        "andre1": lfw("Andre_Agassi", 1),
        "andre2": lfw("Andre_Agassi", 2),
        "amelia1": lfw("Amelia_Vega", 1),
        "amelia2": lfw("Amelia_Vega", 2),
        "stranger": lfw("Adam_Sandler", 1),
        "blank": blank,
    }
    settings = make_settings(REAL_MODEL_DIR, data_dir, sync_poll_ms=100)
    with live_server(settings, pipeline) as base:
        domain, port = base.rsplit(":", 1)
        done = subprocess.run(
            [
                str(python),
                str(HERE / "compreface_client.py"),
                domain,
                port,
                key,
                json.dumps({k: str(v) for k, v in photos.items()}),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def subjects_of(answer: dict[str, Any]) -> list[str]:
    return [s["subject"] for face in answer["result"] for s in face["subjects"]]


def test_adding_examples_and_listing(answers: dict[str, Any]) -> None:
    assert answers["add_al"]["subject"] == "Al Gore" and answers["add_al"]["image_id"]
    assert answers["add_andre"]["subject"] == "Andre Agassi"
    assert answers["add_amelia"]["subject"] == "Amelia Vega"
    assert answers["add_blank"] == NO_FACE
    assert answers["subjects_add"] == {"subject": "Zoe"}
    listing = answers["faces_list"]
    assert listing["total_elements"] == 3 and listing["page_number"] == 0
    assert {f["subject"] for f in listing["faces"]} == {"Al Gore", "Andre Agassi", "Amelia Vega"}
    assert answers["subjects_list"] == {"subjects": ["Al Gore", "Amelia Vega", "Andre Agassi"]}


def test_recognition_is_anchored_at_0_6(answers: dict[str, Any]) -> None:
    al = answers["recognize_al"]
    [face] = al["result"]
    assert face["subjects"][0]["subject"] == "Al Gore"
    assert face["subjects"][0]["similarity"] >= 0.6
    assert len(face["landmarks"]) == 5 and "execution_time" in face  # options: landmarks, status
    assert "plugins_versions" in al
    [stranger] = answers["recognize_stranger"]["result"]
    assert stranger["subjects"][0]["similarity"] < 0.6
    assert answers["recognize_blank"] == NO_FACE


def test_verify_detect_and_verification(answers: dict[str, Any]) -> None:
    [same] = answers["verify_al"]["result"]
    assert same["subject"] == "Al Gore" and same["similarity"] >= 0.6
    assert answers["verify_stranger"]["result"][0]["similarity"] < 0.6
    [detected] = answers["detect"]["result"]
    assert set(detected["box"]) == {"probability", "x_max", "y_max", "x_min", "y_min"}
    [item] = answers["verification"]["result"]
    assert item["face_matches"][0]["similarity"] >= 0.6


def test_rename_and_delete_a_subject(answers: dict[str, Any]) -> None:
    assert answers["rename"] == {"updated": True}
    assert answers["subjects_after_rename"]["subjects"] == ["Al Gore", "Amelia Vega", "Andre"]
    assert subjects_of(answers["recognize_andre"])[0] == "Andre"
    assert answers["recognize_andre"]["result"][0]["subjects"][0]["similarity"] >= 0.6
    assert answers["delete_subject"] == {"subject": "Andre"}
    assert answers["subjects_after_delete"]["subjects"] == ["Al Gore", "Amelia Vega"]
    assert "Andre" not in subjects_of(answers["recognize_andre_after_delete"])


def test_erasure_is_effective(answers: dict[str, Any]) -> None:
    assert answers["delete_all_amelia"] == {"deleted": 1}
    assert "Amelia Vega" not in subjects_of(answers["recognize_amelia_after_delete"])
    assert answers["delete_al"] == {
        "image_id": answers["add_al"]["image_id"],
        "subject": "Al Gore",
    }
    assert answers["delete_al_again"]["code"] == 44
    assert subjects_of(answers["recognize_al_after_delete"]) == []
    assert answers["faces_list_end"]["faces"] == []
    assert answers["subjects_delete_all"] == {"deleted": 0}
