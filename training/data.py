"""Aligned-crop cache → in-memory arrays, identity-disjoint split, tf.data pipelines.

The cache is written by :mod:`training.prepare` (one ``<dataset>/<identity>.npz`` per
person). An identity is keyed ``<dataset>/<identity>`` everywhere (split file, labels).

The split puts into validation: whole datasets (``val_datasets``, e.g. ORL), every LFW
person named in the protocol pairs file (so LFW-protocol numbers are on people the model
never trained on) and a seeded share of each dataset's remaining identities
(``val_share``, e.g. 20 % of CelebA). Everything else trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faces.model_contract import ALIGNED_SIZE, INPUT_SHAPE
from training.config import DataConfig

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass
class Identity:
    key: str  # "<dataset>/<identity>"
    crops: np.ndarray  # N×112×112×3 uint8
    files: list[str]
    landmarks: np.ndarray | None = None  # N×5×2, in the photo's pixels
    scores: np.ndarray | None = None  # N detector scores (caches made before they were kept: None)


@dataclass
class Split:
    seed: int
    train: list[str]
    val: list[str]
    rules: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rules": self.rules,
            "counts": {"train": len(self.train), "val": len(self.val)},
            "train": self.train,
            "val": self.val,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Split:
        return cls(seed=raw["seed"], train=raw["train"], val=raw["val"], rules=raw.get("rules", {}))

    def save(self, path: Path) -> None:
        """Write atomically: another worker of a multi-worker run may be reading it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Split:
        return cls.from_json(json.loads(Path(path).read_text()))


def load_cache(cache_dir: Path, datasets: list[str]) -> dict[str, Identity]:
    """Load every cached identity of ``datasets`` (skipping people with no usable crop)."""
    out: dict[str, Identity] = {}
    for name in datasets:
        folder = Path(cache_dir) / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no aligned cache for dataset '{name}' in {folder}: "
                "run `python -m training prepare`"
            )
        for npz in sorted(folder.glob("*.npz")):
            if npz.name.endswith(".tmp.npz"):
                continue
            with np.load(npz) as z:
                crops = z["crops"]
                files = [str(f) for f in z["files"]]
                landmarks = z.get("landmarks", None)
                scores = z.get("scores", None)
            if len(crops):
                key = f"{name}/{npz.stem}"
                out[key] = Identity(key, crops, files, landmarks, scores)
    log.info(
        "loaded %d identities, %d crops from %s",
        len(out),
        sum(len(i.crops) for i in out.values()),
        cache_dir,
    )
    return out


def read_pairs(path: Path) -> list[tuple[str, str, str, str, bool]]:
    """Parse an LFW pairs file → (person1, file1, person2, file2, same)."""
    pairs = []
    lines = Path(path).read_text().splitlines()
    for line in lines[1:]:
        parts = line.strip().split("\t")
        if len(parts) == 3:
            name, i, j = parts
            pairs.append((name, _lfw_file(name, i), name, _lfw_file(name, j), True))
        elif len(parts) == 4:
            n1, i, n2, j = parts
            pairs.append((n1, _lfw_file(n1, i), n2, _lfw_file(n2, j), False))
    return pairs


def _lfw_file(name: str, index: str) -> str:
    return f"{name}_{int(index):04d}.jpg"


def _seeded_fraction(key: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) per identity and seed (order independent)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_split(keys: list[str], cfg: DataConfig, data_root: Path) -> Split:
    """Identity-disjoint train/validation split, reproducible from ``cfg.split_seed``."""
    pair_people: set[str] = set()
    if cfg.lfw_pairs:
        for p1, _, p2, _, _ in read_pairs(data_root / cfg.lfw_pairs):
            pair_people.update((f"{cfg.lfw_dataset}/{p1}", f"{cfg.lfw_dataset}/{p2}"))
    train, val = [], []
    for key in sorted(keys):
        dataset = key.split("/", 1)[0]
        share = cfg.val_share.get(dataset, 0.0)
        if (
            dataset in cfg.val_datasets
            or key in pair_people
            or _seeded_fraction(key, cfg.split_seed) < share
        ):
            val.append(key)
        else:
            train.append(key)
    rules = {
        "val_datasets": cfg.val_datasets,
        "lfw_pairs": cfg.lfw_pairs,
        "val_share": cfg.val_share,
    }
    return Split(seed=cfg.split_seed, train=train, val=val, rules=rules)


