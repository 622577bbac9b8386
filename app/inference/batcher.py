"""Async micro-batcher: faces from concurrent requests share one model call.

Each request hands its aligned crops to ``MicroBatcher.embed``; a single collector task
gathers pending faces until ``max_size`` faces are waiting or ``max_wait_ms`` has passed
since the first, stacks them, and runs ONE model call in a worker thread, off the event
loop. While that call runs, new faces queue up and form the next batch, so under load
batches fill by themselves. A request with more faces than ``max_size`` simply spans
several batches.

``more_coming`` (optional) says whether any other request could still add faces soon
(the service passes "some upload is being decoded or detected right now"); when it says
no, the collector does not wait out ``max_wait_ms`` for companions that cannot come, so a
lone request (one client) goes straight to the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("faceid.batcher")

EmbedFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int, int, float], None]  # faces, requests, seconds
MoreComing = Callable[[], bool]


@dataclass
class _Pending:
    crop: np.ndarray
    future: asyncio.Future[np.ndarray]
    caller: int


class MicroBatcher:
    """Gathers faces from concurrent callers into batched ``embed_fn`` calls."""

    def __init__(
        self,
        embed_fn: EmbedFn,
        max_size: int = 32,
        max_wait_ms: float = 5.0,
        observer: BatchObserver | None = None,
        more_coming: MoreComing | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self._embed_fn = embed_fn
        self.max_size = max_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._observer = observer
        self._more_coming = more_coming
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._callers = itertools.count()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceid-model")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop collecting; pending callers get a RuntimeError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(RuntimeError("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ---------------------------------------------------------------- API
    async def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed N aligned crops (uint8 N×112×112×3); returns float32 N×D in order."""
        if self._queue is None or self._task is None:
            raise RuntimeError("MicroBatcher.start() has not been called")
        if len(crops) == 0:
            raise ValueError("no faces to embed")
        loop = asyncio.get_running_loop()
        caller = next(self._callers)
        futures: list[asyncio.Future[np.ndarray]] = []
        for crop in crops:
            future: asyncio.Future[np.ndarray] = loop.create_future()
            self._queue.put_nowait(_Pending(crop, future, caller))
            futures.append(future)
        try:
            rows = await asyncio.gather(*futures)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return np.stack(rows)

    # ----------------------------------------------------------- internals
    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or not self._may_grow():
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return [item for item in batch if not item.future.done()]

    def _may_grow(self) -> bool:
        """Whether waiting can bring more faces (always, without ``more_coming``)."""
        if self._more_coming is None:
            return True
        try:
            return bool(self._more_coming())
        except Exception:  # a broken hint must not stall batching
            log.exception("more_coming failed")
            return True

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(self._queue)
            if not batch:
                continue
            crops = np.stack([item.crop for item in batch])
            started = time.perf_counter()
            try:
                embeddings = await loop.run_in_executor(self._executor, self._embed_fn, crops)
            except asyncio.CancelledError:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("the service is shutting down"))
                raise
            except Exception as exc:
                log.exception("model call failed for a batch of %d faces", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            self._observe(len(batch), len({item.caller for item in batch}), seconds)
            for item, row in zip(batch, embeddings, strict=True):
                if not item.future.done():
                    item.future.set_result(row)

    def _observe(self, faces: int, requests: int, seconds: float) -> None:
        if self._observer is not None:
            try:
                self._observer(faces, requests, seconds)
            except Exception:  # metrics must never break inference
                log.exception("batch observer failed")
