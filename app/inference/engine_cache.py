"""The converted engines of the lean CPU engines, made once and kept next to the gallery.

``prepare`` returns the verified flatbuffers (embedding model and the three MTCNN
networks) for a model directory and engine. It looks in the cache directory first
(``FACEID_ENGINE_CACHE_DIR``, default ``<data dir>/engine-cache``) for an entry under this
key:

- a SHA-256 over every file of the model directory (the SavedModel and its card),
- the installed versions of TensorFlow (the converter), ai-edge-litert (the runtime that
  serves) and mtcnn (the detector's weights), read with ``importlib.metadata`` so that
  the serving process does not import TensorFlow to know them,
- the engine and the source of the converting modules (``CONVERTER_SOURCES``).

Anything else changed is a new key, and the old entry of the same model directory and
engine is removed. An entry's ``manifest.json`` records the SHA-256 of each of its files
and of itself; an entry that fails a check (a truncated or edited file, a missing one, a
manifest that does not parse) is logged, deleted and built again: never served. Without
an entry, the SavedModel is converted by ``python -m app.inference.convert`` in a child
process (in this process when TensorFlow is loaded here already, as in the training code
and the tests), into a temporary directory that becomes the entry in one rename.

An exclusive file lock on the cache directory covers the check and the build, so of
several workers starting at once (``FACEID_WORKERS``) one converts and the others wait and
then load its entry. A cache directory that cannot be written is no reason to stop: the
engines are built in a temporary directory and not kept (every start converts).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.domain_errors import StartupError
from app.inference import convert

log = logging.getLogger("faceid.engine_cache")

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
NET_NAMES = ("pnet", "rnet", "onet")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: The modules whose code decides what a conversion produces.
CONVERTER_SOURCES = ("app/inference/convert.py", "app/inference/model.py", "faces/mtcnn_lite.py")
_TENSORFLOW_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "tensorflow-macos", "tensorflow-intel")
#: How long the converting child may take (about 20 s on two busy cores).
CONVERT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class EngineFiles:
    """Verified engines for one model and engine: flatbuffers plus what the serving
    process needs to run and re-check them."""

    key: str
    engine: str
    input_key: str
    embedding_dim: int
    probe_reference: np.ndarray  # the SavedModel's embeddings of ``model.probe_batch()``
    embedding: bytes | None  # None: conversion failed or disagreed (``embedding_problem``)
    embedding_problem: str | None
    nets: dict[str, bytes] = field(repr=False)
    directory: Path | None = None  # the cache entry; None when nothing could be kept
    converted: bool = False  # built by this call, not loaded from the cache


def installed_version(*names: str) -> str:
    """``name==version`` of the first installed distribution of ``names``, or ``absent``."""
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return f"{name}=={importlib.metadata.version(name)}"
    return "absent"


def _hash_tree(digest: Any, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")


def key_parts(model_dir: Path, engine: str) -> dict[str, str]:
    """What the cache key is made of (the model directory by content)."""
    model_hash = hashlib.sha256()
    _hash_tree(model_hash, Path(model_dir))
    code_hash = hashlib.sha256()
    for rel in CONVERTER_SOURCES:
        code_hash.update((_PACKAGE_ROOT / rel).read_bytes())
    return {
        "format": str(CACHE_FORMAT),
        "engine": engine,
        "model": model_hash.hexdigest(),
        "converter_code": code_hash.hexdigest(),
        "tensorflow": installed_version(*_TENSORFLOW_DISTRIBUTIONS),
        "litert": installed_version("ai-edge-litert"),
        "mtcnn": installed_version("mtcnn"),
    }


def cache_key(parts: dict[str, str]) -> str:
    """The entry name of ``key_parts``' output."""
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _body_hash(body: dict[str, Any]) -> str:
    return _sha256(json.dumps(body, sort_keys=True).encode())


