"""Embeddings of the validation people of the shared datasets, cached for the population
experiments (``bench.population_check``).

Each photo goes through the service's own pipeline (decode → detect → align → quality) and
the shipped model's default engine; the largest face is kept with its quality score, as
enrolment would see it. People are processed in chunks of ``CHUNK`` and each chunk is saved
on its own under ``~/.cache/faceid/population/<dataset>/`` (outside the repository), so an
interrupted run resumes where it stopped:

    nohup python -m bench.population_embed --split ~/.cache/faceid/population/split.json \\
        > ~/.cache/faceid/population/embed.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_DATA, people_images

CACHE = Path("~/.cache/faceid/population").expanduser()
CHUNK = 50
DATASETS = {"lfw": "lfw/train", "celeba": "celeba", "orl": "orl"}
log = logging.getLogger("bench.population_embed")


def validation_people(split: Path) -> dict[str, list[str]]:
    """Dataset → validation people (folder names), from a ``training split`` file."""
    raw = json.loads(split.read_text())
    out: dict[str, list[str]] = {}
    for key in raw["val"]:
        dataset, _, name = key.partition("/")
        out.setdefault(dataset, []).append(name)
    return {k: sorted(v) for k, v in out.items()}


def load(dataset: str, cache: Path = CACHE) -> dict[str, np.ndarray]:
    """Every cached chunk of ``dataset``: ``people`` and ``paths`` (``dataset/person/file``,
    one per face), ``embeddings`` (N×D, L2-normalised) and ``quality`` (N)."""
    files = sorted((cache / dataset).glob("chunk-*.npz"))
    if not files:
        raise FileNotFoundError(f"no cached embeddings under {cache / dataset}: run embed")
    parts = [np.load(f) for f in files]
    return {
        "people": np.concatenate([p["people"] for p in parts]),
        "paths": np.concatenate([p["paths"] for p in parts]),
        "embeddings": np.concatenate([p["embeddings"] for p in parts]).astype(np.float32),
        "quality": np.concatenate([p["quality"] for p in parts]),
    }


def embed_dataset(dataset: str, people: list[str], data: Path, cache: Path) -> None:
    """Embed the largest face of every photo of ``people``, chunk by chunk (resumable)."""
    from app.inference.model import EmbeddingModel
    from app.settings import REPO_ROOT
    from faces import FacePipeline

    folders = people_images(data / DATASETS[dataset])
    out = cache / dataset
    out.mkdir(parents=True, exist_ok=True)
    pipeline = FacePipeline()
    model = EmbeddingModel(REPO_ROOT / "model_store" / "faceid" / "2", threads=1)
    for start in range(0, len(people), CHUNK):
        target = out / f"chunk-{start // CHUNK:04d}.npz"
        if target.exists():
            continue
        t0 = time.perf_counter()
        names, paths, crops, quality, skipped = [], [], [], [], 0
        for person in people[start : start + CHUNK]:
            for path in folders.get(person, []):
                faces = pipeline.faces_in_file(str(path), max_faces=1)
                if not faces:
                    skipped += 1
                    continue
                names.append(person)
                paths.append(f"{dataset}/{person}/{path.name}")
                crops.append(faces[0].crop)
                quality.append(faces[0].quality.score)
        dim = model.embedding_dim
        emb = model.embed(np.stack(crops)) if crops else np.zeros((0, dim), np.float32)
        np.savez(
            target,
            people=np.array(names, dtype=str),
            paths=np.array(paths, dtype=str),
            embeddings=emb.astype(np.float32),
            quality=np.array(quality, dtype=np.float32),
        )
        log.info(
            "%s chunk %d: %d faces, %d photos without a face, %.0f s",
            dataset,
            start // CHUNK,
            len(names),
            skipped,
            time.perf_counter() - t0,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, default=CACHE / "split.json")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--datasets", nargs="+", default=["celeba", "orl", "lfw"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    people = validation_people(args.split)
    for dataset in args.datasets:
        embed_dataset(dataset, people.get(dataset, []), args.data, args.cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
