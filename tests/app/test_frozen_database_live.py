"""Issue 28: a live ``python -m app`` on a PostgreSQL gallery whose server is frozen for real
(every PostgreSQL process SIGSTOPped: its kernel still ACKs TCP, so nothing ever fails).

Before: ten pending listings hung for ever on asyncio's default executor, which
``/identify``'s search shares, so ``/identify`` stalled too (18 s in the probe) and
``/health`` kept saying ``ok``. Now listings and enrolments answer 503
``storage_unavailable`` within their deadline, ``/identify`` keeps its latency, ``/health``
says ``degraded``, and everything recovers when the server is thawed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from faceid_testkit import lfw
from pg_testkit import PostgresCluster
from scale_testkit import Server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.subprocess]

PHOTO = lfw("Ai_Sugiyama", 1)
OTHER = lfw("Al_Gore", 1)
STATEMENT_S, CONNECT_S = 1.0, 2.0
CALL_S = STATEMENT_S + 1.0  # the client-side deadline of one call
# what one request may wait for the database in all (app.state.build): a started call
# waits for the gallery's write lock, the connection, connects and runs, each bounded;
# it may queue one more deadline before it starts
REQUEST_S = (3 * CALL_S + CONNECT_S + 1.0) + CALL_S
IDENTIFY_S = 5.0  # /identify while the database is frozen (it took 18 s, or for ever)


@pytest.fixture(scope="module")
def server(
    postgres: PostgresCluster, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    postgres.reset()
    logs = tmp_path_factory.mktemp("frozen-db")
    srv = Server(
        "frozen",
        tiny_model_dir,
        logs,
        FACEID_DATABASE_URL=postgres.url,
        FACEID_DATA_DIR=str(logs / "unused"),
        FACEID_DB_STATEMENT_TIMEOUT_S=str(STATEMENT_S),
        FACEID_DB_CONNECT_TIMEOUT_S=str(CONNECT_S),
        FACEID_DB_LOCK_TIMEOUT_S="1",
    )
    srv.launch()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_a_frozen_database_answers_503_in_time_and_never_stalls_identify(
    server: Server, postgres: PostgresCluster
) -> None:
    assert server.enroll("Before Freeze", PHOTO).status_code == 201
    assert server.who(PHOTO) == "Before Freeze"
    results: list[tuple[int, str, float]] = []

    def listing() -> None:
        t0 = time.monotonic()
        try:
            r = httpx.get(f"{server.base}/identities", timeout=60)
            results.append((r.status_code, r.json()["error"]["code"], time.monotonic() - t0))
        except Exception as exc:  # a hang past 60 s, or an unexpected body
            results.append((0, repr(exc), time.monotonic() - t0))

    postgres.freeze()
    try:
        threads = [threading.Thread(target=listing) for _ in range(10)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the listings are pending on the database
        for _ in range(3):
            t0 = time.monotonic()
            assert server.who(PHOTO) == "Before Freeze"  # from memory
            took = time.monotonic() - t0
            assert took < IDENTIFY_S, f"/identify took {took:.2f} s while the database hung"
        refused = server.enroll("During Freeze", OTHER)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        wait_for(lambda: server.health()["status"] == "degraded", 2 * CALL_S + 1.0)
        for t in threads:
            t.join(timeout=90)
        assert len(results) == 10
        for status, code, took in results:
            assert (status, code) == (503, "storage_unavailable"), results
            # each waits for the connection, then for its own call; ten of them share one
            # connection, so a bound per request, not ten times it
            assert took < REQUEST_S + 2.0, results
    finally:
        postgres.thaw()
    wait_for(lambda: server.health()["status"] == "ok", REQUEST_S + 10.0)
    assert server.enroll("After Freeze", OTHER).status_code == 201
    assert server.database_identities() == {"Before Freeze": 1, "After Freeze": 1}
    for name in ("Before Freeze", "After Freeze"):
        assert server.delete(name).status_code == 204
