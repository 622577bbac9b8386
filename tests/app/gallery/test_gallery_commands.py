"""Issue 15: ``python -m app.gallery`` enroll / export / import / reembed.

Bulk enrolment is checked against the HTTP route on the shipped model (same photos, same
embeddings); the other commands run on the tiny test model and a second tiny model
("test-2", 16-d) that stands for a new model version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faceid_testkit import (
    ENGINE_CACHE,
    LFW,
    REAL_MODEL_DIR,
    blank_png,
    build_tiny_model,
    make_settings,
    running_app,
)
from fastapi.testclient import TestClient

from app.admin.cli import main
from app.gallery.crops import new_key
from app.gallery.storage import open_storage
from app.settings import REPO_ROOT
from faces import FacePipeline

PEOPLE = ["Al_Gore", "Colin_Powell", "Tony_Blair"]


def _photo_tree(root: Path, people: list[str], per_person: int) -> list[Path]:
    """root/<person>/ with the first ``per_person`` LFW photos of each person."""
    copied = []
    for person in people:
        folder = root / person
        folder.mkdir(parents=True, exist_ok=True)
        for source in sorted((LFW / person).iterdir())[:per_person]:
            shutil.copy(source, folder / source.name)
            copied.append(folder / source.name)
    return copied


def _rows(data_dir: Path) -> dict[str, tuple[str, str, str | None, np.ndarray]]:
    """face_id → (identity, created_at, content_hash, embedding) of a SQLite gallery."""
    with sqlite3.connect(data_dir / "gallery.sqlite3") as conn:
        rows = conn.execute(
            "SELECT face_id, identity, created_at, content_hash, embedding FROM faces"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], np.frombuffer(r[4], dtype=np.float32)) for r in rows}


def _run(monkeypatch: pytest.MonkeyPatch, model_dir: Path, data_dir: Path, *argv: str) -> int:
    monkeypatch.setenv("FACEID_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("FACEID_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FACEID_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("FACEID_ENGINE_CACHE_DIR", str(ENGINE_CACHE))
    return main(["--quiet", *argv])


@pytest.fixture(scope="module")
def new_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model version (another name/version and embedding size)."""
    return build_tiny_model(
        tmp_path_factory.mktemp("model") / "tiny" / "2", dim=16, version="test-2"
    )


