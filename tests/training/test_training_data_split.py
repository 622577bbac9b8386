"""Identity-disjoint, reproducible split and the tf.data augmentation pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import load_config
from training.data import Arrays, make_split, read_pairs, train_dataset


def _all_keys(data_root: Path) -> list[str]:
    keys = []
    for name, rel in {"orl": "orl", "celeba": "celeba", "lfw": "lfw/train"}.items():
        keys += [f"{name}/{p.name}" for p in (data_root / rel).iterdir() if p.is_dir()]
    return keys


def test_split_is_identity_disjoint_and_follows_the_rules(data_root: Path) -> None:
    cfg = load_config("scratch")
    keys = _all_keys(data_root)
    split = make_split(keys, cfg.data, data_root)
    train, val = set(split.train), set(split.val)
    assert not train & val
    assert train | val == set(keys)
    assert {k for k in keys if k.startswith("orl/")} <= val
    pair_people = {
        f"lfw/{p}"
        for a, _, b, _, _ in read_pairs(data_root / "lfw/pairsDevTrain.txt")
        for p in (a, b)
    }
    assert pair_people <= val
    celeba = [k for k in keys if k.startswith("celeba/")]
    share = sum(k in val for k in celeba) / len(celeba)
    assert 0.12 < share < 0.28
    # LFW people outside the protocol pairs train, single-image people included
    lfw_train = [k for k in split.train if k.startswith("lfw/")]
    assert len(lfw_train) > 1000
    singles = [k for k in lfw_train if len(list((data_root / "lfw/train" / k[4:]).iterdir())) == 1]
    assert singles


def test_split_is_reproducible_by_seed_and_independent_of_order(
    data_root: Path, tmp_path: Path
) -> None:
    cfg = load_config("scratch")
    keys = _all_keys(data_root)
    a = make_split(keys, cfg.data, data_root)
    b = make_split(list(reversed(keys)), cfg.data, data_root)
    assert a.train == b.train and a.val == b.val
    a.save(tmp_path / "split.json")
    from training.data import Split

    c = Split.load(tmp_path / "split.json")
    assert c.train == a.train and c.val == a.val and c.seed == cfg.data.split_seed
    cfg.data.split_seed += 1
    d = make_split(keys, cfg.data, data_root)
    assert d.val != a.val


def test_train_dataset_batches_augmented_images() -> None:
    rng = np.random.default_rng(0)
    crops = np.zeros((40, 112, 112, 3), np.uint8)
    crops[:, :, :56] = 200  # left half bright: a flip moves it to the right
    labels = np.repeat(np.arange(4, dtype=np.int32), 10)
    arrays = Arrays(crops=crops, labels=labels, keys=[f"x/{i}" for i in range(4)], files=[""] * 40)
    ds = train_dataset(arrays, batch_size=16, augment=True, shuffle_buffer=40, seed=1)
    flipped = 0
    seen_labels: set[int] = set()
    for inputs, y in ds.take(5):
        img = inputs["image"].numpy()
        assert img.shape == (16, 112, 112, 3) and img.dtype == np.float32
        assert img.min() >= 0.0 and img.max() <= 255.0
        assert np.array_equal(inputs["label"].numpy(), y.numpy())
        seen_labels |= set(y.numpy().tolist())
        left, right = img[:, :, :40].mean(axis=(1, 2, 3)), img[:, :, 72:].mean(axis=(1, 2, 3))
        flipped += int((right > left).sum())
    assert 10 < flipped < 70  # roughly half of 80 images flipped
    assert seen_labels == {0, 1, 2, 3}
    _ = rng


def test_split_command_writes_the_split_train_would_make(data_root: Path, tmp_path: Path) -> None:
    from training.cli import main
    from training.data import Split

    out = tmp_path / "split.json"
    assert (
        main(["split", "--config", "transfer", "--data-root", str(data_root), "--out", str(out)])
        == 0
    )
    written = Split.load(out)
    expected = make_split(_all_keys(data_root), load_config("transfer").data, data_root)
    assert written.train == expected.train and written.val == expected.val
    assert written.seed == expected.seed and set(written.train).isdisjoint(written.val)
