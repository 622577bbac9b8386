"""Shared fixtures for the training tests: real photos from ``<repo>/../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# small LFW people (2-3 images each) used to build a miniature LFW for the e2e run
MINI_LFW_PEOPLE = 6


@pytest.fixture(scope="session")
def mini_data_root(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ORL s1..s20 + six small LFW people and an LFW-format pairs file over them."""
    root = tmp_path_factory.mktemp("data")
    (root / "orl").mkdir()
    for i in range(1, 21):
        (root / "orl" / f"s{i}").symlink_to(data_root / "orl" / f"s{i}")
    people = []
    for line in (data_root / "lfw" / "peopleDevTrain.txt").read_text().splitlines()[1:]:
        name, n = line.split("\t")
        if 2 <= int(n) <= 3:
            people.append(name)
        if len(people) == MINI_LFW_PEOPLE:
            break
    (root / "lfw" / "train").mkdir(parents=True)
    for name in people:
        (root / "lfw" / "train" / name).symlink_to(data_root / "lfw" / "train" / name)
    genuine = [f"{p}\t1\t2" for p in people]
    impostor = [f"{a}\t1\t{b}\t2" for a, b in zip(people, people[1:] + people[:1], strict=True)]
    (root / "lfw" / "pairs.txt").write_text(
        "\n".join([str(len(people)), *genuine, *impostor]) + "\n"
    )
    return root


@pytest.fixture(scope="session")
def mini_config(mini_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiment, over the miniature data root (ORL subset + mini LFW)."""
    import yaml

    from training.config import CONFIG_DIR

    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    raw["data"]["datasets"] = {"orl": "orl", "lfw": "lfw/train"}
    raw["data"]["lfw_pairs"] = "lfw/pairs.txt"
    path = tmp_path_factory.mktemp("config") / "tiny_mini.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def prepared_cache(
    mini_data_root: Path, mini_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``python -m training prepare`` over the miniature data root into a fresh cache."""
    from training.cli import main

    cache = tmp_path_factory.mktemp("cache")
    rc = main(
        [
            "prepare",
            "--config",
            str(mini_config),
            "--data-root",
            str(mini_data_root),
            "--cache-dir",
            str(cache),
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    return cache
