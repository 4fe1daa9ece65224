"""Batcher: size and wait limits, the one-output-per-input contract, failure isolation,
the queue bound, metrics, and the per-deployment overrides."""

from __future__ import annotations

import asyncio
import threading

import pytest

from leptonic.errors import InvalidInput
from leptonic.photon.batching import (
    BatchConfig,
    Batcher,
    BatchOutputError,
    QueueFull,
    default_max_queue,
)


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


async def test_full_queue_starts_the_next_batch_without_waiting() -> None:
    # batches queued up behind a running one go back to back, not max_wait apart
    release = asyncio.Event()
    batches: list[list[int]] = []

    async def fn(items: list[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return items

    b = Batcher(fn, max_batch_size=2, max_wait_s=60, name="fn")
    first = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(b.submit(i)) for i in (3, 4, 5, 6)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*first, *queued), timeout=2) == [
        1, 2, 3, 4, 5, 6]
    assert batches == [[1, 2], [3, 4], [5, 6]]


async def test_exception_instance_in_outputs_fails_only_its_caller() -> None:
    async def fn(items: list[int]) -> list[object]:
        return [ValueError(f"bad {i}") if i < 0 else i for i in items]

    b = Batcher(fn, max_batch_size=3, max_wait_s=1, name="fn")
    results = await asyncio.gather(b.submit(1), b.submit(-1), b.submit(2),
                                   return_exceptions=True)
    assert results[0] == 1
    assert results[2] == 2
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad -1"


async def test_queue_bound_rejects_at_once_with_retry_after() -> None:
    release = asyncio.Event()

    async def fn(items: list[int]) -> list[int]:
        await release.wait()
        return items

    b = Batcher(fn, max_batch_size=2, max_wait_s=0, name="embed", max_queue=3)
    running = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)              # batch [1, 2] runs; the queue is empty again
    waiting = [asyncio.ensure_future(b.submit(i)) for i in (3, 4, 5)]
    await asyncio.sleep(0)
    assert b.pending == 3
    with pytest.raises(QueueFull) as info:
        await b.submit(6)
    err = info.value
    assert err.status == 429
    assert err.retry_after_s >= 1
    assert "'embed'" in err.detail
    assert err.extra == {"queue_limit": 3}
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*running, *waiting), timeout=2) == [
        1, 2, 3, 4, 5]
    assert await b.submit(7) == 7           # room again once the queue drained


async def test_cancelled_callers_leave_the_rest_of_their_batch_intact() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=4, max_wait_s=0.05, name="double")
    futs = [asyncio.ensure_future(b.submit(i)) for i in range(4)]
    await asyncio.sleep(0)
    futs[1].cancel()
    futs[3].cancel()
    assert await asyncio.wait_for(asyncio.gather(futs[0], futs[2]), timeout=2) == [0, 4]
    assert rec.batches == [[0, 2]]
    assert await b.submit(5) == 10          # and the batcher keeps working


class Observer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, list[float], float]] = []

    def observe_batch(self, size: int, queue_waits_s: list[float], run_s: float) -> None:
        self.calls.append((size, list(queue_waits_s), run_s))


async def test_observer_sees_each_batch_size_and_queue_waits() -> None:
    rec, obs = Recorder(), Observer()
    b = Batcher(rec.double, max_batch_size=3, max_wait_s=0.02, name="double", observer=obs)
    await asyncio.gather(*(b.submit(i) for i in range(5)))
    assert [c[0] for c in obs.calls] == [3, 2]
    assert all(len(waits) == size for size, waits, _ in obs.calls)
    assert all(w >= 0 for _, waits, _ in obs.calls for w in waits)
    assert max(obs.calls[1][1]) >= 0.015    # the partial batch waited for max_wait


async def test_a_failing_observer_does_not_fail_the_batch() -> None:
    class Broken:
        def observe_batch(self, size: int, queue_waits_s: list[float], run_s: float) -> None:
            raise RuntimeError("metrics down")

    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=2, max_wait_s=0, name="double", observer=Broken())
    assert await b.submit(2) == 4


