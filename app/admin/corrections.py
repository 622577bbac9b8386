"""``python -m app.gallery`` corrections: the API's corrections for operators at a shell.

    rename IDENTITY NEW            give an identity a new (not yet enrolled) name
    merge IDENTITY INTO            move every face of IDENTITY to the enrolled INTO
    move-face IDENTITY FACE_ID TO  file one face under TO (enrolled or new)
    set-metadata IDENTITY [--external-id ID] [--data JSON]   (neither: erase it)
    enroll-face IDENTITY PHOTO [--face-index N | --box X1,Y1,X2,Y2] [--replaces FACE_ID]
                                   enrol a chosen face (in place of a wrong one)
    faces IDENTITY                 list an identity's face ids (to pick one to move)

Each writes one transaction through the storage the service uses, change log included, so
every running service process follows it within ``FACEID_SYNC_POLL_MS``; a refused one
(unknown identity, a name already enrolled, …) prints why, changes nothing and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.gallery.storage import GalleryStorage
from app.gallery.storage.base import DEFAULT_COLLECTION

COMMANDS = ("rename", "merge", "move-face", "set-metadata", "enroll-face", "faces")


def add_parsers(commands: Any, collection: Any) -> None:
    """Add the correction commands to the gallery command's subparsers (``collection``:
    the argument type that checks a collection name)."""

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_)
        parser.add_argument(
            "--collection", type=collection, default=None, help="the collection (default: default)"
        )
        return parser

    rename = command("rename", "give an identity a new name (not yet enrolled)")
    rename.add_argument("identity")
    rename.add_argument("new")
    merge = command("merge", "move every face of IDENTITY to the enrolled identity INTO")
    merge.add_argument("identity")
    merge.add_argument("into")
    move = command("move-face", "file one face of IDENTITY under TO (enrolled or new)")
    move.add_argument("identity")
    move.add_argument("face_id")
    move.add_argument("to")
    meta = command("set-metadata", "set (or, with neither option, erase) an identity's metadata")
    meta.add_argument("identity")
    meta.add_argument("--external-id", default=None, help="another system's key for the person")
    meta.add_argument("--data", default=None, help="a JSON object (at most 4096 bytes)")
    enrol = command("enroll-face", "enrol a chosen face of one photo (default: the largest)")
    enrol.add_argument("identity")
    enrol.add_argument("photo", type=Path)
    chosen = enrol.add_mutually_exclusive_group()
    chosen.add_argument(
        "--face-index", type=int, default=None, help="the face's position, largest first (0..)"
    )
    chosen.add_argument("--box", default=None, help="x1,y1,x2,y2 of the face, as /identify gives")
    enrol.add_argument(
        "--replaces",
        default=None,
        metavar="FACE_ID",
        help="a face of IDENTITY that the new one takes the place of (one transaction)",
    )
    faces = command("faces", "list the faces of an identity")
    faces.add_argument("identity")


def run(args: argparse.Namespace, store: GalleryStorage, settings: Any) -> int:
    """Run one correction command on ``store``; returns the exit code (domain refusals
    are raised for the caller to print)."""
    from app.domain_errors import UnknownIdentity
    from app.gallery.metadata import checked_metadata
    from app.gallery.names import validate_identity

    collection = args.collection or DEFAULT_COLLECTION
    identity = validate_identity(args.identity)
    if args.command == "rename":
        moved = store.move_identity(identity, validate_identity(args.new), collection, "rename")
        print(f"renamed {identity!r} to {args.new!r} ({len(moved)} faces)")
    elif args.command == "merge":
        moved = store.move_identity(identity, validate_identity(args.into), collection, "merge")
        print(f"merged {identity!r} into {args.into!r} ({len(moved)} faces)")
    elif args.command == "move-face":
        face = store.move_face(identity, args.face_id, validate_identity(args.to), collection)
        if face is None:
            raise UnknownIdentity(f"Identity {identity!r} has no face with id {args.face_id!r}.")
        print(f"moved face {face.face_id} from {identity!r} to {args.to!r}")
    elif args.command == "set-metadata":
        data = None if args.data is None else _json_object(args.data)
        meta = checked_metadata(args.external_id, data)
        if not store.set_metadata(identity, meta, collection):
            raise UnknownIdentity(f"No identity named {identity!r} is enrolled.")
        print(f"metadata of {identity!r}: {json.dumps(meta.to_json(), ensure_ascii=False)}")
    elif args.command == "faces":
        records = store.faces_of(identity, collection)
        if not records:
            raise UnknownIdentity(f"No identity named {identity!r} is enrolled.")
        for r in records:
            print(f"{r.face_id}\t{r.created_at}\t{r.content_hash or ''}")
    else:
        _enroll_face(args, identity, collection, store, settings)
    return 0


def _json_object(text: str) -> dict[str, object]:
    from app.domain_errors import StartupError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StartupError(f"--data is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise StartupError("--data must be a JSON object ({...})")
    return value


def _enroll_face(
    args: argparse.Namespace, identity: str, collection: str, store: GalleryStorage, settings: Any
) -> None:
    from app.admin.offline import OfflineEmbedder
    from app.domain_errors import StartupError, UnknownIdentity
    from app.gallery.records import new_face, utc_now
    from app.gallery.storage import content_hash
    from app.recognition import FaceChoice
    from app.state import crop_vault

    box = None
    if args.box is not None:
        try:
            x1, y1, x2, y2 = (float(v) for v in args.box.split(","))
        except ValueError:
            raise StartupError("--box must be four numbers: x1,y1,x2,y2") from None
        box = (x1, y1, x2, y2)
    data = args.photo.read_bytes()
    vault = crop_vault(settings, required=True) if settings.keep_aligned_crops else None
    embedder = OfflineEmbedder(settings)
    try:
        faces = embedder.faces(data)
        face = embedder.policy.enrollable(faces, FaceChoice(args.face_index, box))
        embedding = embedder.embed([face.crop])[0]
    finally:
        embedder.close()
    row = new_face(
        identity,
        embedding,
        created_at=utc_now(),
        content_hash=content_hash(data),
        crop=face.crop,
        vault=vault,
        collection=collection,
        quality=face.quality.score,
    )
    if args.replaces is None:
        store.add_faces([row])
    elif not store.replace_face(identity, args.replaces, row):
        raise UnknownIdentity(
            f"Identity {identity!r} has no face with id {args.replaces!r}; nothing was enrolled."
        )
    print(f"enrolled face {row.face_id} of {args.photo} ({len(faces)} faces) as {identity!r}")
