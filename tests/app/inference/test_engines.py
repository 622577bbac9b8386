"""The lean engines (app/inference/engines.py, engine_cache.py): converted once, cached next
to the gallery, served on LiteRT with the same answers as the in-process TensorFlow Lite
engines; a changed model or runtime is converted again and a damaged cache entry is
rebuilt, never served."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faceid_testkit import ORL_FACE, write_card

import app.inference.engines as engines_module
from app.inference import convert, engine_cache
from app.inference.engine_cache import MANIFEST, prepare
from app.inference.engines import LiteEmbeddingModel, open_engines
from app.inference.model import EmbeddingModel, load_card

REPO_ROOT = Path(__file__).resolve().parents[3]


def _entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.is_dir())


def test_lean_engines_answer_as_the_in_process_engines(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    card = load_card(tiny_model_dir)
    crops = np.random.default_rng(5).integers(0, 256, (7, 112, 112, 3), dtype=np.uint8)
    for engine in ("tflite-int8", "tflite"):
        lean = open_engines(tiny_model_dir, card, engine, cache_dir=tmp_path).model
        assert isinstance(lean, LiteEmbeddingModel) and lean.engine == engine
        before = EmbeddingModel(tiny_model_dir, card, engine=f"{engine}-tf")  # type: ignore[arg-type]
        assert before.engine == f"{engine}-tf"
        for n in (1, 7, 2):  # the interpreter is resized between calls
            cosines = np.sum(lean.embed(crops[:n]) * before.embed(crops[:n]), axis=1)
            assert cosines.min() >= 0.9999
        first = lean.embed(crops[:1])
        lean.embed(crops[1:3])
        np.testing.assert_array_equal(first, lean.embed(crops[:1]))  # no reused buffer
    assert lean.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, card.embedding_dim)
    with pytest.raises(ValueError):
        lean.embed(crops.astype(np.float32))


def test_a_warm_start_loads_the_cache_without_converting(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = prepare(tiny_model_dir, "tflite-int8", tmp_path)
    assert first.converted and first.embedding and set(first.nets) == {"pnet", "rnet", "onet"}

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted although the cache holds the engines")

    monkeypatch.setattr(convert, "build", no_conversion)
    second = prepare(tiny_model_dir, "tflite-int8", tmp_path)
    assert not second.converted and second.directory == first.directory
    assert (second.embedding, second.nets) == (first.embedding, first.nets)
    np.testing.assert_array_equal(second.probe_reference, first.probe_reference)


def test_a_changed_model_runtime_or_engine_gets_its_own_entry(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, cache = tmp_path / "model", tmp_path / "cache"
    shutil.copytree(tiny_model_dir, model)
    first = prepare(model, "tflite-int8", cache)
    write_card(model, threshold=0.61)  # the card is part of the model
    second = prepare(model, "tflite-int8", cache)
    assert second.converted and second.key != first.key
    assert _entries(cache) == [second.key]  # the outdated entry is gone

    real = engine_cache.installed_version

    def newer_litert(*names: str) -> str:
        return "ai-edge-litert==99.0" if "ai-edge-litert" in names else real(*names)

    monkeypatch.setattr(engine_cache, "installed_version", newer_litert)
    third = prepare(model, "tflite-int8", cache)
    assert third.converted and third.key not in (first.key, second.key)
    other_engine = prepare(model, "tflite", cache)
    assert other_engine.converted and other_engine.key != third.key
    assert _entries(cache) == sorted([third.key, other_engine.key])


def _truncate_embedding(entry: Path) -> None:
    path = entry / convert.EMBEDDING_FILE
    path.write_bytes(path.read_bytes()[:-100])


def _flip_a_byte_of_onet(entry: Path) -> None:
    path = entry / "onet.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_the_reference(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["body"]["result"]["probe_reference"][0][0] += 0.5
    (entry / MANIFEST).write_text(json.dumps(manifest))


def _garble_the_manifest(entry: Path) -> None:
    (entry / MANIFEST).write_text("{not json")


@pytest.mark.parametrize(
    "damage", [_truncate_embedding, _flip_a_byte_of_onet, _edit_the_reference, _garble_the_manifest]
)
def test_a_damaged_entry_is_rebuilt_never_served(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    good = prepare(tiny_model_dir, "tflite-int8", tmp_path)
    assert good.directory is not None
    damage(good.directory)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="faceid.engine_cache"):
        again = prepare(tiny_model_dir, "tflite-int8", tmp_path)
    assert again.converted
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert engine_cache._read_entry(again.directory, again.key).embedding == again.embedding  # type: ignore[arg-type]
    assert _entries(tmp_path) == [good.key]


def test_an_unwritable_cache_still_serves(tiny_model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    files = prepare(tiny_model_dir, "tflite-int8", blocker / "cache")
    assert files.converted and files.directory is None and files.embedding


def test_an_engine_that_disagrees_leaves_the_savedmodel_serving(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = load_card(tiny_model_dir)
    monkeypatch.setattr(engines_module, "agreement_floor", lambda int8: 1.01)
    opened = open_engines(tiny_model_dir, card, "tflite-int8", cache_dir=tmp_path)
    assert opened.model.engine == "savedmodel" and opened.lite_nets is not None
    assert opened.model.embed(np.zeros((1, 112, 112, 3), np.uint8)).shape == (1, 32)


def test_auto_picks_the_lean_engine_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert engines_module.resolve_engine("auto") == "tflite-int8"
    assert engines_module.resolve_engine("tflite-int8-tf") == "tflite-int8-tf"


# A service started with the default settings, as `python -m app` builds it, in a fresh
# interpreter: it must answer without TensorFlow (nor keras or mtcnn) ever being imported.
SERVE = """
import json, sys, time
from fastapi.testclient import TestClient
from app.log import configure_logging
from app.main import create_app
from app.settings import Settings

