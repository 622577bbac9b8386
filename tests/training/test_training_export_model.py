"""export_model: the SavedModel and the card the service reads, with the run's evaluation
reused for float32 weights and the exported model itself evaluated for float16."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faces.model_contract import read_card
from training.config import config_from_dict

TINY = {"width": 0.25, "stages": [[2, 16, 1, 2]], "head_channels": 32}


def _result(threshold: float) -> dict[str, Any]:
    verification = {"accuracy": 0.9, "auc": 0.95, "tar_at_far_1e-03": 0.5}
    return {
        "validation": {"verification": verification, "identification": {"rank1": 0.8}},
        "threshold": {"cosine": threshold},
    }


@pytest.fixture(scope="module")
def backbone():  # type: ignore[no-untyped-def]
    import keras

    from training.backbones import build_backbone

    keras.utils.set_random_seed(4)
    return build_backbone("mobilefacenet", **TINY)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    (run / "evaluation" / "evaluation.json").write_text(json.dumps(_result(0.42)))
    (run / "evaluation" / "roc.png").write_bytes(b"\x89PNG")
    (run / "training_info.json").write_text(json.dumps({"seconds": 1.0, "datasets": {}}))
    (run / "best.json").write_text(json.dumps({"epoch": 2, "val_accuracy": 0.9}))
    return run


def test_float32_export_ships_the_runs_evaluation_and_training_record(
    backbone: Any, run_dir: Path, tmp_path: Path
) -> None:
    from training.export import export_model

    def never(embed: Any, out: Path) -> dict[str, Any]:
        raise AssertionError("the run's evaluation should have been reused")

    cfg = config_from_dict({"model": {"backbone_kwargs": TINY}})
    out = tmp_path / "store" / "tiny" / "1"
    card = export_model(
        backbone, out, cfg=cfg, name="tiny", version="1", evaluate=never, run_dir=run_dir
    )
    assert read_card(out) == card  # what the service reads back
    assert card.threshold == 0.42 and card.metrics["weights_dtype"] == "float32"
    assert card.metrics["export_max_abs_diff"] < 1e-4
    assert card.training is not None and card.training["best_epoch"]["epoch"] == 2
    assert card.recipe == "scratch" and card.pretrained is None
    assert (out / "roc.png").exists() and (out / "saved_model.pb").exists()


def test_float16_export_evaluates_the_stored_weights_not_the_run(
    backbone: Any, run_dir: Path, tmp_path: Path
) -> None:
    from training.evaluate import keras_embed_fn
    from training.export import export_model

    crops = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    seen: dict[str, Any] = {}

    def evaluate(embed: Any, out: Path) -> dict[str, Any]:
        seen["out"], seen["embeddings"] = out, embed(crops)
        return _result(0.37)

    cfg = config_from_dict({"model": {"backbone_kwargs": TINY}})
    out = tmp_path / "store" / "tiny" / "2"
    card = export_model(
        backbone,
        out,
        cfg=cfg,
        name="tiny",
        version="2",
        evaluate=evaluate,
        weights_dtype="float16",
        run_dir=run_dir,
        untrained=True,
    )
    assert seen["out"] == out and card.threshold == 0.37
    np.testing.assert_allclose(seen["embeddings"], keras_embed_fn(backbone)(crops), atol=5e-3)
    assert card.recipe == "scratch (untrained)" and not (out / "roc.png").exists()
