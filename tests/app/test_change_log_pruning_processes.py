"""The change log is pruned between real service processes (issue 24): two ``python -m app``
processes on one SQLite gallery; B is stopped (SIGSTOP) past ``FACEID_CHANGE_LOG_TTL_S``
while A enrols and erases; A prunes the log past B's position; B, continued, finds itself
below the floor, reloads the gallery and answers as A does."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from faceid_testkit import lfw
from scale_testkit import Server, start_all, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.live_service]  # python -m app processes

LATE, GONE = lfw("Ai_Sugiyama", 1), lfw("Al_Gore", 1)


@pytest.fixture
def servers(tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    env = {
        "FACEID_DATA_DIR": str(tmp_path),
        "FACEID_CHANGE_LOG_TTL_S": "10",
        "FACEID_SYNC_POLL_MS": "50",
        "FACEID_LOG_LEVEL": "WARNING",
    }
    a, b = (
        Server("A", tiny_model_dir, tmp_path, **env),
        Server("B", tiny_model_dir, tmp_path, **env),
    )
    try:
        start_all([a, b])
        yield a, b
    finally:
        for server in (a, b):
            if server.proc is not None and server.proc.poll() is None:
                os.killpg(server.proc.pid, signal.SIGCONT)
            server.stop()


def _log_state(db: Path) -> tuple[int, int]:
    """(the pruned floor, rows in the change log) of the gallery file."""
    with sqlite3.connect(db) as conn:
        floor = int(conn.execute("SELECT seq FROM change_floor").fetchone()[0])
        rows = int(conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0])
    return floor, rows


def test_a_process_stopped_past_the_ttl_catches_up_by_reloading(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = servers
    db = tmp_path / "gallery.sqlite3"
    assert a.enroll("Gone", GONE).status_code == 201
    wait_for(lambda: b.who(GONE) == "Gone", timeout=5.0)
    stopped_at = b.health()["gallery"]["change_seq"]
    assert b.proc is not None
    os.killpg(b.proc.pid, signal.SIGSTOP)

    assert a.enroll("Late", LATE).status_code == 201
    assert a.delete("Gone").status_code == 204
    for i in range(20):  # enrol/erase cycles that B misses
        assert a.enroll(f"Tmp {i}", GONE).status_code == 201
        assert a.delete(f"Tmp {i}").status_code == 204
    # B's heartbeat goes stale after 10 s; A's follower prunes within 5 s more
    wait_for(lambda: _log_state(db)[0] > stopped_at, timeout=40.0)
    floor, rows = _log_state(db)
    assert rows < 2 * 20 + 2  # fewer than were written while B was stopped

    os.killpg(b.proc.pid, signal.SIGCONT)
    wait_for(lambda: b.who(LATE) == "Late", timeout=10.0)
    assert b.who(GONE) is None
    assert b.health()["gallery"]["change_seq"] >= floor
    assert b.health()["gallery"]["faces"] == a.health()["gallery"]["faces"] == 1
    assert "reloading the gallery" in b.log_tail()
    # and B follows the log again afterwards
    assert a.enroll("After", GONE).status_code == 201
    wait_for(lambda: b.who(GONE) == "After", timeout=5.0)
