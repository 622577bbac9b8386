"""``python -m app.gallery``: gallery commands for operators.

    enroll DIR        enrol every photo of DIR/<identity>/ (bulk, resumable;
                      --shard I/N: share I of N, for N processes or machines)
    merge-reports OUT REPORT...   one report from the shards' reports
    export FILE       write the gallery to a versioned file (backup, moving machines)
    import FILE       load such a file into the gallery
    reembed ...       build a gallery for a new model from this one (README: Upgrading)
    audit             suspected duplicates and misfiled faces, and the calibration check
                      on the enrolled people (as GET /gallery/audit); --json for all of it
    rename, merge, move-face, set-metadata, enroll-face, faces
                      corrections (``app.admin.corrections``)

They read the same ``FACEID_*`` settings as the service (model, data directory or database
URL, detector, engine, quality floors, kept crops) and write through the same storage, so
they can run while the service serves: it picks up what they write within
FACEID_SYNC_POLL_MS. Exit codes: 0 done; 1 reembed left faces behind (listed in its
report); 2 a configuration, gallery or file problem; 130 interrupted. An import that fails
writes nothing; an enrol or reembed that stops part-way resumes when run again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def _shard(text: str) -> Any:
    from app.admin.bulk import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _collection(text: str) -> str:
    from app.domain_errors import InvalidCollection
    from app.gallery.names import validate_collection

    try:
        return validate_collection(text)
    except InvalidCollection as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.gallery",
        description="Gallery commands. Settings come from FACEID_* variables, as for the service.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    commands = parser.add_subparsers(dest="command", required=True)

    enroll = commands.add_parser(
        "enroll", help="enrol every photo of DIR/<identity>/ through the service's pipeline"
    )
    enroll.add_argument("root", type=Path, metavar="DIR", help="one folder per person")
    enroll.add_argument(
        "--report",
        type=Path,
        default=Path("enroll-report.json"),
        help="where to write the per-person summary (default: ./enroll-report.json)",
    )
    enroll.add_argument(
        "--chunk", type=_positive, default=64, help="photos per stored batch (default: 64)"
    )
    enroll.add_argument(
        "--collection", type=_collection, default=None, help="the collection (default: default)"
    )
    enroll.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="enrol only share I of N (a stable split of the people): run N of these, on one "
        "or several machines against one PostgreSQL gallery, and every photo is enrolled once",
    )

    merge = commands.add_parser(
        "merge-reports", help="one report from the reports of the shards of one enrolment"
    )
    merge.add_argument("out", type=Path, metavar="OUT")
    merge.add_argument("reports", type=Path, nargs="+", metavar="REPORT")

    export = commands.add_parser("export", help="write the gallery to FILE")
    export.add_argument("file", type=Path, metavar="FILE")
    export.add_argument(
        "--with-crops",
        action="store_true",
        help="include kept crops, still sealed with FACEID_CROP_KEY",
    )
    export.add_argument(
        "--collection", type=_collection, default=None, help="only this collection (default: all)"
    )

    imp = commands.add_parser("import", help="load a gallery file into the gallery")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--collection",
        type=_collection,
        default=None,
        help="put every face into this collection (default: the collection each face has "
        "in the file; files from before collections: default)",
    )

    re = commands.add_parser(
        "reembed", help="re-embed this gallery's faces into a gallery for another model"
    )
    re.add_argument("--to-model-dir", type=Path, required=True, help="the new model version")
    where = re.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-data-dir", type=Path, help="the new gallery's data directory")
    where.add_argument("--to-database-url", help="the new gallery's PostgreSQL database")
    re.add_argument("--photos", type=Path, help="the original photos (matched by content hash)")
    re.add_argument(
        "--from-crops",
        action="store_true",
        help="use kept crops (FACEID_KEEP_ALIGNED_CROPS) for faces without a photo",
    )
    re.add_argument(
        "--collection",
        type=_collection,
        default=None,
        help="only this collection (default: all; each face keeps its collection)",
    )
    re.add_argument(
        "--report",
        type=Path,
        default=Path("reembed-report.json"),
        help="where to write the report (default: ./reembed-report.json)",
    )
    aud = commands.add_parser(
        "audit",
        help="suspected duplicate identities and misfiled faces, and whether the target FPIR "
        "holds on the enrolled people",
    )
    aud.add_argument(
        "--collection", type=_collection, default=None, help="the collection (default: default)"
    )
    aud.add_argument(
        "--threshold", type=float, default=None, help="audit at this cosine threshold instead"
    )
    aud.add_argument("--json", action="store_true", help="print the whole report as JSON")
    from app.admin.corrections import add_parsers

    add_parsers(commands, _collection)
    return parser


def _write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run one gallery command; returns the exit code."""
    args = _parser().parse_args(argv)
    from app.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"faceid: invalid configuration:\n{exc}", file=sys.stderr)
        return 2

    from app.admin.archive import ArchiveError
    from app.domain_errors import DomainError, StartupError
    from app.gallery.crops import CropKeyError
    from app.log import configure_logging

    configure_logging(settings.log_level)
    try:
        return _run(args, settings)
    except (StartupError, ArchiveError, CropKeyError, DomainError, OSError) as exc:
        print(f"faceid: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceid: interrupted; run the command again to finish", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, settings: Any) -> int:
    from app.domain_errors import StartupError
    from app.state import crop_vault, preflight

    progress = not args.quiet
    if args.command == "reembed":
        return _reembed(args, settings, progress)
    if args.command == "merge-reports":
        return _merge_reports(args)
    checked = preflight(settings)
    store = checked.store
    try:
        if args.command == "audit":
            return _audit(args, settings, checked)
        from app.admin.corrections import COMMANDS
        from app.admin.corrections import run as correct

        if args.command in COMMANDS:
            return correct(args, store, settings)
        if args.command == "export":
            from app.admin.archive import export_gallery

            summary = export_gallery(
                store, checked.card.model_id, args.file, args.with_crops, args.collection
            )
            print(
                f"exported {summary.faces} faces of {summary.identities} identities "
                f"({summary.crops} sealed crops) to {summary.path}"
            )
            return 0
        if args.command == "import":
            from app.admin.archive import import_gallery

            result = import_gallery(store, args.file, args.collection)
            print(
                f"imported {result.imported} of {result.faces_in_file} faces into "
                f"{store.location} ({result.already_present} were already there)"
            )
            return 0
        from app.admin.bulk import BulkReport, enroll_folder
        from app.admin.offline import OfflineEmbedder
        from app.gallery.storage import DEFAULT_COLLECTION

        if not args.root.is_dir():
            raise StartupError(f"{args.root} is not a directory")
        vault = crop_vault(settings, required=True) if settings.keep_aligned_crops else None
        embedder = OfflineEmbedder(settings)
        report = BulkReport(str(args.root), checked.card.model_id, store.location)
        try:
            enroll_folder(
                args.root,
                store,
                embedder,
                vault,
                args.chunk,
                progress,
                report,
                args.collection or DEFAULT_COLLECTION,
                args.shard,
            )
        finally:
            embedder.close()
            _write_report(args.report, report.to_json())  # also when stopped part-way
        totals = report.to_json()["totals"]
        print(
            f"{totals['enrolled']} enrolled, {totals['already_enrolled']} already enrolled, "
            f"{totals['no_face']} without a face, {totals['low_quality']} of low quality, "
            f"{totals['unreadable']} unreadable, {totals['duplicate']} duplicates, "
            f"{totals['invalid_identity']} under an invalid name; report: {args.report}"
        )
        return 0
    finally:
        store.close()