def _write_manifest(directory: Path, body: dict[str, Any]) -> None:
    manifest = {"body": body, "sha256": _body_hash(body)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


class CorruptEntry(Exception):
    """A cache entry that fails a check."""


def _read_entry(directory: Path, key: str) -> EngineFiles:
    """The entry in ``directory`` after checking every hash; raises ``CorruptEntry``."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        body = manifest["body"]
        if manifest["sha256"] != _body_hash(body):
            raise CorruptEntry("the manifest does not match its own hash")
        if body["key"] != key:
            raise CorruptEntry("the manifest is for another key")
        blobs: dict[str, bytes] = {}
        for name, want in body["files"].items():
            data = (directory / name).read_bytes()
            if _sha256(data) != want:
                raise CorruptEntry(f"{name} does not match its recorded hash")
            blobs[name] = data
        result = body["result"]
        nets = {net: blobs[f"{net}.tflite"] for net in NET_NAMES}
        reference = np.asarray(result["probe_reference"], dtype=np.float32)
        return EngineFiles(
            key=key,
            engine=str(result["engine"]),
            input_key=str(result["input_key"]),
            embedding_dim=int(result["embedding_dim"]),
            probe_reference=reference,
            embedding=blobs.get(convert.EMBEDDING_FILE),
            embedding_problem=result["embedding_problem"],
            nets=nets,
            directory=directory,
        )
    except CorruptEntry:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"{type(exc).__name__}: {exc}") from exc


def _convert_into(out_dir: Path, model_dir: Path, engine: str) -> None:
    """Run the converter into ``out_dir``: in this process when TensorFlow is here already,
    else in a child process. Raises ``StartupError``."""
    if "tensorflow" in sys.modules:
        convert.build(model_dir, engine, out_dir)
        return
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = "-1"  # converting for a CPU: leave any GPU alone
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", "app.inference.convert", str(model_dir), engine, str(out_dir)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise StartupError(
            f"Converting {model_dir} for {engine} took over {CONVERT_TIMEOUT_S:.0f} s."
        ) from exc
    error_file = out_dir / convert.ERROR_FILE
    if error_file.is_file():
        raise StartupError(json.loads(error_file.read_text(encoding="utf-8"))["error"])
    if done.returncode != 0:
        tail = done.stderr.strip()[-2000:]
        hint = (
            " TensorFlow is not installed: the converter needs it (pip install -e '.[cpu]')."
            if "No module named 'tensorflow'" in tail
            else ""
        )
        raise StartupError(
            f"Converting {model_dir} for {engine} failed (exit {done.returncode}).{hint}\n{tail}"
        )


def _build(out_dir: Path, model_dir: Path, engine: str, key: str, parts: dict[str, str]) -> None:
    """Convert into ``out_dir`` and write its manifest."""
    _convert_into(out_dir, model_dir, engine)
    result = json.loads((out_dir / convert.RESULT_FILE).read_text(encoding="utf-8"))
    names = [f"{net}.tflite" for net in NET_NAMES]
    if (out_dir / convert.EMBEDDING_FILE).is_file():
        names.append(convert.EMBEDDING_FILE)
    body = {
        "key": key,
        "parts": parts,
        "model_dir": str(Path(model_dir).resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {name: _sha256((out_dir / name).read_bytes()) for name in names},
        "result": result,
    }
    _write_manifest(out_dir, body)


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Hold the cache directory's exclusive lock (no locking where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the caller's business
        yield
        return
    with (cache_dir / ".lock").open("a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_stale(cache_dir: Path, keep: str, model_dir: Path, engine: str) -> None:
    """Delete half-built directories and older entries of this model directory and engine."""
    for entry in cache_dir.iterdir():
        if not entry.is_dir() or entry.name == keep:
            continue
        if ".tmp-" in entry.name:
            shutil.rmtree(entry, ignore_errors=True)
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            body = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))["body"]
            if body["model_dir"] == str(Path(model_dir).resolve()) and (
                body["parts"]["engine"] == engine
            ):
                log.info("removing an outdated engine cache entry", extra={"entry": entry.name})
                shutil.rmtree(entry, ignore_errors=True)


def prepare(model_dir: Path, engine: str, cache_dir: Path | None) -> EngineFiles:
    """Verified engines for ``model_dir`` and ``engine`` (``tflite`` or ``tflite-int8``),
    from the cache when it holds a sound entry, else converted (and cached when
    ``cache_dir`` can be written). Raises ``StartupError``."""
    t0 = time.perf_counter()
    parts = key_parts(model_dir, engine)
    key = cache_key(parts)
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with _locked(cache_dir):
                return _prepare_cached(cache_dir, key, parts, model_dir, engine, t0)
        except OSError as exc:
            log.warning(
                "the engine cache cannot be used; converting without keeping the result",
                extra={"cache_dir": str(cache_dir), "error": str(exc)},
            )
    with tempfile.TemporaryDirectory(prefix="faceid-engines-") as tmp:
        _build(Path(tmp), model_dir, engine, key, parts)
        files = _read_entry(Path(tmp), key)
    return _replace(files, directory=None, converted=True)


def _replace(files: EngineFiles, **changes: Any) -> EngineFiles:
    import dataclasses

    return dataclasses.replace(files, **changes)


def _prepare_cached(
    cache_dir: Path, key: str, parts: dict[str, str], model_dir: Path, engine: str, t0: float
) -> EngineFiles:
    entry = cache_dir / key
    if entry.is_dir():
        try:
            files = _read_entry(entry, key)
        except CorruptEntry as exc:
            log.warning(
                "the engine cache entry is corrupt; converting again",
                extra={"entry": str(entry), "problem": str(exc)},
            )
            shutil.rmtree(entry, ignore_errors=True)
        else:
            log.info(
                "engines loaded from the cache",
                extra={"entry": str(entry), "seconds": round(time.perf_counter() - t0, 2)},
            )
            return files
    tmp = cache_dir / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _build(tmp, model_dir, engine, key, parts)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale(cache_dir, key, model_dir, engine)
    files = _read_entry(entry, key)
    log.info(
        "engines converted and cached",
        extra={"entry": str(entry), "seconds": round(time.perf_counter() - t0, 1)},
    )
    return _replace(files, converted=True)
