"""Batcher: size and wait limits, the one-output-per-input contract, failure isolation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from leptonic.photon.batching import Batcher, BatchOutputError


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def double(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        return [i * 2 for i in items]


async def test_concurrent_submits_share_a_batch_up_to_max_size() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=4, max_wait_s=0.2, name="double")
    results = await asyncio.wait_for(
        asyncio.gather(*(b.submit(i) for i in range(10))), timeout=5)
    assert results == [i * 2 for i in range(10)]
    assert rec.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_full_batch_does_not_wait() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=2, max_wait_s=60, name="double")
    assert await asyncio.wait_for(asyncio.gather(b.submit(1), b.submit(2)), timeout=2) == [2, 4]


async def test_partial_batch_goes_after_max_wait() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=100, max_wait_s=0.05, name="double")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.gather(b.submit(1), b.submit(2)) == [2, 4]
    elapsed = loop.time() - start
    assert 0.04 <= elapsed < 2
    assert rec.batches == [[1, 2]]


async def test_zero_wait_dispatches_immediately() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=100, max_wait_s=0, name="double")
    assert await asyncio.wait_for(b.submit(3), timeout=1) == 6


async def test_sync_fn_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def work(items: list[int]) -> list[int]:
        seen.append(threading.get_ident())
        return items

    b = Batcher(work, max_batch_size=2, max_wait_s=0.01, name="work")
    assert await asyncio.gather(b.submit(1), b.submit(2)) == [1, 2]
    assert seen
    assert seen[0] != loop_thread


@pytest.mark.parametrize("bad", [[1], [1, 2, 3], "ab", 5])
async def test_wrong_output_count_fails_every_caller(bad: object) -> None:
    async def broken(items: list[int]) -> object:
        return bad

    b = Batcher(broken, max_batch_size=2, max_wait_s=1, name="embed")
    results = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert all(isinstance(r, BatchOutputError) for r in results)
    assert "'embed'" in str(results[0])
    assert "one output per input" in str(results[0])


async def test_exception_fails_only_its_batch() -> None:
    async def fn(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("zero")
        return items

    b = Batcher(fn, max_batch_size=2, max_wait_s=1, name="fn")
    first = await asyncio.gather(b.submit(0), b.submit(1), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in first)
    assert await asyncio.gather(b.submit(2), b.submit(3)) == [2, 3]


async def test_cancelled_waiting_caller_does_not_break_the_batch() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=3, max_wait_s=0.1, name="double")
    doomed = asyncio.ensure_future(b.submit(1))
    keep = asyncio.ensure_future(b.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await asyncio.wait_for(keep, timeout=2) == 4
    assert rec.batches == [[2]]
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_caller_cancelled_while_its_batch_runs() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        started.set()
        await release.wait()
        return items

    b = Batcher(slow, max_batch_size=2, max_wait_s=1, name="slow")
    doomed = asyncio.ensure_future(b.submit(1))
    keep = asyncio.ensure_future(b.submit(2))
    await started.wait()
    doomed.cancel()
    release.set()
    assert await keep == 2


async def test_items_arriving_during_a_batch_form_the_next() -> None:
    release = asyncio.Event()
    batches: list[list[int]] = []

    async def fn(items: list[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return items

    b = Batcher(fn, max_batch_size=10, max_wait_s=0, name="fn")
    first = asyncio.ensure_future(b.submit(1))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(b.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(first, *later) == [1, 2, 3]
    assert batches == [[1], [2, 3]]


async def test_close_cancels_waiting_callers() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=10, max_wait_s=60, name="double")
    waiting = asyncio.ensure_future(b.submit(1))
    await asyncio.sleep(0.01)
    await b.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting


def test_bad_limits_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(lambda items: items, 0, 0.1, "x")
    with pytest.raises(ValueError, match="max_wait_s"):
        Batcher(lambda items: items, 1, -1, "x")
