"""Startup, refusal to start, restarts and kill -9 (tiny model; live uvicorn for kill -9)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from faceid_testkit import (
    ENGINE_CACHE,
    free_port,
    image_file,
    lfw,
    make_settings,
    running_app,
    write_card,
)
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.domain_errors import StartupError
from app.gallery.storage.sqlite import GalleryStore
from app.main import create_app
from app.settings import REPO_ROOT, Settings
from faces import FacePipeline

PHOTO = lfw("Ai_Sugiyama", 1)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FACEID_"):
            monkeypatch.delenv(key)
    defaults = Settings()
    assert defaults.model_dir == REPO_ROOT / "model_store" / "faceid" / "2"
    assert defaults.gallery_path == Path.cwd().resolve() / "data" / "gallery.sqlite3"
    assert defaults.api_keys == () and not defaults.auth_enabled
    assert (defaults.max_upload_bytes, defaults.max_pixels) == (10 * 1024 * 1024, 40_000_000)
    assert defaults.threshold is None
    assert (defaults.batch_max_size, defaults.batch_max_wait_ms) == (32, 5.0)
    assert (defaults.host, defaults.port, defaults.log_level) == ("127.0.0.1", 8000, "INFO")
    assert defaults.ann_min_faces == 0 and defaults.search_threads == 0
    assert defaults.min_face_size == 40
    assert (defaults.database_url, defaults.workers, defaults.sync_poll_ms) == (None, 1, 250.0)
    monkeypatch.setenv("FACEID_API_KEYS", " a ,b,, ")
    monkeypatch.setenv("FACEID_THRESHOLD", "0.3")
    monkeypatch.setenv("FACEID_PORT", "9001")
    monkeypatch.setenv("FACEID_LOG_LEVEL", "debug")
    monkeypatch.setenv("FACEID_MODEL_DIR", "model_store/other/2")
    monkeypatch.setenv("FACEID_ANN_MIN_FACES", "500000")
    monkeypatch.setenv("FACEID_MIN_FACE_SIZE", "20")
    monkeypatch.setenv("FACEID_DATABASE_URL", "postgresql://u:p@db:5432/faceid")
    monkeypatch.setenv("FACEID_WORKERS", "3")
    configured = Settings()
    assert configured.database_url == "postgresql://u:p@db:5432/faceid"
    assert configured.workers == 3 and "u:p@" not in repr(configured)
    assert configured.ann_min_faces == 500_000 and configured.min_face_size == 20
    assert configured.api_keys == ("a", "b") and configured.auth_enabled
    assert (configured.threshold, configured.port, configured.log_level) == (0.3, 9001, "DEBUG")
    assert configured.model_dir == REPO_ROOT / "model_store" / "other" / "2"


def test_a_database_url_that_is_not_postgresql_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FACEID_DATABASE_URL", "mysql://u@db/faceid")
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings()
    monkeypatch.setenv("FACEID_DATABASE_URL", "")
    assert Settings().database_url is None


def test_threshold_override_replaces_the_cards(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    settings = make_settings(tiny_model_dir, tmp_path, threshold=0.25)
    with running_app(settings, face_pipeline) as client:
        assert client.get("/health").json()["model"]["threshold"] == 0.25


def test_preprocessing_mismatch_refuses_to_start(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    write_card(model, preprocessing_version="dlib-68+v0")
    app = create_app(make_settings(model, tmp_path / "data"), pipeline=face_pipeline)
    with pytest.raises(StartupError, match="preprocessing"), TestClient(app):
        pass


def test_missing_card_refuses_to_start(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "model_card.json").unlink()
    app = create_app(make_settings(model, tmp_path / "data"), pipeline=face_pipeline)
    with pytest.raises(StartupError, match="card"), TestClient(app):
        pass


def test_gallery_of_another_model_version_refuses_to_start(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    store = GalleryStore(data / "gallery.sqlite3", "tiny/test-0", 32)
    store.add_face("f1", "Old Person", np.ones(32, np.float32), "2025-01-01T00:00:00Z")
    store.close()
    app = create_app(make_settings(tiny_model_dir, data), pipeline=face_pipeline)
    with pytest.raises(StartupError, match=r"tiny/test-0.*tiny/test-1"), TestClient(app):
        pass


def test_broken_savedmodel_reports_failed_health(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "saved_model.pb").write_bytes(b"not a protobuf")
    app = create_app(make_settings(model, tmp_path / "data"), pipeline=face_pipeline)
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").json()["status"] == "starting":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        response = client.get("/health")
        assert response.status_code == 503 and response.json() == {"status": "failed"}
        assert client.get("/identities").json()["error"]["code"] == "unavailable"


def test_restart_keeps_the_gallery(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    settings = make_settings(tiny_model_dir, tmp_path / "data")
    with running_app(settings, face_pipeline) as client:
        enrolled = client.post("/identities/Ai Sugiyama/faces", files=image_file(PHOTO))
        assert enrolled.status_code == 201
        client.post("/identities/Someone Else/faces", files=image_file(lfw("Al_Gore")))
        assert client.delete("/identities/Someone Else").status_code == 204
    with running_app(settings, face_pipeline) as client:
        gallery = client.get("/health").json()["gallery"]
        assert (gallery["identities"], gallery["faces"]) == (1, 1)
        assert gallery["change_seq"] == 3  # add, add, remove: the log is read at startup
        detail = client.get("/identities/Ai Sugiyama").json()
        assert [f["face_id"] for f in detail["faces"]] == [enrolled.json()["face_id"]]
        face = client.post("/identify", files=image_file(PHOTO)).json()["faces"][0]
        assert face["identity"] == "Ai Sugiyama"
        assert client.get("/identities/Someone Else").status_code == 404


# ------------------------------------------------------------------- live servers
def _server_env(
    model_dir: Path, data_dir: Path, port: int, engine_cache: Path = ENGINE_CACHE
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEID_")}
    env.update(
        FACEID_MODEL_DIR=str(model_dir),
        FACEID_DATA_DIR=str(data_dir),
        FACEID_HOST="127.0.0.1",
        FACEID_PORT=str(port),
        FACEID_LOG_LEVEL="INFO",
        FACEID_ENGINE_CACHE_DIR=str(engine_cache),
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_health(proc: subprocess.Popen[bytes], base: str, timeout: float = 240.0) -> list[int]:
    """Poll /health until 200; returns the statuses seen (503 while starting)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            response = httpx.get(f"{base}/health", timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        seen.append(response.status_code)
        if response.status_code == 200:
            return seen
        assert response.json() == {"status": "starting"}
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@pytest.mark.slow
@pytest.mark.live_service
def test_python_m_app_survives_kill_9_and_uvicorn_entry_point_serves_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=REPO_ROOT,
            # an empty engine cache: the engines are converted at this start, so the window
            # in which /health says "starting" lasts seconds (a warm cache can close it
            # before the first poll)
            env=_server_env(tiny_model_dir, data, port, tmp_path / "engines"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            seen = _wait_health(proc, base)
            assert 503 in seen  # /health answered "starting" while the model loaded
            enrolled = httpx.post(
                f"{base}/identities/Ai Sugiyama/faces",
                files=image_file(PHOTO),
                headers={"X-Request-ID": "enroll-before-kill"},
                timeout=60,
            )
            assert enrolled.status_code == 201, enrolled.text
            assert httpx.get(f"{base}/health").status_code == 200  # flushes the access log
            proc.send_signal(signal.SIGKILL)  # no shutdown hook runs
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    records = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    access = [r for r in records if r.get("request_id") == "enroll-before-kill"]
    assert access and access[-1]["route"] == "/identities/{identity}/faces"
    assert access[-1]["status"] == 201 and access[-1]["latency_ms"] > 0
    assert any(r.get("msg") == "ready" for r in records)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env=_server_env(tiny_model_dir, data, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_health(proc, base)
        health = httpx.get(f"{base}/health").json()
        assert (health["gallery"]["identities"], health["gallery"]["faces"]) == (1, 1)
        detail = httpx.get(f"{base}/identities/Ai Sugiyama").json()
        assert detail["faces"][0]["face_id"] == enrolled.json()["face_id"]
        found = httpx.post(f"{base}/identify", files=image_file(PHOTO), timeout=60).json()
        assert found["faces"][0]["identity"] == "Ai Sugiyama"
        proc.send_signal(signal.SIGTERM)  # graceful: uvicorn re-raises it once shut down
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.live_service
def test_python_m_app_refuses_a_mismatched_model_quickly(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    write_card(model, preprocessing_version="dlib-68+v0")
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=_server_env(model, tmp_path / "data", free_port()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "dlib-68+v0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.live_service
def test_python_m_app_exits_non_zero_when_the_model_cannot_load(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "saved_model.pb").write_bytes(b"not a protobuf")
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=_server_env(model, tmp_path / "data", free_port()),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 1
    failures = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and "startup failed" in line
    ]
    assert failures and failures[0]["level"] == "CRITICAL"
    assert "SavedModel" in failures[0]["msg"]


@pytest.mark.live_service
def test_python_m_app_with_workers_stops_when_the_model_cannot_load(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """With FACEID_WORKERS > 1 a worker whose model fails to load must not be restarted
    forever by uvicorn's supervisor: every worker stops and the command exits 1 with the
    reason."""
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "saved_model.pb").write_bytes(b"not a protobuf")
    env = _server_env(model, tmp_path / "data", free_port())
    env["FACEID_WORKERS"] = "2"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate()
        pytest.fail(f"still running after 300 s (workers restarted?):\n{err[-3000:]}")
    assert proc.returncode == 1, err[-3000:]
    assert "a worker could not load the model" in err and "SavedModel" in err
    assert err.count("Started server process") <= 2  # no worker was started again
