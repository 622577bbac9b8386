"""Issue 28: a PostgreSQL server that stops answering (SIGSTOPped: a hung host, a full disk,
a partition that does not reset) bounds every gallery call instead of hanging it.

The cluster is frozen for real (every server process SIGSTOPped; its kernel still ACKs TCP,
so keepalives never fire) and always thawed before the test ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pg_testkit import PostgresCluster, wait_until

from app.domain_errors import StorageUnavailable
from app.gallery.service import GalleryService
from app.gallery.storage import open_storage
from app.gallery.storage.postgres import DbTimeouts, PostgresStore

pytestmark = pytest.mark.postgres

DIM = 8
LIMITS = DbTimeouts(connect=2.0, statement=1.0, lock=1.0)
CALL = LIMITS.call  # 2 s: the client-side deadline of one call


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def store(postgres: PostgresCluster, tmp_path: Path) -> Iterator[PostgresStore]:
    postgres.reset()
    opened = open_storage(postgres.url, tmp_path / "unused", "m/1", DIM, LIMITS)
    assert isinstance(opened, PostgresStore)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def frozen(postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """Call ``postgres.freeze()`` in the test; it is thawed whatever happens."""
    try:
        yield postgres
    finally:
        postgres.thaw()


def _timed_failure(call: object) -> float:
    assert callable(call)
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable):
        call()
    return time.monotonic() - t0


def test_a_call_on_a_frozen_server_fails_within_its_deadline_and_recovers(
    store: PostgresStore, frozen: PostgresCluster
) -> None:
    store.list_identities(10, 0)  # the connection is open before the freeze
    frozen.freeze()
    # the open connection: the client-side deadline breaks it
    assert _timed_failure(lambda: store.list_identities(10, 0)) < CALL + 1.0
    # a new connection: the kernel accepts it, the frozen postmaster never answers
    assert _timed_failure(lambda: store.list_identities(10, 0)) < LIMITS.connect + 1.5
    frozen.thaw()
    assert store.list_identities(10, 0) == ([], 0)


def test_callers_queued_on_the_connection_fail_too(
    store: PostgresStore, frozen: PostgresCluster
) -> None:
    store.count()
    frozen.freeze()
    took: list[float] = []
    errors: list[BaseException] = []

    def call() -> None:
        t0 = time.monotonic()
        try:
            store.list_identities(10, 0)
        except StorageUnavailable as exc:
            errors.append(exc)
        took.append(time.monotonic() - t0)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a call is still hanging"
    assert len(errors) == 6
    # each waits for the connection at most one deadline, then connects or queries within one
    assert max(took) < 2 * CALL + LIMITS.connect + 1.0, took


def test_a_slow_statement_is_cancelled_by_the_server(store: PostgresStore) -> None:
    took = _timed_failure(lambda: store._query("SELECT pg_sleep(30)"))
    assert took < LIMITS.statement + 1.0
    assert store.count() == (0, 0)  # reconnected


def test_health_turns_degraded_while_frozen_and_the_follower_never_hangs(
    store: PostgresStore, frozen: PostgresCluster
) -> None:
    service = GalleryService.open(store)
    service.start_sync(poll_s=0.05)
    try:
        service.enroll("Ada", _vec(1))
        assert service.storage_ok
        frozen.freeze()
        assert wait_until(lambda: not service.storage_ok, timeout=3 * CALL) < 2 * CALL + 0.5
        with pytest.raises(StorageUnavailable):
            service.enroll("Bob", _vec(2))
        frozen.thaw()
        wait_until(lambda: service.storage_ok, timeout=LIMITS.connect + 3 * CALL)
        service.enroll("Bob", _vec(2))
    finally:
        t0 = time.monotonic()
        service.close()  # the follower thread ends: it is not stuck in a call
        assert time.monotonic() - t0 < 2 * CALL + LIMITS.connect
