"""The change log and how processes follow it, on both engines (SQLite file, PostgreSQL).

Two ``GalleryService`` objects on two connections to one database stand for two service
processes; the live multi-process tests are in ``tests/app/test_scale_out.py``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pg_testkit import PostgresCluster, wait_until

from app.domain_errors import StartupError, StorageUnavailable
from app.gallery.service import GalleryService
from app.gallery.storage import SCHEMA_VERSION, GalleryStorage, open_storage
from app.gallery.storage.postgres import PostgresStore, redact
from app.gallery.storage.sqlite import GalleryStore

DIM = 8
Opener = Callable[[], GalleryStorage]


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _db_faces(store: GalleryStorage) -> set[str]:
    rows, _ = store.snapshot()
    return set(rows.face_ids)


def test_another_process_sees_enrollments_and_erasures_within_the_poll_interval(
    opener: Opener,
) -> None:
    a = GalleryService.open(opener())
    b = GalleryService.open(opener())
    b.start_sync(poll_s=0.05)
    try:
        ada = a.enroll("Ada", _vec(1))
        delay = wait_until(lambda: ada.face_id in b.index, timeout=2.0)
        assert delay < 1.0
        [[(who, score)]] = b.index.search(_vec(1)[None], top_k=1)
        assert who == "Ada" and score == pytest.approx(1.0, abs=1e-6)
        a.enroll("Bob", _vec(2))
        assert a.delete_identity("Ada") == 1
        wait_until(lambda: b.index.face_ids() == a.index.face_ids(), timeout=2.0)
        assert [who for who, _ in b.index.search(_vec(1)[None], top_k=5)[0]] == ["Bob"]
        assert b.change_seq == 3 and b.storage_ok  # add Ada, add Bob, remove Ada
        assert a.change_seq == 0  # a applied its own writes directly; its log is behind
        assert a.sync() == 3 and a.change_seq == 3
        assert a.index.face_ids() == b.index.face_ids() == _db_faces(a.store)
    finally:
        b.close()
        a.close()


def test_collections_and_keys_reach_another_process_within_the_poll_interval(
    opener: Opener,
) -> None:
    from app.gallery.records import utc_now
    from app.gallery.storage import KeyRecord

    class Keys:
        def __init__(self) -> None:
            self.records: list[KeyRecord] = []

        def load(self, records: list[KeyRecord]) -> None:
            self.records = records

    a = GalleryService.open(opener())
    b = GalleryService.open(opener())
    keys = Keys()
    b.follow_keys(keys)
    b.start_sync(poll_s=0.05)
    try:
        ada = a.enroll("Ada", _vec(1), collection="front")
        a.enroll("Ada", _vec(2))  # the same name in default is another person
        wait_until(lambda: ada.face_id in b.index_of("front"), timeout=2.0)
        wait_until(lambda: b.size() == (1, 1), timeout=2.0)
        assert b.size("front") == (1, 1) and ada.face_id not in b.index
        [[(who, score)]] = b.index_of("front").search(_vec(1)[None], top_k=1)
        assert who == "Ada" and score == pytest.approx(1.0, abs=1e-6)
        assert [s.name for s in b.collection_sizes()] == ["default", "front"]
        assert b.store.count("front") == (1, 1) and b.store.count() == (2, 2)
        assert a.delete_identity("Ada", "front") == 1
        wait_until(lambda: b.size("front") == (0, 0), timeout=2.0)
        assert b.size() == (1, 1)  # default's Ada is untouched
        a.store.add_key(KeyRecord("k1", "h" * 64, "manage", ("front",), utc_now()))
        wait_until(lambda: [r.key_id for r in keys.records] == ["k1"], timeout=2.0)
        assert a.store.revoke_key("k1", utc_now())
        wait_until(lambda: keys.records[0].revoked_at is not None, timeout=2.0)
        assert not a.store.revoke_key("k1", utc_now())
    finally:
        b.close()
        a.close()


def test_own_writes_are_visible_at_once_and_replaying_the_log_changes_nothing(
    opener: Opener,
) -> None:
    a = GalleryService.open(opener())
    try:
        kept = a.enroll("Ada", _vec(1))
        erased = a.enroll("Ada", _vec(2))
        assert {kept.face_id, erased.face_id} == a.index.face_ids()  # read-your-writes
        assert a.delete_face("Ada", erased.face_id)
        # Replaying: the add of the erased face finds no row and is skipped, the add of the
        # kept face is already there, the remove is a no-op.
        assert a.sync() == 3
        assert a.index.face_ids() == {kept.face_id} == _db_faces(a.store)
    finally:
        a.close()


def test_an_erasure_elsewhere_never_removes_a_face_enrolled_here_later(opener: Opener) -> None:
    a = GalleryService.open(opener())
    b = GalleryService.open(opener())
    try:
        old = a.enroll("Ada", _vec(1))
        b.sync()
        assert old.face_id in b.index
        assert a.delete_identity("Ada") == 1  # seq 2: remove old
        new = b.enroll("Ada", _vec(2))  # seq 3, applied on b before b has seen seq 2
        assert b.sync() == 2
        assert b.index.face_ids() == {new.face_id} == _db_faces(b.store)
        assert a.sync() == 3 and a.index.face_ids() == {new.face_id}
    finally:
        b.close()
        a.close()


def test_a_restarted_process_starts_from_the_snapshot_and_its_sequence(opener: Opener) -> None:
    a = GalleryService.open(opener())
    try:
        a.enroll("Ada", _vec(1))
        b = GalleryService.open(opener())
        assert b.change_seq == 1 and b.faces == 1
        b.close()
        bob = a.enroll("Bob", _vec(2))  # while b is down
        b = GalleryService.open(opener())
        assert b.change_seq == 2 and bob.face_id in b.index
        assert b.sync() == 0
        b.close()
    finally:
        a.close()


def test_the_change_log_names_faces_only_never_people(opener: Opener) -> None:
    store = opener()
    a = GalleryService.open(store)
    try:
        a.enroll("Ada Lovelace", _vec(1))
        a.delete_identity("Ada Lovelace")
        changes = store.changes_since(0)
        assert [c.op for c in changes] == ["add", "remove"]
        assert all(c.identity is None and c.embedding is None for c in changes)
    finally:
        a.close()
    if isinstance(store, GalleryStore):
        rows = sqlite3.connect(store.path).execute("SELECT * FROM changes").fetchall()
        assert len(rows) == 2 and "Ada Lovelace" not in repr(rows)


def test_concurrent_writers_on_two_handles_leave_both_indexes_equal_to_the_database(
    opener: Opener,
) -> None:
    services = [GalleryService.open(opener()), GalleryService.open(opener())]
    for s in services:
        s.start_sync(poll_s=0.05)
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            service = services[n % 2]
            rng = np.random.default_rng(n)
            for i in range(15):
                name = f"p{n}-{i % 4}"
                if rng.random() < 0.3:
                    service.delete_identity(name)
                else:
                    service.enroll(name, _vec(1000 * n + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        truth = _db_faces(services[0].store)
        assert truth
        wait_until(lambda: all(s.index.face_ids() == truth for s in services), timeout=5.0)
        seqs = [c.seq for c in services[0].store.changes_since(0, limit=10_000)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        wait_until(lambda: all(s.change_seq == seqs[-1] for s in services), timeout=5.0)
    finally:
        for s in services:
            s.close()


def test_a_version_1_sqlite_file_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "gallery.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE faces (face_id TEXT PRIMARY KEY, identity TEXT NOT NULL,
            embedding BLOB NOT NULL, model_version TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE INDEX faces_identity ON faces (identity, created_at);
        PRAGMA user_version=1;
        """
    )
    conn.execute(
        "INSERT INTO faces VALUES ('f1', 'Ada', ?, 'm/1', '2025-01-01T00:00:00Z')",
        (_vec(1).tobytes(),),
    )
    conn.commit()
    conn.close()
    service = GalleryService.open(GalleryStore(db, "m/1", DIM))
    assert service.faces == 1 and service.change_seq == 0
    assert service.size("default") == (1, 1)  # faces from before collections
    service.enroll("Bob", _vec(2))
    service.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    columns = [r[1] for r in conn.execute("PRAGMA table_info(faces)")]
    assert columns[-4:] == ["content_hash", "crop", "collection", "quality"]
    assert conn.execute("SELECT op FROM changes").fetchall() == [("add",)]
    conn.close()


