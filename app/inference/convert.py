"""``python -m app.inference.convert MODEL_DIR ENGINE OUT_DIR``: the engines of a SavedModel,
converted for LiteRT.

The service runs this in a short-lived child process (``engine_cache.prepare``): it is the
only part of serving that needs TensorFlow, and the memory TensorFlow, the SavedModel and
the converter take (over 1 GB) goes back to the system when the child exits. It writes
into OUT_DIR:

- ``embedding.tflite``: the SavedModel as TensorFlow Lite (``tflite``: float32 weights,
  ``tflite-int8``: int8 weights), only if it agrees with the SavedModel on the probe batch
  (the check ``EmbeddingModel`` makes; run here on TensorFlow's interpreter);
- ``pnet.tflite``, ``rnet.tflite``, ``onet.tflite``: mtcnn 1.0.0's networks for the
  ``lite`` detector;
- ``result.json``: the signature's input key, the embedding size, the SavedModel's own
  embeddings of the probe batch (the serving process checks its LiteRT engine against
  them) and, when there is no ``embedding.tflite``, why.

A SavedModel the service cannot serve (``StartupError``) writes ``error.json`` with the
message and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from app.domain_errors import StartupError
from app.inference.model import (
    EmbeddingModel,
    agreement_floor,
    probe_batch,
    worst_cosine,
)
from faces.litert import new_interpreter
from faces.model_contract import OUTPUT_NAME, SIGNATURE_NAME

log = logging.getLogger("faceid.convert")

EMBEDDING_FILE = "embedding.tflite"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
CONVERTIBLE = ("tflite", "tflite-int8")


def build(model_dir: Path, engine: str, out_dir: Path) -> dict[str, Any]:
    """Convert ``model_dir`` for ``engine`` into ``out_dir`` (which must exist); returns
    what ``result.json`` holds. Raises ``StartupError`` for a SavedModel the service
    cannot serve."""
    from faces.mtcnn_lite import convert_networks

    if engine not in CONVERTIBLE:
        raise ValueError(f"engine must be one of {CONVERTIBLE}, not {engine!r}")
    model = EmbeddingModel(model_dir, engine="savedmodel")
    probe = probe_batch()
    reference = model.embed_savedmodel(probe)
    result: dict[str, Any] = {
        "engine": engine,
        "input_key": model.input_key,
        "embedding_dim": model.embedding_dim,
        "probe_reference": reference.tolist(),
        "embedding_problem": None,
    }
    floor = agreement_floor(engine == "tflite-int8")
    try:
        flatbuffer = model.to_flatbuffer(int8_weights=engine == "tflite-int8")
        runner = new_interpreter(flatbuffer, 1, "tensorflow").get_signature_runner(SIGNATURE_NAME)
        got = np.asarray(runner(**{model.input_key: probe})[OUTPUT_NAME], dtype=np.float32)
        worst = worst_cosine(got, reference)
    except Exception as exc:
        log.exception("TensorFlow Lite conversion failed")
        result["embedding_problem"] = f"conversion failed: {exc}"
    else:
        result["worst_cosine_to_savedmodel"] = worst
        if worst >= floor:  # NaN fails too
            (out_dir / EMBEDDING_FILE).write_bytes(flatbuffer)
        else:
            result["embedding_problem"] = (
                f"embeddings differ from the SavedModel's (worst probe cosine {worst:.6f}, "
                f"required {floor})"
            )
    for name, net in convert_networks().items():
        (out_dir / f"{name}.tflite").write_bytes(net)
    (out_dir / RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    """The child process's entry point; 0 on success, 2 for a ``StartupError``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("engine", choices=CONVERTIBLE)
    ap.add_argument("out_dir", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        build(args.model_dir, args.engine, args.out_dir)
    except StartupError as exc:
        (args.out_dir / ERROR_FILE).write_text(json.dumps({"error": str(exc)}), encoding="utf-8")
        print(f"faceid convert: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
