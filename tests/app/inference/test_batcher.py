"""MicroBatcher: concurrent callers share model calls, order and errors are kept."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.inference.batcher import MicroBatcher


def _crops(values: list[int]) -> np.ndarray:
    return np.stack([np.full((112, 112, 3), v, dtype=np.uint8) for v in values])


def _fake_model(calls: list[int], delay: float = 0.02):
    main = threading.get_ident()

    def embed(crops: np.ndarray) -> np.ndarray:
        assert threading.get_ident() != main, "model must run off the event loop thread"
        calls.append(len(crops))
        time.sleep(delay)
        return crops[:, 0, 0, :2].astype(np.float32)  # "embedding" = the crop's value

    return embed


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows() -> None:
    calls: list[int] = []
    observed: list[tuple[int, int]] = []

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(
            _fake_model(calls),
            max_size=32,
            max_wait_ms=50,
            observer=lambda f, r, s: observed.append((f, r)),
        )
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.embed(_crops([i, i + 100])) for i in range(8)))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(rows, [[i, i], [i + 100, i + 100]])
    assert sum(calls) == 16
    assert max(calls) > 2  # faces of several requests in one call
    assert max(r for _, r in observed) > 1


@pytest.mark.parametrize("others_busy", [False, True])
def test_a_lone_request_does_not_wait_unless_others_may_join(others_busy: bool) -> None:
    calls: list[int] = []

    async def scenario() -> float:
        batcher = MicroBatcher(
            _fake_model(calls, 0.0),
            max_size=32,
            max_wait_ms=300,
            more_coming=lambda: others_busy,
        )
        batcher.start()
        try:
            t0 = time.perf_counter()
            await batcher.embed(_crops([1]))
            return time.perf_counter() - t0
        finally:
            await batcher.stop()

    seconds = asyncio.run(scenario())
    if others_busy:  # another upload is mid-detection: the batch waits for its faces
        assert seconds >= 0.29
    else:  # nobody can join: straight to the model
        assert seconds < 0.15
    assert calls == [1]


def test_max_size_splits_a_big_request_over_several_calls() -> None:
    calls: list[int] = []

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(_fake_model(calls, 0.0), max_size=4, max_wait_ms=1)
        batcher.start()
        try:
            return await batcher.embed(_crops(list(range(10))))
        finally:
            await batcher.stop()

    rows = asyncio.run(scenario())
    assert rows[:, 0].tolist() == list(range(10))
    assert max(calls) <= 4 and sum(calls) == 10


def test_model_errors_reach_every_caller_of_the_batch_and_the_batcher_survives() -> None:
    state = {"fail": True}

    def flaky(crops: np.ndarray) -> np.ndarray:
        if state["fail"]:
            raise RuntimeError("boom")
        return np.zeros((len(crops), 2), np.float32)

    async def scenario() -> None:
        batcher = MicroBatcher(flaky, max_size=8, max_wait_ms=20)
        batcher.start()
        try:
            outcomes = await asyncio.gather(
                batcher.embed(_crops([1])), batcher.embed(_crops([2])), return_exceptions=True
            )
            assert all(isinstance(o, RuntimeError) for o in outcomes)
            state["fail"] = False
            assert (await batcher.embed(_crops([3]))).shape == (1, 2)
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_embed_before_start_is_an_error() -> None:
    batcher = MicroBatcher(lambda c: c, max_size=2)
    with pytest.raises(RuntimeError):
        asyncio.run(batcher.embed(_crops([1])))
