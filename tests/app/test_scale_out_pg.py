"""Two live service processes on one PostgreSQL gallery (issue 13): each sees the other's
enrollments and erasures within the staleness bound, a process killed with -9 catches up
when restarted, a PostgreSQL outage refuses writes (503) without losing anything, and
concurrent clients leave every process's gallery equal to the database's.

The processes are shared by the tests of this module, which run in order.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from faceid_testkit import free_port, lfw
from pg_testkit import PostgresCluster
from scale_testkit import (
    BOUND_S,
    Server,
    concurrent_clients_leave_every_gallery_equal_to_the_database,
    delete_on_a_is_unknown_on_b,
    enrol_on_a_is_identified_on_b,
    killed_b_gets_what_a_enrolled_meanwhile,
    start_all,
    wait_for,
)

from app.settings import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.live_service]  # python -m app processes

PHOTO = lfw("Ai_Sugiyama", 1)
OTHER = lfw("Al_Gore", 1)


@pytest.fixture(scope="module")
def servers(
    postgres: PostgresCluster, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    postgres.reset()
    logs = tmp_path_factory.mktemp("scale-pg")
    env = {"FACEID_DATABASE_URL": postgres.url, "FACEID_DATA_DIR": str(logs / "unused")}
    a = Server("A", tiny_model_dir, logs, **env)
    b = Server("B", tiny_model_dir, logs, **env)
    try:
        start_all([a, b])
        yield a, b
    finally:
        for server in (a, b):
            server.stop()


def _database(cluster: PostgresCluster) -> tuple[dict[str, int], int]:
    with psycopg.connect(cluster.url) as conn:
        rows = conn.execute("SELECT identity, COUNT(*) FROM faces GROUP BY identity").fetchall()
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
    assert seq is not None
    return {str(i): int(n) for i, n in rows}, int(seq[0])


def test_enrol_on_a_is_identified_on_b_within_the_bound(servers: tuple[Server, Server]) -> None:
    a, b = servers
    health = b.health()
    assert health["status"] == "ok" and health["gallery"]["storage"] == "postgresql"
    enrol_on_a_is_identified_on_b(a, b, PHOTO)


def test_delete_on_a_is_unknown_on_b(servers: tuple[Server, Server]) -> None:
    delete_on_a_is_unknown_on_b(*servers, PHOTO)


def test_b_killed_with_9_gets_what_a_enrolled_while_it_was_down(
    servers: tuple[Server, Server],
) -> None:
    killed_b_gets_what_a_enrolled_meanwhile(*servers, OTHER)


def test_postgres_outage_answers_503_loses_nothing_and_both_catch_up(
    servers: tuple[Server, Server], postgres: PostgresCluster
) -> None:
    a, b = servers
    assert a.enroll("Before Outage", PHOTO).status_code == 201
    before, _ = _database(postgres)
    postgres.stop()
    try:
        refused = a.enroll("During Outage", OTHER)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        assert b.delete("Before Outage").status_code == 503
        assert httpx.get(f"{b.base}/identities", timeout=30).status_code == 503
        # Identification keeps answering from memory, on both.
        assert a.who(PHOTO) == "Before Outage"
        wait_for(lambda: b.health()["status"] == "degraded", 5.0)
        assert b.who(PHOTO) == "Before Outage"
        assert a.health()["status"] == "degraded"
    finally:
        postgres.start()
    wait_for(lambda: {a.health()["status"], b.health()["status"]} == {"ok"}, 10.0)
    after, _ = _database(postgres)
    assert after == before  # nothing half-written, nothing lost
    assert b.enroll("After Outage", OTHER).status_code == 201
    wait_for(lambda: a.who(OTHER) == "After Outage", 5 * BOUND_S)
    truth, seq = _database(postgres)
    assert set(truth) == {"Before Outage", "After Outage"}
    for server in (a, b):
        wait_for(lambda s=server: s.health()["gallery"]["change_seq"] == seq, 5 * BOUND_S)  # type: ignore[misc]
        assert server.known_identities(PHOTO) == set(truth)
    for name in truth:
        assert a.delete(name).status_code == 204


def test_eight_concurrent_clients_leave_both_galleries_equal_to_the_database(
    servers: tuple[Server, Server], postgres: PostgresCluster
) -> None:
    concurrent_clients_leave_every_gallery_equal_to_the_database(list(servers), PHOTO)
    truth, seq = _database(postgres)
    assert truth == {}  # the scenario erased what it made
    for server in servers:
        wait_for(lambda s=server: s.health()["gallery"]["change_seq"] == seq, 5 * BOUND_S)  # type: ignore[misc]


def test_python_m_app_refuses_to_start_when_postgres_is_down(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    server = Server(
        "down",
        tiny_model_dir,
        tmp_path,
        FACEID_DATABASE_URL=f"postgresql://faceid:s3cr3t-pw@127.0.0.1:{free_port()}/faceid",
    )
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr and "Cannot reach the gallery database" in (
        result.stderr
    )
    assert "s3cr3t-pw" not in result.stderr
    assert "Traceback" not in result.stderr
