"""Every experiment file in training/configs loads into the typed config."""

from __future__ import annotations

import pytest

from training.config import CONFIG_DIR, load_config

NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_the_documented_experiments_exist() -> None:
    assert {"tiny", "scratch", "transfer", "transfer-cpu"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_and_names_itself(name: str) -> None:
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.train.epochs >= 1 and cfg.loss.kind in ("arcface", "cosface")


def test_transfer_cpu_is_transfer_with_a_shorter_schedule() -> None:
    full, cpu = load_config("transfer").to_dict(), load_config("transfer-cpu").to_dict()
    assert cpu["train"]["epochs"] == 2 and cpu["train"]["head_warmup_epochs"] == 1
    assert cpu["train"]["val_max_images"] == 2000
    for section in ("data", "model", "loss", "eval"):
        assert cpu[section] == full[section], section
    changed = {k for k in full["train"] if full["train"][k] != cpu["train"][k]}
    assert changed <= {"epochs", "head_warmup_epochs", "val_max_images"}
