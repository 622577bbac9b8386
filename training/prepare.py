"""Folder-per-identity datasets → cache of aligned 112×112 crops, via the shared pipeline.

Each identity is written as one ``<cache>/<dataset>/<identity>.npz`` (crops, source file
names, detection boxes, landmarks and scores) plus a line of counts in its ``.json``; an identity
already cached is skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faces.folders import IMAGE_SUFFIXES, list_identities
from faces.model_contract import INPUT_SHAPE

if TYPE_CHECKING:
    from faces import AlignedFace, FacePipeline

log = logging.getLogger(__name__)


@dataclass
class DatasetReport:
    """Per-dataset counts of what the pipeline used and skipped."""

    identities: int = 0
    images: int = 0
    used: int = 0
    no_face: int = 0
    several_faces: int = 0
    undecodable: int = 0
    skipped_files: list[str] = field(default_factory=list)

    def add(self, stats: dict) -> None:
        self.identities += 1
        for key in ("images", "used", "no_face", "several_faces", "undecodable"):
            setattr(self, key, getattr(self, key) + int(stats[key]))


def process_image(pipeline: FacePipeline, path: str | Path) -> tuple[AlignedFace | None, str]:
    """Run one photo through the shared pipeline; return (largest face or None, status).

    status is ``used``, ``several_faces`` (used: the largest face is kept), ``no_face`` or
    ``undecodable``. This is the training code path that the service's path must match.
    """
    from faces import ImageError

    try:
        faces = pipeline.faces_in_file(str(path))
    except ImageError:
        return None, "undecodable"
    if not faces:
        return None, "no_face"
    return faces[0], ("several_faces" if len(faces) > 1 else "used")


def _process_identity(args: tuple[str, str, str]) -> dict:
    folder, out_npz, out_json = args
    from faces import FacePipeline

    pipeline = _worker_pipeline(FacePipeline)
    signature = pipeline.signature
    crops, files, boxes, landmarks, scores = [], [], [], [], []
    stats = {"images": 0, "used": 0, "no_face": 0, "several_faces": 0, "undecodable": 0}
    missed: list[str] = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stats["images"] += 1
        face, status = process_image(pipeline, path)
        if face is None:
            stats[status] += 1
            missed.append(path.name)
            continue
        if status == "several_faces":
            stats["several_faces"] += 1
        crops.append(face.crop)
        files.append(path.name)
        boxes.append(face.box)
        landmarks.append(face.landmarks)
        scores.append(face.score)
        stats["used"] += 1
    tmp = out_npz + ".tmp.npz"
    np.savez(
        tmp,
        crops=np.asarray(crops, dtype=np.uint8).reshape(-1, *INPUT_SHAPE),
        files=np.asarray(files, dtype=str),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        landmarks=np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2),
        scores=np.asarray(scores, dtype=np.float32),
    )
    os.replace(tmp, out_npz)
    with open(out_json, "w") as fh:
        json.dump({**stats, "missed": missed, "pipeline": signature}, fh)
    return stats


_PIPELINE = None


def _worker_pipeline(factory):  # type: ignore[no-untyped-def]
    global _PIPELINE
    if _PIPELINE is None:
        _PIPELINE = factory()
    return _PIPELINE


def prepare_datasets(
    datasets: Iterable[tuple[str, Path]], cache_dir: Path, workers: int = 1
) -> dict[str, DatasetReport]:
    """Detect, align and cache every identity of every dataset; return per-dataset counts.

    Resumable: an identity already cached with the current ``pipeline_signature`` is kept;
    one cached with other settings (an older detector default, say) is processed again.
    """
    from faces.pipeline import pipeline_signature

    signature = pipeline_signature()
    reports: dict[str, DatasetReport] = {}
    for name, root in datasets:
        out_dir = cache_dir / name
        out_dir.mkdir(parents=True, exist_ok=True)
        report = DatasetReport()
        todo = []
        stale = 0
        for folder in list_identities(Path(root)):
            npz, js = out_dir / f"{folder.name}.npz", out_dir / f"{folder.name}.json"
            stats = json.loads(js.read_text()) if npz.exists() and js.exists() else None
            if stats is not None and stats.get("pipeline") == signature:
                report.add(stats)
            else:
                stale += stats is not None
                todo.append((str(folder), str(npz), str(js)))
        if stale:
            log.warning(
                "%s: %d cached identities were made with other face-pipeline settings; "
                "redoing them (now: %s)",
                name,
                stale,
                signature,
            )
        log.info("%s: %d identities cached, %d to process", name, report.identities, len(todo))
        start = time.monotonic()
        ctx = mp.get_context("spawn")
        pool = ctx.Pool(workers) if workers > 1 else None
        results = (
            pool.imap_unordered(_process_identity, todo) if pool else map(_process_identity, todo)
        )
        for i, stats in enumerate(results, 1):
            report.add(stats)
            if i % 50 == 0 or i == len(todo):
                rate = i / max(time.monotonic() - start, 1e-9)
                log.info(
                    "%s: %d/%d identities (%.1f/s, eta %.0fs) images used=%d no_face=%d several=%d",
                    name,
                    i,
                    len(todo),
                    rate,
                    (len(todo) - i) / rate,
                    report.used,
                    report.no_face,
                    report.several_faces,
                )
        if pool:
            pool.close()
            pool.join()
        reports[name] = report
        (cache_dir / f"{name}.report.json").write_text(
            json.dumps({k: v for k, v in report.__dict__.items() if k != "skipped_files"}, indent=2)
        )
    return reports
