"""Typed experiment configuration: one YAML file per experiment in ``training/configs``.

The dataclass defaults below are the base; an experiment file states only what differs
from them (as insightface's ``arcface_torch/configs`` do) and ``load_config`` fills in
the rest. A run saves its full effective config (``config.yaml`` in the run directory).

Dataset roots are recorded relative to ``--data-root`` (default ``<repo>/../shared/data``)
and the aligned-crop cache defaults to ``~/.cache/faceid/aligned`` (env ``FACEID_CACHE_DIR``
or ``--cache-dir`` override it), so the same file works on any machine.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEFAULT_CACHE_DIR = Path("~/.cache/faceid/aligned")


@dataclass
class DataConfig:
    # dataset name → folder (one sub-folder per identity) relative to the data root
    datasets: dict[str, str] = field(
        default_factory=lambda: {"orl": "orl", "celeba": "celeba", "lfw": "lfw/train"}
    )
    # LFW protocol pairs (relative to the data root); its people go to validation
    lfw_pairs: str | None = "lfw/pairsDevTrain.txt"
    lfw_dataset: str = "lfw"
    # datasets put wholly into validation
    val_datasets: list[str] = field(default_factory=lambda: ["orl"])
    # share of the identities of a dataset put into validation (seeded)
    val_share: dict[str, float] = field(default_factory=lambda: {"celeba": 0.2})
    split_seed: int = 1234
    # training identities need at least this many crops (1 keeps single-image people)
    min_train_images: int = 1
    max_train_identities: int | None = None


@dataclass
class ModelConfig:
    backbone: str = "mobilefacenet"
    embedding_dim: int = 128
    pretrained: bool = False
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    # keep BatchNorm statistics fixed (inference mode) in the backbone: fine-tuning
    freeze_bn: bool = False


@dataclass
class LossConfig:
    kind: str = "arcface"  # arcface | cosface
    scale: float = 64.0
    margin: float = 0.5
    easy_margin: bool = False
    # ramp the margin linearly from 0 over the first epochs (helps training from scratch)
    margin_warmup_epochs: int = 0


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    steps_per_epoch: int | None = None  # None: one pass over the training crops
    # only sgd: the backbone gradient gate is exactly a backbone learning-rate multiplier
    # with plain SGD, not with adaptive optimisers
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    # epochs during which only the margin head learns (backbone gradient × 0)
    head_warmup_epochs: int = 0
    # backbone learning rate = learning_rate × backbone_lr_mult (after the head warm-up)
    backbone_lr_mult: float = 1.0
    backbone_weight_decay: bool = True
    augment: bool = True
    shuffle_buffer: int = 20000
    seed: int = 42
    # validation during training (best model selection)
    val_max_pairs: int = 3000
    val_max_images: int = 4000
    mixed_precision: str = "auto"  # auto (GPU only) | on | off
    jit_compile: str = "auto"  # auto (GPU only) | on | off


@dataclass
class EvalConfig:
    far_target: float = 1e-3  # operating threshold: cosine at this FAR
    folds: int = 10
    flip_tta: bool = False
    max_genuine_pairs: int = 20000
    max_impostor_pairs: int = 200000
    identification_seed: int = 7
    batch_size: int = 128


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    recipe: str = "scratch"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build a config from a plain mapping, refusing unknown keys (typos fail loudly)."""
    raw = dict(raw)
    kwargs: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.pop(section, None) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown keys in '{section}': {sorted(unknown)}")
        kwargs[section] = cls(**values)
    known_top = {"name", "recipe", "description"}
    unknown_top = set(raw) - known_top
    if unknown_top:
        raise ValueError(f"unknown top-level config keys: {sorted(unknown_top)}")
    cfg = ExperimentConfig(**raw, **kwargs)
    if cfg.loss.kind not in ("arcface", "cosface"):
        raise ValueError(f"loss.kind must be arcface or cosface, not {cfg.loss.kind!r}")
    return cfg


def load_config(name_or_path: str | Path) -> ExperimentConfig:
    """Load ``training/configs/<name>.yaml`` or any YAML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    return config_from_dict(raw)


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def resolve_cache_dir(flag: str | Path | None = None) -> Path:
    """``--cache-dir`` flag, else ``$FACEID_CACHE_DIR``, else ``~/.cache/faceid/aligned``."""
    value = flag or os.environ.get("FACEID_CACHE_DIR") or DEFAULT_CACHE_DIR
    return Path(value).expanduser()


def resolve_data_root(flag: str | Path | None = None) -> Path:
    return Path(flag or DEFAULT_DATA_ROOT).expanduser().resolve()
