"""API keys: who may call what, in which collections.

A key is resolved once, at the edge (``app.guards``), to a ``Principal``: a role and the
collections it opens. Roles, each including the one before:

- ``recognize``: identify, verify, detect; no enrolment, no listing, no raw embeddings;
- ``manage``: also enrol, delete, list and embed, in its collections;
- ``admin``: every collection, and the keys themselves.

Keys made with ``python -m app.keys create`` live in the gallery database, shared by every
process and replica, as ``fid_<key id>_<secret>``: the database keeps the key id and the
SHA-256 of the secret, never the key (the secret is 256 random bits, so a plain hash is
as strong as a slow one would be). ``FACEID_API_KEYS`` are admin keys held in the
settings. Authentication is on as soon as either exists (a database key counts even once
revoked, so revoking the last key never opens the service).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from app.gallery.storage import DEFAULT_COLLECTION, KeyRecord

ALL_COLLECTIONS = "*"
_KEY = re.compile(r"^fid_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Role(IntEnum):
    """What a key may do; a higher role may do everything a lower one may."""

    recognize = 1
    manage = 2
    admin = 3


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and the collections it opens (``None``: every one)."""

    role: Role
    collections: frozenset[str] | None
    key_id: str | None = None
    home: str = DEFAULT_COLLECTION

    def allows(self, role: Role) -> bool:
        """Whether this caller may do what needs ``role``."""
        return self.role >= role

    def can_use(self, collection: str) -> bool:
        """Whether this caller may see ``collection`` at all."""
        return self.collections is None or collection in self.collections

    @property
    def home_collection(self) -> str:
        """The collection a dialect without collection names (CompreFace, DeepStack) uses:
        the first collection the key was made for (``default`` for an admin key)."""
        return self.home


#: The caller when authentication is off: everything is allowed.
OPEN = Principal(Role.admin, None)


def hash_secret(secret: str) -> str:
    """What the database keeps of a key's secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str, str]:
    """A fresh key: ``(key, key_id, secret_hash)``; only the last two are stored."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"fid_{key_id}_{secret}", key_id, hash_secret(secret)


def keys_match(given: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    given_bytes = given.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.encode("utf-8"))
    return found


class KeyRing:
    """The keys this process accepts: the settings' admin keys and the database's keys
    (replaced whole by ``load`` when the gallery follower sees them change)."""

    def __init__(self, admin_keys: Iterable[str] = ()) -> None:
        self.admin_keys = tuple(admin_keys)
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._any_record = False

    def load(self, records: list[KeyRecord]) -> None:
        """Replace the database keys with ``records`` (revoked ones included)."""
        by_id = {r.key_id: r for r in records}
        with self._lock:
            self._records = by_id
            self._any_record = bool(by_id)

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        return bool(self.admin_keys) or self._any_record

    def resolve(self, token: str) -> Principal | None:
        """The caller a key stands for, or None for no valid key."""
        if not token:
            return None
        if self.admin_keys and keys_match(token, self.admin_keys):
            return Principal(Role.admin, None)
        match = _KEY.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self._lock:
            record = self._records.get(key_id)
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(hash_secret(secret), record.secret_hash):
            return None
        collections = (
            None if ALL_COLLECTIONS in record.collections else frozenset(record.collections)
        )
        home = DEFAULT_COLLECTION if collections is None else record.collections[0]
        return Principal(Role[record.role], collections, record.key_id, home)
