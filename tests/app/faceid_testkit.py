"""Helpers for the service tests: a tiny random SavedModel, photos, a live app.

The tiny model (uint8 input → cast → small conv → dense → L2 norm, exported with the
real model's ``serving_default`` signature and a card) makes structural tests fast: the
same photo always gets the same embedding, so enroll-then-identify of one photo works,
but it does not recognise people. Recognition tests use the shipped
``model_store/faceid/2``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import REPO_ROOT, Settings
from faces import PREPROCESSING_VERSION, FacePipeline

DATA = Path(os.environ.get("FACEID_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))
LFW = DATA / "lfw" / "train"
MULTI_FACE_PHOTO = DATA / "celeba" / "7409" / "027779.jpg"  # three detectable faces
ORL_FACE = DATA / "orl" / "s1" / "1.pgm"
# One engine cache for every app this test process starts (make_settings): each model is
# converted once per session, not once per app (tests that check the cache pass their own).
ENGINE_CACHE = Path(tempfile.mkdtemp(prefix="faceid-test-engines-"))
atexit.register(shutil.rmtree, ENGINE_CACHE, True)
REAL_MODEL_DIR = REPO_ROOT / "model_store" / "faceid" / "2"
TINY_DIM = 32


def lfw(name: str, number: int = 1) -> Path:
    return LFW / name / f"{name}_{number:04d}.jpg"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error answer: status, the envelope with ``code``, a request id."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    assert response.headers.get("x-request-id")
    return body


def image_file(path: Path, field: str = "image") -> dict[str, Any]:
    return {field: (path.name, path.read_bytes(), "application/octet-stream")}


def blank_png(width: int = 200, height: int = 200) -> bytes:
    """A valid, face-free grey PNG."""
    return png_bytes(width, height, b"\x80" * (width * 3))


def png_bytes(width: int, height: int, row: bytes) -> bytes:
    raw = b"".join(b"\x00" + row for _ in range(height)) if row else b""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pixel_bomb_png() -> bytes:
    """A 10000×10000 PNG header with almost no data: 100 M pixels, a few hundred bytes."""
    return png_bytes(10_000, 10_000, b"")


def write_card(model_dir: Path, **overrides: Any) -> None:
    card = {
        "name": "tiny",
        "version": "test-1",
        "embedding_dim": TINY_DIM,
        "preprocessing_version": PREPROCESSING_VERSION,
        "threshold": 0.5,
        "metrics": {},
        "training_data": "none: random weights for tests",
        "recipe": "tests/app/conftest.py",
        "pretrained": None,
    }
    card.update(overrides)
    (model_dir / "model_card.json").write_text(json.dumps(card), encoding="utf-8")


def build_tiny_model(model_dir: Path, dim: int = TINY_DIM, **card: Any) -> Path:
    """Export a random Keras 3 embedding model with the service's SavedModel contract."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(112, 112, 3), dtype="float32")
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(dim)(x)
    network = keras.Model(inputs, outputs)

    class Serving(tf.Module):
        def __init__(self, net: keras.Model) -> None:
            super().__init__()
            self.net = net

        @tf.function(input_signature=[tf.TensorSpec([None, 112, 112, 3], tf.uint8, name="faces")])
        def serve(self, faces: tf.Tensor) -> dict[str, tf.Tensor]:
            x = tf.cast(faces, tf.float32) / 127.5 - 1.0
            return {"embedding": tf.math.l2_normalize(self.net(x), axis=1)}

    module = Serving(network)
    model_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(model_dir), signatures={"serving_default": module.serve})
    write_card(model_dir, embedding_dim=dim, **card)
    return model_dir


def make_settings(model_dir: Path, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "data_dir": data_dir,
        "api_keys": "",
        "threshold": None,
        "log_level": "WARNING",
        "engine_cache_dir": ENGINE_CACHE,
    }
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/health")
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        assert response.json()["status"] == "starting", response.text
        time.sleep(0.05)
    raise AssertionError("the service did not become ready")


@contextmanager
def running_app(settings: Settings, pipeline: FacePipeline | None = None) -> Iterator[TestClient]:
    """A started app (lifespan run, model loaded and warm) behind a TestClient."""
    app = create_app(settings, pipeline=pipeline)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(
    settings: Settings, pipeline: FacePipeline | None = None, timeout: float = 180.0
) -> Iterator[str]:
    """The app served by uvicorn exactly as ``python -m app`` serves it (``server_config``:
    its protocol, timeouts and connection cap) on a free port, in a thread; yields its base
    URL once ``/health`` is 200."""
    import asyncio
    import threading

    import httpx

    settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    app = create_app(settings, pipeline=pipeline)
    server = uvicorn_server(settings, app)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise AssertionError("the live server did not become ready")
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def uvicorn_server(settings: Settings, app: Any) -> Any:
    import uvicorn

    from app.server import server_config

    return uvicorn.Server(server_config(settings, app))