def test_a_newer_schema_refuses_to_start(opener: Opener) -> None:
    store = opener()
    if isinstance(store, GalleryStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE schema_version SET version = 99")
    else:
        assert isinstance(store, PostgresStore)
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = 99")
    store.close()
    with pytest.raises(StartupError, match="schema version 99"):
        opener()


# ------------------------------------------------------------------ PostgreSQL only
def test_postgres_down_at_startup_is_a_clear_startup_error(tmp_path: Path) -> None:
    from faceid_testkit import free_port

    url = f"postgresql://faceid:secret@127.0.0.1:{free_port()}/faceid"
    with pytest.raises(StartupError, match="Cannot reach the gallery database") as caught:
        open_storage(url, tmp_path / "unused.sqlite3", "m/1", DIM)
    assert "secret" not in str(caught.value) and "faceid:***@" in str(caught.value)
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_postgres_outage_refuses_writes_keeps_matching_and_catches_up(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    postgres.reset()
    a = GalleryService.open(PostgresStore(postgres.url, "m/1", DIM))
    b = GalleryService.open(PostgresStore(postgres.url, "m/1", DIM))
    b.start_sync(poll_s=0.05)
    try:
        ada = a.enroll("Ada", _vec(1))
        wait_until(lambda: ada.face_id in b.index, timeout=2.0)
        postgres.stop()
        try:
            with pytest.raises(StorageUnavailable):
                a.enroll("Bob", _vec(2))
            with pytest.raises(StorageUnavailable):
                a.delete_identity("Ada")
            with pytest.raises(StorageUnavailable):
                a.list_identities(10, 0)
            assert not a.storage_ok
            wait_until(lambda: not b.storage_ok, timeout=2.0)
            # Matching answers from memory; nothing was half-applied.
            assert a.index.face_ids() == b.index.face_ids() == {ada.face_id}
            assert b.index.search(_vec(1)[None], top_k=1)[0][0][0] == "Ada"
        finally:
            postgres.start()
        bob = a.enroll("Bob", _vec(2))  # reconnects
        assert a.storage_ok
        wait_until(lambda: b.storage_ok and bob.face_id in b.index, timeout=5.0)
        assert _db_faces(a.store) == {ada.face_id, bob.face_id} == b.index.face_ids()
    finally:
        b.close()
        a.close()
