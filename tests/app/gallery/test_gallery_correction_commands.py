"""``python -m app.gallery`` corrections (tiny model): enrol a chosen face, list, move,
rename, merge, set metadata; refusals print why, exit 2 and change nothing; a service
following the gallery sees every correction."""

from __future__ import annotations

from pathlib import Path

import pytest
from faceid_testkit import MULTI_FACE_PHOTO, lfw, make_settings, running_app
from pg_testkit import wait_until

from app.admin.cli import main
from app.gallery.storage import open_storage
from app.gallery.storage.base import IdentityMeta


def _run(monkeypatch: pytest.MonkeyPatch, model_dir: Path, data_dir: Path, *argv: str) -> int:
    monkeypatch.setenv("FACEID_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("FACEID_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FACEID_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("FACEID_ENROLL_QUALITY_FLOOR", "0")
    return main(["--quiet", *argv])


def test_correction_commands(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"

    def run(*argv: str) -> int:
        return _run(monkeypatch, tiny_model_dir, data, *argv)

    settings = make_settings(tiny_model_dir, data, sync_poll_ms=50)
    with running_app(settings) as service:
        assert run("enroll-face", "Ann", str(lfw("George_W_Bush", 1))) == 0
        assert run("enroll-face", "Ann", str(MULTI_FACE_PHOTO), "--face-index", "1") == 0
        assert run("enroll-face", "Bo", str(MULTI_FACE_PHOTO), "--face-index", "0") == 0
        capsys.readouterr()
        assert run("enroll-face", "Cy", str(MULTI_FACE_PHOTO), "--face-index", "30") == 2
        assert "face_index 30" in capsys.readouterr().err
        assert run("enroll-face", "Cy", str(MULTI_FACE_PHOTO), "--box", "0,0,3,3") == 2
        assert run("faces", "Ann") == 0
        ann = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
        assert len(ann) == 2

        assert run("enroll-face", "Ann", str(MULTI_FACE_PHOTO), "--replaces", "nope") == 2
        assert run("faces", "Ann") == 0
        assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ann
        assert (
            run(
                "enroll-face",
                "Ann",
                str(MULTI_FACE_PHOTO),
                "--face-index",
                "2",
                "--replaces",
                ann[1],
            )
            == 0
        )
        capsys.readouterr()
        assert run("faces", "Ann") == 0
        replaced = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
        assert len(replaced) == 2 and replaced[0] == ann[0] and ann[1] not in replaced
        ann = replaced
        assert run("move-face", "Ann", ann[1], "Bo") == 0
        assert run("rename", "Bo", "Ann") == 2  # Ann is enrolled: merge instead
        assert "merge" in capsys.readouterr().err
        assert run("merge", "Bo", "Nobody") == 2
        assert run("set-metadata", "Ann", "--external-id", "e-1", "--data", '{"k": [1]}') == 0
        assert run("set-metadata", "Ann", "--data", "[1]") == 2
        assert run("set-metadata", "Ann", "--data", '{"k": "' + "x" * 5000 + '"}') == 2
        assert run("rename", "Ann", "Anna") == 0
        assert run("merge", "Bo", "Anna") == 0
        store = open_storage(None, data / "gallery.sqlite3", "tiny/test-1", 32)
        try:
            faces = {r.face_id: r.identity for r in store.iter_faces()}
            assert len(faces) == 3 and set(faces.values()) == {"Anna"}
            assert set(ann) <= set(faces)
            assert store.metadata_of(["Anna"]) == {"Anna": IdentityMeta("e-1", {"k": [1]})}
        finally:
            store.close()
        wait_until(
            lambda: (
                service.get("/identities").json()["identities"]
                == [
                    {
                        "identity": "Anna",
                        "faces": 3,
                        "metadata": {"external_id": "e-1", "data": {"k": [1]}},
                    }
                ]
            ),
            timeout=5.0,
        )
