"""The handler worker pool: timeouts write a thread off and replace it, within a bound;
a pool whose every worker hangs says it is stuck."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from leptonic.photon.workers import HandlerTimeout, WorkerPool


async def test_run_returns_the_result_and_raises_what_the_call_raised() -> None:
    pool = WorkerPool(2)
    assert await pool.run(lambda a, b: a + b, 1.0, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await pool.run(lambda: 1 / 0, 1.0)
    pool.shutdown()


async def test_timeout_writes_the_worker_off_and_a_new_one_serves() -> None:
    release = threading.Event()
    pool = WorkerPool(1, max_written_off=1)
    started = time.monotonic()
    with pytest.raises(HandlerTimeout):
        await pool.run(release.wait, 0.1)
    assert time.monotonic() - started < 1.0
    assert (pool.workers, pool.written_off) == (1, 1)
    # the pool did not shrink: the one worker slot is served by a new thread
    assert await pool.run(lambda: "fresh", 1.0) == "fresh"
    release.set()
    for _ in range(100):                # the written-off thread leaves once it returns
        if pool.written_off == 0:
            break
        await asyncio.sleep(0.01)
    assert pool.written_off == 0
    pool.shutdown()


async def test_past_the_write_off_bound_the_pool_is_stuck() -> None:
    release = threading.Event()
    pool = WorkerPool(1, max_written_off=1)
    for _ in range(2):
        with pytest.raises(HandlerTimeout):
            await pool.run(release.wait, 0.05)
    # the first was replaced; the replacement hung too, and the bound (1) stopped a
    # second replacement: no worker is left to serve
    assert (pool.workers, pool.written_off) == (0, 2)
    assert not pool.stuck(time.monotonic())          # the last one is not 2x its timeout
    assert pool.stuck(time.monotonic() + 0.2)
    release.set()
    await asyncio.sleep(0.1)
    assert not pool.stuck(time.monotonic())
    assert await pool.run(lambda: "back", 1.0) == "back"
    pool.shutdown()


async def test_stuck_only_once_every_worker_is_past_twice_its_timeout() -> None:
    release = threading.Event()
    pool = WorkerPool(1, max_written_off=0)
    hung = asyncio.ensure_future(pool.run(release.wait, None))
    await asyncio.sleep(0.02)
    assert not pool.stuck()              # no timeout on that call: it may be slow work
    release.set()
    await hung
    release.clear()
    slow = asyncio.ensure_future(pool.run(release.wait, 5.0))
    await asyncio.sleep(0.02)
    assert not pool.stuck(time.monotonic() + 9.0)
    assert pool.stuck(time.monotonic() + 10.5)
    release.set()
    await slow
    pool.shutdown()


async def test_a_call_that_never_started_is_dropped_not_run() -> None:
    release = threading.Event()
    ran: list[int] = []
    pool = WorkerPool(1, max_written_off=0)
    blocker = asyncio.ensure_future(pool.run(release.wait, None))
    await asyncio.sleep(0.02)
    with pytest.raises(HandlerTimeout):
        await pool.run(lambda: ran.append(1), 0.05)
    release.set()
    await blocker
    await asyncio.sleep(0.05)
    assert ran == []
    pool.shutdown()


async def test_submit_works_as_an_executor() -> None:
    pool = WorkerPool(4)
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*(loop.run_in_executor(pool, pow, i, 2) for i in range(8)))
    assert results == [i * i for i in range(8)]
    assert pool.workers <= 4
    pool.shutdown()