# --------------------------------------------------------------------- enroll
def test_bulk_enrolment_stores_what_the_http_route_stores_and_a_rerun_adds_nothing(
    monkeypatch: pytest.MonkeyPatch, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    photos = _photo_tree(tmp_path / "photos", PEOPLE, 2)
    (tmp_path / "photos" / "Al_Gore" / "blank.png").write_bytes(blank_png())
    (tmp_path / "photos" / "Tony_Blair" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    shutil.copy(photos[0], tmp_path / "photos" / "Al_Gore" / "again.jpg")
    (tmp_path / "photos" / "Not valid!").mkdir()
    shutil.copy(photos[0], tmp_path / "photos" / "Not valid!" / "x.jpg")
    report_path = tmp_path / "report.json"
    bulk = tmp_path / "bulk"
    args = ("enroll", str(tmp_path / "photos"), "--report", str(report_path), "--chunk", "3")
    assert _run(monkeypatch, REAL_MODEL_DIR, bulk, *args) == 0

    report = json.loads(report_path.read_text())
    assert report["totals"] == {
        "enrolled": 6,
        "already_enrolled": 0,
        "duplicate": 1,
        "no_face": 1,
        "low_quality": 0,
        "unreadable": 1,
        "invalid_identity": 1,
        "photos": 10,
    }
    gore = report["identities"]["Al_Gore"]
    assert gore["enrolled"] == 2 and gore["no_face"] == 1 and gore["duplicate"] == 1
    assert {p["photo"] for p in gore["problems"]} == {"blank.png", "again.jpg"}
    stored = _rows(bulk)
    assert len(stored) == 6

    # The same photos through POST /identities/{identity}/faces of the service.
    http = tmp_path / "http"
    with running_app(make_settings(REAL_MODEL_DIR, http), face_pipeline) as client:
        for photo in photos:
            files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
            assert (
                client.post(f"/identities/{photo.parent.name}/faces", files=files).status_code
                == 201
            )
    by_hash = {h: (who, e) for who, _, h, e in _rows(http).values()}
    assert len(by_hash) == 6
    for identity, _, digest, embedding in stored.values():
        assert digest is not None
        http_identity, http_embedding = by_hash[digest]
        assert identity == http_identity
        assert float(np.dot(embedding, http_embedding)) > 0.99999

    # A second run finds everything enrolled.
    assert _run(monkeypatch, REAL_MODEL_DIR, bulk, *args) == 0
    again = json.loads(report_path.read_text())["totals"]
    # (the copy of a photo counts as already enrolled now, no longer as a duplicate)
    assert again["enrolled"] == 0 and again["already_enrolled"] == 7
    assert _rows(bulk).keys() == stored.keys()


@pytest.mark.subprocess
def test_a_killed_bulk_enrolment_completes_on_rerun_without_duplicates(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    people = sorted(p.name for p in LFW.iterdir() if len(list(p.iterdir())) >= 4)[:10]
    photos = _photo_tree(tmp_path / "photos", people, 4)
    data = tmp_path / "data"
    env = {
        **os.environ,
        "FACEID_MODEL_DIR": str(tiny_model_dir),
        "FACEID_DATA_DIR": str(data),
        "FACEID_LOG_LEVEL": "WARNING",
        "FACEID_ENGINE_CACHE_DIR": str(ENGINE_CACHE),
    }
    cmd = [sys.executable, "-m", "app.gallery", "--quiet", "enroll", str(tmp_path / "photos")]
    cmd += ["--chunk", "1", "--report", str(tmp_path / "r.json")]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 180
    stored = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (data / "gallery.sqlite3").exists():
                with sqlite3.connect(data / "gallery.sqlite3", timeout=30) as conn:
                    try:
                        stored = conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
                    except sqlite3.OperationalError:  # schema not created yet
                        stored = 0
                if stored >= 3:
                    break
            time.sleep(0.02)
        proc.kill()
    finally:
        proc.wait(30)
    assert 3 <= stored < len(photos), "the run was not caught midway"
    before = _rows(data)
    assert len(before) < len(photos)

    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 0
    after = _rows(data)
    report = json.loads((tmp_path / "r.json").read_text())["totals"]
    assert report["already_enrolled"] == len(before)
    refused = report["no_face"] + report["low_quality"]
    assert report["enrolled"] + report["already_enrolled"] + refused == len(photos)
    pairs = [(who, digest) for who, _, digest, _ in after.values()]
    assert len(pairs) == len(set(pairs)) == report["enrolled"] + len(before)  # no duplicates
    assert set(before) <= set(after)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}
    assert {d for _, d in pairs} <= digests


# ------------------------------------------------------------- export / import
def _enroll_over_http(client: TestClient, photos: list[Path]) -> None:
    for photo in photos:
        files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
        assert client.post(f"/identities/{photo.parent.name}/faces", files=files).status_code == 201


def _identify(client: TestClient, photo: Path) -> dict[str, object]:
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    response = client.post("/identify", files=files, params={"top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    body.pop("timing_ms", None)
    return body


def test_export_then_import_into_an_empty_data_dir_gives_identical_answers(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    face_pipeline: FacePipeline,
    tmp_path: Path,
) -> None:
    photos = _photo_tree(tmp_path / "photos", PEOPLE, 2)
    first, second = tmp_path / "first", tmp_path / "second"
    with running_app(make_settings(tiny_model_dir, first), face_pipeline) as client:
        _enroll_over_http(client, photos)
        client.delete(f"/identities/{PEOPLE[2]}")  # an erased person is not exported
        answers = [_identify(client, p) for p in photos]
    archive = tmp_path / "backup" / "gallery.zip"
    assert _run(monkeypatch, tiny_model_dir, first, "export", str(archive)) == 0
    assert not archive.with_name("gallery.zip.partial").exists()
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "faceid-gallery" and manifest["format_version"] == 1
    assert manifest["model"] == "tiny/test-1" and manifest["faces"] == 4
    assert np.load(archive)["embeddings"].shape == (4, 32)  # a valid .npz too

    assert _run(monkeypatch, tiny_model_dir, second, "import", str(archive)) == 0
    assert _rows(second).keys() == _rows(first).keys()
    for face_id, (who, created, digest, embedding) in _rows(first).items():
        who2, created2, digest2, embedding2 = _rows(second)[face_id]
        assert (who, created, digest) == (who2, created2, digest2)
        assert np.array_equal(embedding, embedding2)
    with running_app(make_settings(tiny_model_dir, second), face_pipeline) as client:
        assert [_identify(client, p) for p in photos] == answers
        faces = client.get(f"/identities/{PEOPLE[0]}").json()["faces"]
        assert len(faces) == 2
    # importing again changes nothing
    assert _run(monkeypatch, tiny_model_dir, second, "import", str(archive)) == 0
    assert len(_rows(second)) == 4


def test_import_refuses_another_models_file_or_a_damaged_one_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    new_model_dir: Path,
    face_pipeline: FacePipeline,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photos = _photo_tree(tmp_path / "photos", PEOPLE[:1], 2)
    with running_app(make_settings(tiny_model_dir, tmp_path / "old"), face_pipeline) as client:
        _enroll_over_http(client, photos)
    archive = tmp_path / "old.zip"
    assert _run(monkeypatch, tiny_model_dir, tmp_path / "old", "export", str(archive)) == 0

    target = tmp_path / "new"
    assert _run(monkeypatch, new_model_dir, target, "import", str(archive)) == 2
    err = capsys.readouterr().err
    assert "tiny/test-1" in err and "tiny/test-2" in err and "Nothing was written" in err
    assert _rows(target) == {}

    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "embeddings.npy":
                data = data[:-4] + b"\x00\x00\x80\x7f"  # the last value becomes +inf
            dst.writestr(item, data)
    assert _run(monkeypatch, tiny_model_dir, target, "import", str(damaged)) == 2
    assert "checksum" in capsys.readouterr().err
    assert _rows(target) == {}
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert _run(monkeypatch, tiny_model_dir, target, "import", str(tmp_path / "junk.zip")) == 2
    assert _rows(target) == {}


# --------------------------------------------------------------------- reembed
def test_reembed_from_photos_keeps_face_ids_and_the_new_service_recognises_them(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    new_model_dir: Path,
    face_pipeline: FacePipeline,
    tmp_path: Path,
) -> None:
    photos = _photo_tree(tmp_path / "photos", PEOPLE, 2)
    old, new = tmp_path / "old", tmp_path / "new"
    with running_app(make_settings(tiny_model_dir, old), face_pipeline) as client:
        _enroll_over_http(client, photos)
    # the photos folder is reorganised since: matching is by content, not by path
    moved = tmp_path / "archive-of-photos"
    moved.mkdir()
    for i, photo in enumerate(photos[:-1]):  # one photo is lost
        shutil.copy(photo, moved / f"{i}.jpg")
    monkeypatch.setenv("FACEID_MODEL_DIR", str(tiny_model_dir))
    report_path = tmp_path / "reembed.json"
    code = _run(
        monkeypatch, tiny_model_dir, old, "reembed", "--to-model-dir", str(new_model_dir),
        "--to-data-dir", str(new), "--photos", str(moved), "--report", str(report_path),
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert code == 1 and not report["complete"]  # the lost photo's face is left behind
    assert report["from_photos"] == 5 and len(report["missing"]) == 1
    before, after = _rows(old), _rows(new)
    assert (
        report["missing"][0]["face_id"] in before and report["missing"][0]["face_id"] not in after
    )
    assert set(after) < set(before)
    for face_id, (who, created, digest, embedding) in after.items():
        assert (who, created, digest) == before[face_id][:3]
        assert embedding.shape == (16,)
    # the new service serves the new gallery and recognises the re-embedded people
    with running_app(make_settings(new_model_dir, new), face_pipeline) as client:
        body = _identify(client, photos[0])
        assert body["faces"][0]["candidates"][0]["identity"] == PEOPLE[0]
    # the old gallery is untouched; a rerun with the lost photo back completes the move
    shutil.copy(photos[-1], moved / "found-again.jpg")
    code = _run(
        monkeypatch, tiny_model_dir, old, "reembed", "--to-model-dir", str(new_model_dir),
        "--to-data-dir", str(new), "--photos", str(moved), "--report", str(report_path),
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert code == 0 and report["already_done"] == 5 and report["from_photos"] == 1
    assert set(_rows(new)) == set(before) and len(_rows(old)) == 6


def test_reembed_from_kept_crops_needs_no_photos(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    new_model_dir: Path,
    face_pipeline: FacePipeline,
    tmp_path: Path,
) -> None:
    photos = _photo_tree(tmp_path / "photos", PEOPLE[:2], 2)
    key = new_key()
    old, new = tmp_path / "old", tmp_path / "new"
    settings = make_settings(tiny_model_dir, old, keep_aligned_crops=True, crop_key=key)
    with running_app(settings, face_pipeline) as client:
        _enroll_over_http(client, photos)
    monkeypatch.setenv("FACEID_CROP_KEY", key)
    report_path = tmp_path / "reembed.json"
    code = _run(
        monkeypatch, tiny_model_dir, old, "reembed", "--to-model-dir", str(new_model_dir),
        "--to-data-dir", str(new), "--from-crops", "--report", str(report_path),
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert code == 0 and report["complete"] and report["from_crops"] == 4
    assert set(_rows(new)) == set(_rows(old))
    # embedded from the same crops the new model would make from the photos
    with running_app(make_settings(new_model_dir, tmp_path / "fresh"), face_pipeline) as client:
        _enroll_over_http(client, photos)
    fresh = {digest: e for _, _, digest, e in _rows(tmp_path / "fresh").values()}
    for _, _, digest, embedding in _rows(new).values():
        assert float(np.dot(embedding, fresh[digest])) > 0.9999
    # without the key, --from-crops is a clear configuration error
    monkeypatch.delenv("FACEID_CROP_KEY")
    code = _run(
        monkeypatch, tiny_model_dir, old, "reembed", "--to-model-dir", str(new_model_dir),
        "--to-data-dir", str(tmp_path / "other"), "--from-crops",
        "--report", str(report_path),
    )  # fmt: skip
    assert code == 2


# ------------------------------------------------- while serving, on both engines
@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_bulk_enrolment_while_the_service_serves_is_picked_up_and_exports_across_engines(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    face_pipeline: FacePipeline,
    tmp_path: Path,
    engine: str,
) -> None:
    from pg_testkit import wait_until

    overrides: dict[str, str] = {}
    if engine == "postgresql":
        cluster = request.getfixturevalue("postgres")
        cluster.reset()
        overrides["database_url"] = cluster.url
        monkeypatch.setenv("FACEID_DATABASE_URL", cluster.url)
    photos = _photo_tree(tmp_path / "photos", PEOPLE, 2)
    data = tmp_path / "data"
    settings = make_settings(tiny_model_dir, data, **overrides)
    with running_app(settings, face_pipeline) as client:
        assert client.get("/identities").json()["total"] == 0
        args = ("enroll", str(tmp_path / "photos"), "--report", str(tmp_path / "r.json"))
        assert _run(monkeypatch, tiny_model_dir, data, *args) == 0
        enrolled = json.loads((tmp_path / "r.json").read_text())["totals"]["enrolled"]
        assert enrolled >= 5
        # the running service follows the change log: the new faces are matchable
        wait_until(lambda: client.get("/health").json()["gallery"]["faces"] == enrolled, 10.0)
        body = _identify(client, photos[0])
        assert body["faces"][0]["candidates"][0]["identity"] == PEOPLE[0]
        answers = [_identify(client, p) for p in photos]
        archive = tmp_path / "gallery.zip"
        assert _run(monkeypatch, tiny_model_dir, data, "export", str(archive)) == 0
    # into a SQLite gallery elsewhere: the same faces, the same answers
    monkeypatch.delenv("FACEID_DATABASE_URL", raising=False)
    moved = tmp_path / "moved"
    assert _run(monkeypatch, tiny_model_dir, moved, "import", str(archive)) == 0
    assert len(_rows(moved)) == enrolled
    with running_app(make_settings(tiny_model_dir, moved), face_pipeline) as client:
        assert [_identify(client, p) for p in photos] == answers


@pytest.mark.postgres
def test_kept_crops_on_postgresql_move_to_a_new_model_and_go_with_erasure(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    new_model_dir: Path,
    face_pipeline: FacePipeline,
    tmp_path: Path,
) -> None:
    import psycopg

    cluster = request.getfixturevalue("postgres")
    cluster.reset()
    key = new_key()
    photos = _photo_tree(tmp_path / "photos", PEOPLE[:2], 2)
    settings = make_settings(
        tiny_model_dir,
        tmp_path / "unused",
        database_url=cluster.url,
        keep_aligned_crops=True,
        crop_key=key,
    )
    with running_app(settings, face_pipeline) as client:
        _enroll_over_http(client, photos)
        monkeypatch.setenv("FACEID_DATABASE_URL", cluster.url)
        monkeypatch.setenv("FACEID_CROP_KEY", key)
        code = _run(
            monkeypatch, tiny_model_dir, tmp_path / "unused", "reembed",
            "--to-model-dir", str(new_model_dir), "--to-data-dir", str(tmp_path / "new"),
            "--from-crops", "--report", str(tmp_path / "r.json"),
        )  # fmt: skip
        assert code == 0
        assert json.loads((tmp_path / "r.json").read_text())["from_crops"] == 4
        assert len(_rows(tmp_path / "new")) == 4
        with psycopg.connect(cluster.url) as conn:
            sealed = conn.execute("SELECT COUNT(*) FROM faces WHERE crop IS NOT NULL").fetchone()
        assert sealed is not None and sealed[0] == 4
        assert client.delete(f"/identities/{PEOPLE[0]}").status_code == 204
        with psycopg.connect(cluster.url) as conn:
            rows = conn.execute("SELECT identity, crop IS NOT NULL FROM faces").fetchall()
        assert len(rows) == 2 and all(who == PEOPLE[1] and kept for who, kept in rows)


# ---------------------------------------------------------------- sharded enrolment
def test_shards_split_people_stably_and_completely() -> None:
    from app.admin.bulk import Shard

    names = [f"person_{i}" for i in range(300)]
    shards = [Shard.parse(f"{i}/3") for i in (1, 2, 3)]
    owners = [[s for s in shards if s.owns(name)] for name in names]
    assert all(len(o) == 1 for o in owners)  # every person in exactly one share
    sizes = [sum(1 for o in owners if o[0] is s) for s in shards]
    assert min(sizes) > 60  # and the shares are not lopsided
    assert [Shard.parse("2/3").owns(n) for n in names] == [shards[1].owns(n) for n in names]
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


@pytest.mark.postgres
@pytest.mark.subprocess
def test_two_sharded_enrolments_on_one_postgresql_enrol_every_photo_once(
    postgres: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    postgres.reset()
    people = sorted(p.name for p in LFW.iterdir() if len(list(p.iterdir())) >= 2)[:12]
    photos = _photo_tree(tmp_path / "photos", people, 2)
    env = {
        **os.environ,
        "FACEID_MODEL_DIR": str(tiny_model_dir),
        "FACEID_DATABASE_URL": postgres.url,
        "FACEID_LOG_LEVEL": "WARNING",
        "FACEID_ENGINE_CACHE_DIR": str(ENGINE_CACHE),
    }

    def run_shards(tag: str) -> list[dict[str, Any]]:
        command = [sys.executable, "-m", "app.gallery", "--quiet", "enroll"]
        command.append(str(tmp_path / "photos"))
        procs = [
            subprocess.Popen(
                [*command, "--shard", f"{i}/2", "--report", str(tmp_path / f"{tag}-{i}.json")],
                cwd=REPO_ROOT,
                env=env,
            )
            for i in (1, 2)
        ]
        assert [p.wait(300) for p in procs] == [0, 0]
        return [json.loads((tmp_path / f"{tag}-{i}.json").read_text()) for i in (1, 2)]

    first = run_shards("first")
    assert [r["shard"] for r in first] == ["1/2", "2/2"]
    seen = [set(r["identities"]) for r in first]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(people)
    assert all(r["totals"]["photos"] > 0 for r in first)  # both shares had work

    store = open_storage(postgres.url, tmp_path / "unused", *_card_of(tiny_model_dir))
    try:
        stored = [(f.identity, f.content_hash) for f in store.iter_faces()]
    finally:
        store.close()
    enrolled = sum(r["totals"]["enrolled"] for r in first)
    assert len(stored) == len(set(stored)) == enrolled  # every photo at most once
    refused = sum(r["totals"]["no_face"] + r["totals"]["low_quality"] for r in first)
    assert enrolled + refused == len(photos)  # ... and every photo once

    again = run_shards("again")
    assert sum(r["totals"]["enrolled"] for r in again) == 0
    assert sum(r["totals"]["already_enrolled"] for r in again) == enrolled

    out = tmp_path / "merged.json"
    merge = [sys.executable, "-m", "app.gallery", "merge-reports", str(out)]
    merge += [str(tmp_path / f"first-{i}.json") for i in (1, 2)]
    assert subprocess.run(merge, cwd=REPO_ROOT, env=env, timeout=120).returncode == 0
    merged = json.loads(out.read_text())
    assert merged["shards"] == ["1/2", "2/2"]
    assert merged["totals"]["enrolled"] == enrolled
    assert merged["totals"]["photos"] == len(photos)
    assert set(merged["identities"]) == set(people)


def _card_of(model_dir: Path) -> tuple[str, int]:
    from app.inference.model import load_card

    card = load_card(model_dir)
    return card.model_id, card.embedding_dim
