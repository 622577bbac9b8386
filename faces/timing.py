"""Optional per-stage timers for the face pipeline, used by ``bench/profile.py``.

``stage("detect.rnet.net")`` is a no-op (one context-variable read) unless a recorder is
active in the current context (``recording()``), so the service pays nothing for it.
Each stage records wall time and the process's CPU time (every thread, so TensorFlow's and
XNNPACK's own thread pools count): on a shared machine CPU time is the steadier measure of
what a stage costs, as long as one request at a time is being timed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

# name -> [wall seconds, process CPU seconds, calls]
Record = dict[str, list[float]]

_recorder: contextvars.ContextVar[Record | None] = contextvars.ContextVar(
    "faceid_stage_recorder", default=None
)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the wall and CPU time of the ``with`` body to ``name`` in the active recorder."""
    rec = _recorder.get()
    if rec is None:
        yield
        return
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        entry = rec.setdefault(name, [0.0, 0.0, 0.0])
        entry[0] += time.perf_counter() - t0
        entry[1] += time.process_time() - c0
        entry[2] += 1


@contextlib.contextmanager
def recording() -> Iterator[Record]:
    """Collect ``stage`` timings of everything run inside the block (this context only)."""
    rec: Record = {}
    token = _recorder.set(rec)
    try:
        yield rec
    finally:
        _recorder.reset(token)
