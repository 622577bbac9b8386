"""Service processes sharing one SQLite gallery file: two processes on two ports run the
same scenarios as on PostgreSQL, and ``FACEID_WORKERS=2`` serves one port from two
processes that follow each other's changes.

The processes are shared by the tests of this module, which run in order.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from faceid_testkit import lfw
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

pytestmark = [pytest.mark.slow, pytest.mark.live_service]  # python -m app processes

PHOTO = lfw("Ai_Sugiyama", 1)
OTHER = lfw("Al_Gore", 1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scale-sqlite")


@pytest.fixture(scope="module")
def servers(tiny_model_dir: Path, data_dir: Path) -> Iterator[tuple[Server, Server]]:
    a = Server("A", tiny_model_dir, data_dir, FACEID_DATA_DIR=str(data_dir))
    b = Server("B", tiny_model_dir, data_dir, FACEID_DATA_DIR=str(data_dir))
    try:
        start_all([a, b])
        yield a, b
    finally:
        for server in (a, b):
            server.stop()


def test_enrol_on_a_is_identified_on_b_within_the_bound(servers: tuple[Server, Server]) -> None:
    a, b = servers
    assert b.health()["gallery"]["storage"] == "sqlite"
    enrol_on_a_is_identified_on_b(a, b, PHOTO)


def test_delete_on_a_is_unknown_on_b(servers: tuple[Server, Server]) -> None:
    delete_on_a_is_unknown_on_b(*servers, PHOTO)


def test_b_killed_with_9_gets_what_a_enrolled_while_it_was_down(
    servers: tuple[Server, Server],
) -> None:
    killed_b_gets_what_a_enrolled_meanwhile(*servers, OTHER)


def test_eight_concurrent_clients_leave_both_galleries_equal_to_the_file(
    servers: tuple[Server, Server], data_dir: Path
) -> None:
    concurrent_clients_leave_every_gallery_equal_to_the_database(list(servers), PHOTO)
    with sqlite3.connect(data_dir / "gallery.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM faces").fetchone() == (0,)
        seq = conn.execute("SELECT MAX(seq) FROM changes").fetchone()[0]
    for server in servers:
        wait_for(lambda s=server: s.health()["gallery"]["change_seq"] == seq, 5 * BOUND_S)  # type: ignore[misc]


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP one worker so that the other accepts every new connection (briefly: the
    uvicorn supervisor replaces a worker that misses its health check, 120 s here)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _answers_alone(pool: Server, paused_pid: int) -> bool:
    """Whether the worker that is not ``paused_pid`` answers /health 200 within 3 s."""
    with paused(paused_pid):
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{pool.base}/health", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    return False


def test_faceid_workers_2_serves_one_port_from_two_processes_in_sync(
    tiny_model_dir: Path, tmp_path: Path, servers: tuple[Server, Server]
) -> None:
    for server in servers:  # free the cores for the two workers
        server.stop()
    pool = Server(
        "pool", tiny_model_dir, tmp_path, FACEID_DATA_DIR=str(tmp_path), FACEID_WORKERS="2"
    )
    pool.launch()
    try:
        assert pool.proc is not None
        parent = psutil.Process(pool.proc.pid)

        def workers() -> list[int]:
            return [
                p.pid
                for p in parent.children()
                if "spawn_main" in " ".join(p.cmdline()) and p.is_running()
            ]

        wait_for(lambda: len(workers()) == 2, 60.0, interval=0.2)
        first, second = workers()
        pool.wait_ready()
        # Both workers ready: each answers /health 200 while the other is paused.
        for other in (second, first):
            wait_for(lambda o=other: _answers_alone(pool, o), 240.0, interval=0.5)  # type: ignore[misc]
        with paused(second):
            assert pool.enroll("Pooled", PHOTO).status_code == 201  # served by `first`
        time.sleep(BOUND_S)
        with paused(first):
            assert pool.who(PHOTO) == "Pooled"  # served by `second`
            assert pool.delete("Pooled").status_code == 204
        time.sleep(BOUND_S)
        with paused(second):
            assert pool.who(PHOTO) is None  # `first` has applied the erasure
        assert workers() == [first, second]  # no worker was replaced meanwhile
    finally:
        pool.stop()