@dataclass
class Arrays:
    crops: np.ndarray  # N×112×112×3 uint8
    labels: np.ndarray  # N int32, index into ``keys``
    keys: list[str]
    files: list[str]


def gather(identities: dict[str, Identity], keys: list[str], min_images: int = 1) -> Arrays:
    """Stack the crops of ``keys`` into one array with integer labels 0..len(keys)-1."""
    kept = [k for k in keys if k in identities and len(identities[k].crops) >= min_images]
    crops = [identities[k].crops for k in kept]
    labels = [np.full(len(identities[k].crops), i, dtype=np.int32) for i, k in enumerate(kept)]
    files = [f for k in kept for f in identities[k].files]
    return Arrays(
        crops=np.concatenate(crops) if crops else np.zeros((0, *INPUT_SHAPE), np.uint8),
        labels=np.concatenate(labels) if labels else np.zeros((0,), np.int32),
        keys=kept,
        files=files,
    )


def augment_image(image: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Random flip, small scale/translation jitter, brightness and contrast, in [0, 255]."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    image = tf.image.random_flip_left_right(image)
    # scale jitter: enlarge by up to 12 px, then crop back at a random offset (±6 px shift)
    size = tf.random.uniform([], ALIGNED_SIZE, ALIGNED_SIZE + 13, dtype=tf.int32)
    image = tf.image.resize(image, tf.stack([size, size]), method="bilinear")
    image = tf.image.random_crop(image, list(INPUT_SHAPE))
    image = tf.image.random_brightness(image, max_delta=0.15 * 255.0)
    image = tf.image.random_contrast(image, 0.75, 1.25)
    return tf.clip_by_value(image, 0.0, 255.0)


def train_dataset(
    arrays: Arrays,
    batch_size: int,
    augment: bool = True,
    shuffle_buffer: int = 20000,
    seed: int = 42,
) -> tf.data.Dataset:
    """Endless shuffled, augmented batches of ({"image", "label"}, label)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((arrays.crops, arrays.labels)).cache()
    ds = ds.shuffle(
        min(shuffle_buffer, len(arrays.labels)), seed=seed, reshuffle_each_iteration=True
    )
    ds = ds.repeat()

    def _map(image: tf.Tensor, label: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        image = augment_image(image) if augment else tf.cast(image, tf.float32)
        return {"image": image, "label": label}, label

    ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def shard(arrays: Arrays, index: int, count: int) -> Arrays:
    """Every ``count``-th crop from ``index`` on (each worker's share; all identities keep
    their label indices, so every worker trains the same classifier)."""
    return Arrays(
        crops=arrays.crops[index::count],
        labels=arrays.labels[index::count],
        keys=arrays.keys,
        files=arrays.files[index::count],
    )


def distributed_train_dataset(
    strategy: Any,
    arrays: Arrays,
    global_batch: int,
    augment: bool = True,
    shuffle_buffer: int = 20000,
    seed: int = 42,
) -> Any:
    """:func:`train_dataset` for a multi-worker strategy: each worker (input pipeline)
    keeps, shuffles and augments only its own shard of the crops and batches it at the
    per-replica batch, so the global batch of one step is ``global_batch``.

    Sharded explicitly by worker rather than by tf.data's auto-shard policy ``DATA``:
    with ``DATA`` every worker would run the whole pipeline (hold every crop, augment
    every image) and throw away all but its 1/N share; sharding the arrays first divides
    the memory and the augmentation work by N.
    """

    def per_worker(ctx: Any) -> tf.data.Dataset:
        part = shard(arrays, ctx.input_pipeline_id, ctx.num_input_pipelines)
        log.info(
            "input pipeline %d of %d: %d of %d training crops, batches of %d per replica",
            ctx.input_pipeline_id + 1,
            ctx.num_input_pipelines,
            len(part.labels),
            len(arrays.labels),
            ctx.get_per_replica_batch_size(global_batch),
        )
        # a shuffle seed per worker: with one seed, every worker would draw the same
        # permutation of its shard, and worker 1's k-th crop would sit next to worker 0's
        # k-th crop in the (identity-sorted) arrays: the same person twice in a batch
        return train_dataset(
            part,
            ctx.get_per_replica_batch_size(global_batch),
            augment,
            shuffle_buffer,
            seed + ctx.input_pipeline_id,
        )

    return strategy.distribute_datasets_from_function(per_worker)
