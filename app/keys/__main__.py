"""``python -m app.keys``: create, list and revoke API keys in the gallery database.

    create --role R [--collection C ...] [--name N]   prints the new key once
    list                                              key ids, roles, collections, state
    revoke KEY_ID                                     stops the key on every process

It reads the same ``FACEID_*`` settings as the service (model directory, data directory
or database URL), so it writes where the service reads; a running service picks a change
up within FACEID_SYNC_POLL_MS. Exit codes: 0 done; 1 no such live key (revoke); 2 a
configuration or database problem.
"""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from app.domain_errors import DomainError, StartupError, StorageUnavailable
from app.gallery.names import validate_collection
from app.gallery.records import utc_now
from app.gallery.storage import GalleryStorage, KeyRecord, open_storage
from app.keys import ALL_COLLECTIONS, Role, new_key
from app.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.keys", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it once")
    create.add_argument("--role", required=True, choices=[r.name for r in Role])
    create.add_argument(
        "--collection",
        action="append",
        default=[],
        help="a collection the key opens (repeat for several; admin keys open all)",
    )
    create.add_argument("--name", help="a note to recognise the key by in `list`")
    commands.add_parser("list", help="list the keys (never the keys themselves)")
    revoke = commands.add_parser("revoke", help="revoke a key on every process")
    revoke.add_argument("key_id")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _open(settings: Settings) -> GalleryStorage:
    from app.inference.model import load_card

    card = load_card(settings.model_dir)
    return open_storage(
        settings.database_url, settings.gallery_path, card.model_id, card.embedding_dim
    )


def _create(store: GalleryStorage, args: argparse.Namespace) -> int:
    role = Role[args.role]
    if role is Role.admin:
        collections: tuple[str, ...] = (ALL_COLLECTIONS,)
    elif not args.collection:
        print("faceid: a recognize or manage key needs --collection", file=sys.stderr)
        return 2
    else:
        collections = tuple(dict.fromkeys(validate_collection(c) for c in args.collection))
    key, key_id, secret_hash = new_key()
    store.add_key(KeyRecord(key_id, secret_hash, role.name, collections, utc_now(), args.name))
    if args.json:
        print(json.dumps({"key": key, "key_id": key_id, "role": role.name,
                          "collections": list(collections)}))  # fmt: skip
    else:
        print(key)
        print(
            f"key id {key_id}, role {role.name}, collections {', '.join(collections)}: "
            "store the key now, it is not shown again",
            file=sys.stderr,
        )
    return 0


def _list(store: GalleryStorage, as_json: bool) -> int:
    records = store.api_keys()
    if as_json:
        rows = [
            {
                "key_id": r.key_id,
                "role": r.role,
                "collections": list(r.collections),
                "name": r.name,
                "created_at": r.created_at,
                "revoked_at": r.revoked_at,
            }
            for r in records
        ]
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "live"
        print(
            f"{r.key_id}  {r.role:<9}  {','.join(r.collections):<20}  {state:<40}  {r.name or ''}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one key command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"faceid: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        store = _open(settings)
    except (StartupError, StorageUnavailable) as exc:
        print(f"faceid: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "create":
            return _create(store, args)
        if args.command == "list":
            return _list(store, args.json)
        if store.revoke_key(args.key_id, utc_now()):
            print(f"revoked {args.key_id}", file=sys.stderr)
            return 0
        print(f"faceid: no live key with id {args.key_id!r}", file=sys.stderr)
        return 1
    except (DomainError, StartupError) as exc:
        print(f"faceid: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