async def test_event_loop_stays_free_while_a_sync_batch_runs() -> None:
    gate = threading.Event()

    def model(items: list[int]) -> list[int]:
        gate.wait(5)                        # a model that holds its thread for a while
        return items

    b = Batcher(model, max_batch_size=2, max_wait_s=0, name="model")
    running = asyncio.ensure_future(b.submit(1))
    ticks = 0
    for _ in range(5):                      # the loop keeps turning meanwhile
        await asyncio.sleep(0.005)
        ticks += 1
    queued = asyncio.ensure_future(b.submit(2))
    await asyncio.sleep(0.01)
    assert not running.done()
    assert b.pending == 1                   # the new request queued behind the running batch
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(running, queued), timeout=5) == [1, 2]
    assert ticks == 5


def test_bad_queue_bound_rejected() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Batcher(lambda items: items, 1, 0, "x", max_queue=0)


def test_default_queue_bound_scales_with_batch_size() -> None:
    assert default_max_queue(1) == 256
    assert default_max_queue(64) == 1024


@pytest.mark.parametrize(("env", "expected"), [
    ({}, BatchConfig()),
    ({"PHOTON_BATCH_SIZE": "1"}, BatchConfig(max_batch_size=1)),
    ({"PHOTON_BATCH_SIZE": " 32 ", "PHOTON_BATCH_WAIT_MS": "2.5",
      "PHOTON_BATCH_QUEUE": "100"}, BatchConfig(32, 2.5, 100)),
    ({"PHOTON_BATCH_WAIT_MS": "0"}, BatchConfig(max_wait_ms=0.0)),
])
def test_batch_config_from_env(env: dict[str, str], expected: BatchConfig) -> None:
    assert BatchConfig.from_env(env) == expected


@pytest.mark.parametrize(("env", "named"), [
    ({"PHOTON_BATCH_SIZE": "0"}, "PHOTON_BATCH_SIZE"),
    ({"PHOTON_BATCH_SIZE": "many"}, "PHOTON_BATCH_SIZE"),
    ({"PHOTON_BATCH_WAIT_MS": "-1"}, "PHOTON_BATCH_WAIT_MS"),
    ({"PHOTON_BATCH_WAIT_MS": "inf"}, "PHOTON_BATCH_WAIT_MS"),
    ({"PHOTON_BATCH_QUEUE": "1.5"}, "PHOTON_BATCH_QUEUE"),
])
def test_batch_config_rejects_bad_values_naming_the_variable(env: dict[str, str],
                                                            named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        BatchConfig.from_env(env)


async def test_adaptive_wait_stops_holding_a_lone_client() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=8, max_wait_s=0.2, name="double", adaptive=True)
    loop = asyncio.get_running_loop()
    took = []
    for i in range(4):                      # one client, one request at a time
        start = loop.time()
        assert await b.submit(i) == 2 * i
        took.append(loop.time() - start)
    assert took[0] >= 0.15, "it waits as configured until it has learnt otherwise"
    assert took[-1] < 0.1, "a wait that never catches anything is skipped"


async def test_adaptive_wait_keeps_waiting_under_concurrency() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=8, max_wait_s=0.05, name="double", adaptive=True)
    for round_ in range(5):
        first = asyncio.ensure_future(b.submit(round_))
        await asyncio.sleep(0.01)           # the others arrive during the wait
        rest = [asyncio.ensure_future(b.submit(round_)) for _ in range(3)]
        await asyncio.gather(first, *rest)
    assert [len(batch) for batch in rec.batches] == [4] * 5


async def test_adaptive_wait_probes_again_and_learns_that_waiting_pays() -> None:
    rec = Recorder()
    b = Batcher(rec.double, max_batch_size=8, max_wait_s=0.05, name="double", adaptive=True)
    b.PROBE_S = 0.0                         # probe on every batch
    for i in range(3):
        await b.submit(i)                   # lone requests: waiting stops paying
    rec.batches.clear()
    first = asyncio.ensure_future(b.submit(10))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(b.submit(11))
    assert await asyncio.gather(first, second) == [20, 22]
    assert rec.batches == [[10, 11]], "the probe waited and caught the second request"


@pytest.mark.parametrize(("raw", "expected"), [
    ("", None), ("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)])
def test_batch_config_adaptive_flag(raw: str, expected: bool | None) -> None:
    assert BatchConfig.from_env({"PHOTON_BATCH_ADAPTIVE": raw}).adaptive is expected


def test_batch_config_rejects_a_bad_adaptive_flag() -> None:
    with pytest.raises(InvalidInput, match="PHOTON_BATCH_ADAPTIVE"):
        BatchConfig.from_env({"PHOTON_BATCH_ADAPTIVE": "maybe"})