def _merge_reports(args: argparse.Namespace) -> int:
    from app.admin.bulk import merge_reports
    from app.domain_errors import StartupError

    try:
        reports = [json.loads(path.read_text(encoding="utf-8")) for path in args.reports]
        merged = merge_reports(reports)
    except (OSError, ValueError, KeyError) as exc:
        raise StartupError(f"cannot merge the reports: {exc}") from exc
    _write_report(args.out, merged)
    totals = merged["totals"]
    print(
        f"{len(reports)} reports ({', '.join(merged['shards'])}): {totals['photos']} photos, "
        f"{totals['enrolled']} enrolled, {totals['already_enrolled']} already enrolled; "
        f"merged report: {args.out}"
    )
    return 0


def _reembed(args: argparse.Namespace, settings: Any, progress: bool) -> int:
    from app.admin.offline import OfflineEmbedder
    from app.admin.reembed import reembed
    from app.domain_errors import StartupError
    from app.gallery.storage import open_storage
    from app.inference.model import load_card
    from app.state import crop_vault, preflight

    if args.photos is None and not args.from_crops:
        raise StartupError("reembed needs --photos DIR, --from-crops, or both")
    if args.photos is not None and not args.photos.is_dir():
        raise StartupError(f"{args.photos} is not a directory")
    new_settings = settings.model_copy(update={"model_dir": args.to_model_dir.resolve()})
    new_card = load_card(new_settings.model_dir)
    target_path = (args.to_data_dir or settings.data_dir).resolve() / "gallery.sqlite3"
    if args.to_database_url is None and target_path == settings.gallery_path:
        raise StartupError("--to-data-dir must differ from FACEID_DATA_DIR (the current gallery)")
    if args.to_database_url is not None and args.to_database_url == settings.database_url:
        raise StartupError("--to-database-url must differ from FACEID_DATABASE_URL")
    vault = crop_vault(settings, required=args.from_crops or settings.keep_aligned_crops)
    checked = preflight(settings)
    source = checked.store
    target = open_storage(
        args.to_database_url, target_path, new_card.model_id, new_card.embedding_dim
    )
    try:
        embedder = OfflineEmbedder(new_settings)
        try:
            report = reembed(
                source,
                target,
                embedder,
                photos=args.photos,
                crop_vault=vault,
                use_crops=args.from_crops,
                keep_crops=settings.keep_aligned_crops,
                progress=progress,
                collection=args.collection,
            )
        finally:
            embedder.close()
    finally:
        target.close()
        source.close()
    _write_report(args.report, report.to_json())
    print(
        f"{report.faces} faces: {report.already_done} already re-embedded, "
        f"{report.from_photos} from photos, {report.from_crops} from kept crops, "
        f"{len(report.missing)} left behind; report: {args.report}"
    )
    return 0 if report.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())


def _audit(args: argparse.Namespace, settings: Any, checked: Any) -> int:
    from app.admin.audit import as_json, audit_collection, summary
    from app.gallery.storage import DEFAULT_COLLECTION

    collection = args.collection or DEFAULT_COLLECTION
    report, found, in_force = audit_collection(
        checked.store, checked.card, settings, collection, args.threshold
    )
    if args.json:
        print(json.dumps(as_json(collection, report, found, in_force), indent=2))
    else:
        print("\n".join(summary(report, found)))
    return 0