configure_logging("INFO")

settings = Settings(
    model_dir=sys.argv[1], data_dir=sys.argv[2], engine_cache_dir=sys.argv[3],
    log_level="INFO", enroll_quality_floor=0, probe_quality_floor=0,
)
with TestClient(create_app(settings)) as client:
    deadline = time.monotonic() + 600
    while client.get("/health").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    health = client.get("/health").json()
    with open(sys.argv[4], "rb") as fh:
        embedded = client.post("/embed", files={"image": ("face.pgm", fh.read())})
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "mtcnn"})
print(json.dumps({"engine": health["model"]["engine"], "status": embedded.status_code,
                  "faces": len(embedded.json().get("faces", [])), "heavy": heavy}))
"""


def _serve(model_dir: Path, tmp_path: Path, cache: Path) -> tuple[dict[str, object], str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", SERVE, str(model_dir), str(tmp_path / "data"), str(cache),
         str(ORL_FACE)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.subprocess
def test_the_serving_process_never_imports_tensorflow(tiny_model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for start, log_line in (("cold", "engines converted and cached"), ("warm", "from the cache")):
        answer, logs = _serve(tiny_model_dir, tmp_path, cache)
        assert answer == {"engine": "tflite-int8", "status": 200, "faces": 1, "heavy": []}, start
        assert log_line in logs, (start, logs[-3000:])


PREPARE = """
import sys
from pathlib import Path
from app.inference.engine_cache import prepare
files = prepare(Path(sys.argv[1]), "tflite-int8", Path(sys.argv[2]))
print("converted" if files.converted else "loaded", "tensorflow" in sys.modules)
"""


@pytest.mark.subprocess
def test_workers_starting_together_convert_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARE, str(tiny_model_dir), str(tmp_path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    said = sorted(out.strip() for out, _ in outputs)
    assert said == ["converted False", "loaded False", "loaded False"]
    assert len(_entries(tmp_path)) == 1


def test_without_litert_the_engine_runs_in_process(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def no_litert(name: str, *args: object) -> object:
        return None if name == "ai_edge_litert" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", no_litert)
    opened = open_engines(tiny_model_dir, load_card(tiny_model_dir), "tflite-int8", 0, tmp_path)
    assert opened.model.engine == "tflite-int8-tf" and opened.lite_nets is None
    assert not any(tmp_path.iterdir())  # nothing was converted for LiteRT


def test_an_unknown_engine_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        EmbeddingModel(tiny_model_dir, engine="bogus")  # type: ignore[arg-type]
