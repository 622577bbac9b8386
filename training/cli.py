"""``python -m training prepare | split | train | evaluate | export | calibrate``.

Examples (from the repository root)::

    python -m training prepare --config scratch --workers 2
    python -m training train --config transfer --run-dir runs/transfer
    python -m training evaluate --run-dir runs/transfer
    python -m training export --run-dir runs/transfer --name faceid-facenet --version 1
    python -m training calibrate --model-dir model_store/faceid-facenet/1 --write-card
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from faces.cpu import usable_cores
from training.config import (
    REPO_ROOT,
    ExperimentConfig,
    config_from_dict,
    load_config,
    resolve_cache_dir,
    resolve_data_root,
)

log = logging.getLogger("training")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``--set train.epochs=3 --set data.val_share={celeba: 0.1}`` (values parsed as YAML)."""
    raw = cfg.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(value)
    return config_from_dict(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_split(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_export(sub)
    return parser


Subcommands = argparse._SubParsersAction  # what add_subparsers returns


def _add_prepare(sub: Subcommands) -> None:
    p = sub.add_parser("prepare", help="detect, align and cache the datasets' faces")
    _common(p)
    p.add_argument(
        "--datasets",
        nargs="*",
        default=None,
        help="dataset names from the config (default: all of them)",
    )
    p.add_argument("--workers", type=int, default=max(1, usable_cores() - 1))


def _add_split(sub: Subcommands) -> None:
    p = sub.add_parser(
        "split",
        help="write the identity-disjoint train/validation split of the dataset folders",
    )
    _common(p)
    p.add_argument("--out", required=True, help="split.json to write")


def _add_train(sub: Subcommands) -> None:
    p = sub.add_parser(
        "train",
        help="train an embedding model (with TF_CONFIG set: as one worker of a "
        "MultiWorkerMirroredStrategy cluster; README, 'Training on several machines')",
    )
    _common(p, config_required=True)
    p.add_argument("--run-dir", default=None, help="output directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--split", default=None, help="reuse this split.json instead of making one")
    p.add_argument(
        "--logical-cpus",
        type=int,
        default=None,
        help="split the CPU into N logical devices and train with MirroredStrategy "
        "(one machine; not with TF_CONFIG)",
    )


def _add_evaluate(sub: Subcommands) -> None:
    p = sub.add_parser("evaluate", help="verification + identification metrics and threshold")
    _common(p)
    _source(p)
    p.add_argument("--saved-model", default=None, help="evaluate an exported SavedModel instead")
    p.add_argument("--split", default=None, help="split.json (default: the run's)")
    p.add_argument("--out", default=None, help="output dir (default <run-dir>/evaluation)")
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation")


def _add_calibrate(sub: Subcommands) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit the open-set threshold calibration of an exported model on validation "
        "people and prove it on galleries of people the fit never saw",
    )
    _common(p)
    p.add_argument(
        "--model-dir",
        default=str(REPO_ROOT / "model_store" / "faceid" / "2"),
        help="exported model version directory (SavedModel + model_card.json)",
    )
    p.add_argument("--split", default=None, help="split.json (default: from the config)")
    p.add_argument("--out", default=None, help="output dir (default runs/calibration/<model>)")
    p.add_argument("--aggregation", choices=("max", "mean", "centroid"), default="centroid")
    _data_fixes(p)
    p.add_argument("--repeats", type=int, default=100, help="random calibration/test splits")
    p.add_argument(
        "--quality-floor",
        type=float,
        default=0.2,
        help="probe quality floor evaluated alongside (the service default)",
    )
    p.add_argument(
        "--write-card",
        action="store_true",
        help="store the calibration (fitted on all validation people) in the model card "
        "and copy the plots beside it",
    )


def _data_fixes(p: argparse.ArgumentParser) -> None:
    """``--data-fixes PATH`` or ``--no-data-fixes`` (``data_fixes`` is ``""`` for the
    shipped file, ``None`` for none)."""
    fixes = p.add_mutually_exclusive_group()
    fixes.add_argument(
        "--data-fixes",
        default="",
        metavar="PATH",
        help="the label errors of the validation data to correct before calibrating "
        "(default training/data_fixes.json: identities that are one person merged, photos "
        "whose largest face is someone else dropped)",
    )
    fixes.add_argument(
        "--no-data-fixes",
        dest="data_fixes",
        action="store_const",
        const=None,
        help="calibrate on the validation data as it is, label errors included",
    )


def _add_export(sub: Subcommands) -> None:
    p = sub.add_parser("export", help="write model_store/<name>/<version>/ for the service")
    _common(p)
    _source(p)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--model-store", default=str(REPO_ROOT / "model_store"))
    p.add_argument(
        "--evaluation",
        default=None,
        help="evaluation dir to ship (default <run-dir>/evaluation; evaluated anew if absent)",
    )
    p.add_argument(
        "--weights-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="storage precision of the exported weights (float16 halves the size; the "
        "arithmetic stays float32); with float16 the SavedModel itself is evaluated",
    )


def _common(p: argparse.ArgumentParser, config_required: bool = False) -> None:
    p.add_argument(
        "--config",
        required=config_required,
        help="config name in training/configs (tiny, scratch, transfer) or a YAML path",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=2",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding the datasets (default: <repo>/../shared/data)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="aligned-crop cache (default: $FACEID_CACHE_DIR or ~/.cache/faceid/aligned)",
    )
    p.add_argument("-v", "--verbose", action="store_true")


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir", default=None, help="a training run directory (uses its best weights)"
    )
    p.add_argument("--weights", choices=("best", "final"), default="best")
    p.add_argument(
        "--untrained",
        action="store_true",
        help="use the config's backbone as built (pretrained weights, no training)",
    )


def _load_cfg(args: argparse.Namespace) -> ExperimentConfig:
    run_cfg = Path(args.run_dir) / "config.yaml" if getattr(args, "run_dir", None) else None
    if (
        args.command in ("evaluate", "export")
        and run_cfg is not None
        and run_cfg.exists()
        and not args.untrained
    ):
        if args.config:
            log.warning("using the run's own %s, not --config %s", run_cfg, args.config)
        cfg = load_config(run_cfg)
    elif args.config:
        cfg = load_config(args.config)
    else:
        raise SystemExit("give --config (or --run-dir holding a config.yaml)")
    return _apply_overrides(cfg, args.overrides)


def _load_backbone(args: argparse.Namespace, cfg: ExperimentConfig) -> Any:
    from training.train import build_backbone_from_config

    if args.untrained:
        return build_backbone_from_config(cfg)
    if not args.run_dir:
        raise SystemExit("give --run-dir (or --untrained with --config)")
    weights = Path(args.run_dir) / f"{args.weights}.weights.h5"
    if not weights.exists():
        raise SystemExit(f"{weights} not found: has the run finished an epoch?")
    # built as configured (a pretrained backbone needs its architecture file), then
    # overwritten with the run's weights
    backbone = build_backbone_from_config(cfg)
    backbone.load_weights(str(weights))
    log.info("loaded %s", weights)
    return backbone


def _split_for(
    args: argparse.Namespace, cfg: ExperimentConfig, identities: dict, data_root: Path
) -> Any:
    from training.data import Split, make_split

    path = getattr(args, "split", None) or (
        Path(args.run_dir) / "split.json" if getattr(args, "run_dir", None) else None
    )
    if path and Path(path).exists():
        return Split.load(Path(path))
    log.info(
        "no split file given: deriving the split from the config (seed %d)", cfg.data.split_seed
    )
    return make_split(list(identities), cfg.data, data_root)


def _run_evaluation(args: argparse.Namespace, cfg: ExperimentConfig, embed: Any, out: Path) -> dict:
    from training.data import load_cache
    from training.evaluate import evaluate

    data_root = resolve_data_root(args.data_root)
    identities = load_cache(resolve_cache_dir(args.cache_dir), list(cfg.data.datasets))
    split = _split_for(args, cfg, identities, data_root)
    pairs = data_root / cfg.data.lfw_pairs if cfg.data.lfw_pairs else None
    e = cfg.eval
    return evaluate(
        embed,
        identities,
        split.val,
        out_dir=out,
        lfw_pairs=pairs if pairs and pairs.exists() else None,
        lfw_dataset=cfg.data.lfw_dataset,
        far_target=e.far_target,
        folds=e.folds,
        max_genuine_pairs=e.max_genuine_pairs,
        max_impostor_pairs=e.max_impostor_pairs,
        identification_seed=e.identification_seed,
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from training.prepare import prepare_datasets

    cfg = _load_cfg(args) if args.config else config_from_dict({})
    data_root = resolve_data_root(args.data_root)
    cache = resolve_cache_dir(args.cache_dir)
    names = args.datasets or list(cfg.data.datasets)
    unknown = set(names) - set(cfg.data.datasets)
    if unknown:
        raise SystemExit(f"unknown datasets {sorted(unknown)}; known: {sorted(cfg.data.datasets)}")
    todo = [(n, data_root / cfg.data.datasets[n]) for n in names]
    log.info("preparing %s into %s with %d worker(s)", names, cache, args.workers)
    reports = prepare_datasets(todo, cache, workers=args.workers)
    for name, rep in reports.items():
        log.info(
            "%s: %d identities, %d images: used %d, no face %d, several faces %d, undecodable %d",
            name,
            rep.identities,
            rep.images,
            rep.used,
            rep.no_face,
            rep.several_faces,
            rep.undecodable,
        )
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    """The split ``train`` would make, from the dataset folders alone (no cache needed):
    the same per-identity rule, so it also covers people whose photos had no face."""
    from training.data import make_split
    from training.prepare import list_identities

    cfg = _load_cfg(args) if args.config else config_from_dict({})
    data_root = resolve_data_root(args.data_root)
    keys = [
        f"{name}/{folder.name}"
        for name, rel in cfg.data.datasets.items()
        if (data_root / rel).is_dir()
        for folder in list_identities(data_root / rel)
    ]
    split = make_split(keys, cfg.data, data_root)
    split.save(Path(args.out))
    log.info(
        "split: %d training and %d validation identities -> %s",
        len(split.train),
        len(split.val),
        args.out,
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import train

    cfg = _load_cfg(args)
    run_dir = Path(args.run_dir or REPO_ROOT / "runs" / cfg.name)
    result = train(
        cfg,
        resolve_cache_dir(args.cache_dir),
        resolve_data_root(args.data_root),
        run_dir,
        resume=args.resume,
        logical_cpus=args.logical_cpus,
        split_file=Path(args.split) if args.split else None,
    )
    print(
        json.dumps(
            {
                "run_dir": str(result.run_dir),
                "best": result.best,
                "replicas": result.replicas,
                "seconds": round(result.seconds, 1),
            }
        )
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import keras_embed_fn, savedmodel_embed_fn, summary

    cfg = _load_cfg(args) if (args.config or args.run_dir) else config_from_dict({})
    if args.saved_model:
        embed = savedmodel_embed_fn(args.saved_model, cfg.eval.batch_size, args.flip)
        default_out = Path(args.saved_model)
    else:
        embed = keras_embed_fn(_load_backbone(args, cfg), cfg.eval.batch_size, args.flip)
        default_out = (
            Path(args.run_dir or REPO_ROOT / "runs" / f"{cfg.name}-untrained") / "evaluation"
        )
    out = Path(args.out) if args.out else default_out
    result = _run_evaluation(args, cfg, embed, out)
    print(json.dumps(summary(result), indent=2))
    log.info("wrote %s", out / "evaluation.json")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from training.calibrate import (
        DATA_FIXES,
        apply_data_fixes,
        calibrate_model,
        embed_validation,
    )
    from training.data import load_cache
    from training.evaluate import savedmodel_embed_fn
    from training.export import add_calibration

    cfg = _load_cfg(args) if args.config else config_from_dict({})
    model_dir = Path(args.model_dir)
    data_root = resolve_data_root(args.data_root)
    identities = load_cache(resolve_cache_dir(args.cache_dir), list(cfg.data.datasets))
    split = _split_for(args, cfg, identities, data_root)
    keys = [k for k in split.val if k in identities]
    out = Path(args.out or REPO_ROOT / "runs" / "calibration" / "-".join(model_dir.parts[-2:]))
    faces = embed_validation(
        identities, keys, savedmodel_embed_fn(model_dir), out / "val_embeddings.npz"
    )
    fixes_note = "validation data as it is"
    if args.data_fixes is not None:
        fixes_path = Path(args.data_fixes) if args.data_fixes else DATA_FIXES
        files = [f"{k}/{f}" for k in keys for f in identities[k].files]
        faces, changed = apply_data_fixes(
            faces, keys, files, json.loads(fixes_path.read_text(encoding="utf-8"))
        )
        fixes_note = (
            f"label errors corrected by {fixes_path.name} ({changed['faces_relabelled']} faces "
            f"relabelled as the same person, {changed['faces_dropped']} photos of someone "
            "else dropped)"
        )
        log.info("calibration: %s", fixes_note)
    people = len(np.unique(faces.labels))
    source = (
        f"{people} identity-disjoint validation people ({len(faces.labels)} faces) of "
        f"{', '.join(cfg.data.datasets)}; split seed {cfg.data.split_seed}; {fixes_note}"
    )
    result = calibrate_model(
        faces,
        out,
        aggregation=args.aggregation,
        repeats=args.repeats,
        quality_floor=args.quality_floor,
        source=source,
    )
    print(json.dumps({k: result[k] for k in ("aggregations", "quality_floors")}, indent=2))
    log.info("wrote %s", out / "calibration.json")
    if args.write_card:
        add_calibration(model_dir, out)
        log.info("calibration stored in %s", model_dir / "model_card.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import ExportMismatchError, export_model

    cfg = _load_cfg(args)
    trained_run = Path(args.run_dir) if args.run_dir and not args.untrained else None
    try:
        card = export_model(
            _load_backbone(args, cfg),
            Path(args.model_store) / args.name / str(args.version),
            cfg=cfg,
            name=args.name,
            version=args.version,
            evaluate=lambda embed, out: _run_evaluation(args, cfg, embed, out),
            weights_dtype=args.weights_dtype,
            run_dir=trained_run,
            evaluation_dir=Path(args.evaluation) if args.evaluation else None,
            untrained=args.untrained,
        )
    except ExportMismatchError as exc:
        raise SystemExit(str(exc)) from exc
    print(
        json.dumps(
            {
                "model_dir": str(Path(args.model_store) / args.name / str(args.version)),
                "threshold": card.threshold,
                "metrics": card.metrics["summary"],
            },
            indent=2,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    handlers = {
        "prepare": cmd_prepare,
        "split": cmd_split,
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "calibrate": cmd_calibrate,
        "export": cmd_export,
    }
    return handlers[args.command](args)
