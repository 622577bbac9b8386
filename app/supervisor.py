"""``FACEID_WORKERS`` > 1: the supervisor process and its workers' tie to it.

uvicorn's ``Multiprocess`` supervisor, with two changes:

- **Workers die with their supervisor.** Each worker asks the kernel for SIGTERM when its
  parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``) and also watches its parent id from a
  thread (every platform; it catches a parent that died before the worker got this far).
  On either, the worker shuts down gracefully, and is ended hard ``_HARD_EXIT_S`` later if
  that hangs. So a ``kill -9`` of the supervisor leaves no orphan serving on the port,
  and a new ``python -m app`` can bind it (it retries the bind for ``BIND_RETRY_S`` while the
  old workers finish).
- **A dead worker is replaced within a second.** uvicorn pings its workers one after the
  other and waits for each answer up to ``timeout_worker_healthcheck`` (which must be long
  for a worker still loading TensorFlow): while it waits on one, a worker that died is not
  even looked at. Here every check is non-blocking: a worker whose process has exited is
  replaced at the next round (every 0.5 s); a worker whose process lives but does not answer
  its ping is killed and replaced after ``startup_timeout`` while it starts and
  ``HANG_TIMEOUT_S`` once it has started.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("faceid.supervisor")

#: Set by ``python -m app`` for its workers: the supervisor's process id.
SUPERVISOR_PID = "FACEID_SUPERVISOR_PID"
#: How long a started worker may leave a liveness ping unanswered before it is replaced.
HANG_TIMEOUT_S = 30.0
#: How long ``serve_workers`` retries binding a port still held by a previous run's workers.
BIND_RETRY_S = 15.0
_HARD_EXIT_S = 20.0  # after the parent's death: graceful shutdown (10 s) plus a margin
_PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------ worker side
def watch_supervisor() -> bool:
    """In a worker started by ``python -m app``: end this process when the supervisor dies.
    Returns whether there was a supervisor to watch."""
    expected = os.environ.get(SUPERVISOR_PID)
    if not expected or not expected.isdigit():
        return False
    supervisor = int(expected)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    thread = threading.Thread(
        target=_watch, args=(supervisor,), name="faceid-supervisor-watch", daemon=True
    )
    thread.start()
    return True


def _watch(supervisor: int, interval: float = 0.5) -> None:
    while os.getppid() == supervisor:
        time.sleep(interval)
    log.warning(
        "the supervisor process is gone; this worker stops", extra={"supervisor": supervisor}
    )
    os.kill(os.getpid(), signal.SIGTERM)  # graceful: uvicorn finishes what is in flight
    time.sleep(_HARD_EXIT_S)
    logging.shutdown()
    os._exit(1)


# --------------------------------------------------------------- supervisor side
@dataclass
class _Liveness:
    """What the supervisor knows of one worker's answers to its pings."""

    last_answer: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None
    started: bool = False


class FaceidMultiprocess(Multiprocess):
    """uvicorn's supervisor with non-blocking health checks (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.startup_timeout = float(config.timeout_worker_healthcheck)
        self.hang_timeout = min(HANG_TIMEOUT_S, self.startup_timeout)
        self._liveness: dict[int, _Liveness] = {}

    def _responsive(self, process: Process, now: float) -> bool:
        state = self._liveness.setdefault(id(process), _Liveness(last_answer=now))
        try:
            if state.ping_sent is not None and process.parent_conn.poll(0):
                state.started = bool(process.parent_conn.recv())
                state.last_answer = now
                state.ping_sent = None
            if state.ping_sent is None:
                process.parent_conn.send(b"ping")
                state.ping_sent = now
        except (OSError, EOFError, ValueError):
            pass  # a broken pipe: the process is dying; its exit is seen next round
        limit = self.hang_timeout if state.started else self.startup_timeout
        return now - state.last_answer <= limit

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        now = time.monotonic()
        for idx, process in enumerate(self.processes):
            alive = process.process.is_alive()
            if alive and self._responsive(process, now):
                continue
            if alive:
                log.error("worker [%s] stopped answering; replacing it", process.pid)
            process.kill()
            process.join()
            self._liveness.pop(id(process), None)
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker [%s] failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning(
                "worker [%s] died (exit %s); starting a new one", process.pid, process.exitcode
            )
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[idx] = replacement

    def restart_all(self) -> None:
        super().restart_all()
        self._liveness.clear()


def bind_with_retry(config: uvicorn.Config, retry_s: float = BIND_RETRY_S) -> socket.socket:
    """``config``'s listening socket; while the port is in use (workers of a supervisor
    killed a moment ago still finishing), retry for up to ``retry_s`` seconds."""
    deadline = time.monotonic() + retry_s
    while True:
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.25)
            continue
        sock.set_inheritable(True)
        return sock


def serve_workers(app: str, workers: int, startup_timeout: int, **options: Any) -> int:
    """Run ``workers`` uvicorn worker processes of ``app`` on one socket under
    ``FaceidMultiprocess`` until a signal; returns 0, or 1 when the port cannot be bound."""
    os.environ[SUPERVISOR_PID] = str(os.getpid())  # inherited by the workers
    config = uvicorn.Config(
        app, workers=workers, timeout_worker_healthcheck=startup_timeout, **options
    )
    try:
        sock = bind_with_retry(config)
    except OSError as exc:
        log.critical("cannot bind %s:%s: %s", config.host, config.port, exc)
        return 1
    try:
        FaceidMultiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
