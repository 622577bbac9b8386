"""Issue 28: ``FACEID_WORKERS`` workers and their supervisor (``app.supervisor``), for real.

- a worker killed with -9 is replaced within ``REPLACED_S``, even while the other worker is
  hung (SIGSTOPped: uvicorn's own supervisor waited up to 120 s on its ping first), and the
  replacement serves;
- ``kill -9`` of the supervisor takes its workers down within ``ORPHANS_GONE_S`` (uvicorn's
  were left serving as orphans), and ``python -m app`` started again on the same port serves
  (it failed with "Address already in use", exit 3).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from scale_testkit import Server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.live_service]

REPLACED_S = 3.0  # a dead worker's replacement process is running within this
ORPHANS_GONE_S = 25.0  # graceful shutdown (10 s at most) plus the hard-exit margin
STARTUP_S = 300.0  # a replacement loads TensorFlow and the model on a loaded machine


def workers(server: Server) -> set[int]:
    """The worker processes of ``server``'s supervisor (multiprocessing's spawned children)."""
    assert server.proc is not None
    found = set()
    for child in psutil.Process(server.proc.pid).children():
        with contextlib.suppress(psutil.Error):  # a zombie, or gone meanwhile
            if "spawn_main" in " ".join(child.cmdline()):
                found.add(child.pid)
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("supervisor")
    srv = Server("workers", tiny_model_dir, logs, FACEID_WORKERS="2", FACEID_DATA_DIR=str(logs))
    srv.launch()
    try:
        srv.wait_ready()
        wait_for(lambda: len(workers(srv)) == 2, 30.0)
        yield srv
    finally:
        srv.stop()


def _serves_without(server: Server, stopped: int) -> None:
    """Only the other worker can accept while ``stopped`` is SIGSTOPped: /health answering
    proves it serves."""
    os.kill(stopped, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.base}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the replacement did not serve:\n{server.log_tail()}")
    finally:
        # (a worker stopped past HANG_TIMEOUT_S was killed and replaced: also fine)
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)


def test_a_killed_worker_is_replaced_within_seconds_and_the_replacement_serves(
    server: Server,
) -> None:
    before = workers(server)
    victim, survivor = sorted(before)
    os.kill(victim, signal.SIGKILL)
    took = wait_for(lambda: len(workers(server) - {victim}) == 2, 30.0, interval=0.05)
    assert took < REPLACED_S, f"replaced after {took:.1f} s"
    (replacement,) = workers(server) - before
    _serves_without(server, survivor)
    assert alive(replacement)


def test_a_dead_worker_is_replaced_even_while_the_other_one_hangs(server: Server) -> None:
    # uvicorn pinged the hung worker first and waited up to timeout_worker_healthcheck
    # (120 s) for its answer before it even looked at the dead one
    hung, victim = sorted(workers(server))
    os.kill(hung, signal.SIGSTOP)
    try:
        time.sleep(1.0)  # a ping to the hung worker is outstanding
        os.kill(victim, signal.SIGKILL)
        took = wait_for(lambda: len(workers(server) - {victim}) == 2, 60.0, interval=0.05)
        assert took < REPLACED_S, f"replaced after {took:.1f} s"
    finally:
        os.kill(hung, signal.SIGCONT)
    server.wait_ready(STARTUP_S)


def test_kill_9_of_the_supervisor_takes_its_workers_down_and_a_restart_serves(
    server: Server,
) -> None:
    assert server.proc is not None
    children = workers(server)
    assert len(children) == 2
    port = server.port
    os.kill(server.proc.pid, signal.SIGKILL)  # the supervisor only, not its process group
    server.proc.wait(timeout=30)
    took = wait_for(lambda: not any(alive(pid) for pid in children), ORPHANS_GONE_S, 0.1)
    print(f"orphans gone {took:.1f} s after kill -9 of the supervisor")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base}/health", timeout=2)
    server.launch(port)  # the same port: nothing holds it any more
    server.wait_ready(STARTUP_S)
    assert server.port == port and server.proc is not None and server.proc.poll() is None
