"""Every experiment file in training/configs loads into the typed config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training.config import CONFIG_DIR, ExperimentConfig, load_config

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


# What every experiment file resolved to before the files were cut down to their
# differences from the base (dumped with the code of that time): the cut changed no value.
EFFECTIVE = json.loads((Path(__file__).parent / "effective_configs.json").read_text())


def test_every_experiment_has_a_recorded_effective_config() -> None:
    assert set(EFFECTIVE) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_effective_config_is_unchanged(name: str) -> None:
    loaded = json.loads(json.dumps(load_config(name).to_dict()))
    assert loaded == EFFECTIVE[name]


@pytest.mark.parametrize("name", NAMES)
def test_config_files_state_only_what_differs_from_the_base(name: str) -> None:
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    base = ExperimentConfig().to_dict()
    restated = [
        f"{section}.{key}"
        for section, values in raw.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if base[section][key] == value
    ]
    restated += [
        key for key, value in raw.items() if not isinstance(value, dict) and base[key] == value
    ]
    assert not restated, f"{name}.yaml repeats base values: {restated}"
