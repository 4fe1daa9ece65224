"""Dynamic batching: gather concurrent single requests into one call of a batched function.

The :class:`Batcher` owns the queue and the timing only; sending responses is the
runner's business. A batch is dispatched when ``max_batch_size`` items are waiting or
``max_wait_s`` after its first item arrived, whichever comes first; items that queued up
while the previous batch ran go at once (their wait is already over). Batches run one at
a time (a batched function usually saturates one core or accelerator), a sync function in
a worker thread so the event loop keeps accepting requests while the model runs.

The queue is bounded: past ``max_queue`` waiting items ``submit`` raises
:class:`QueueFull` (429 with a Retry-After estimated from recent batch durations), so an
overloaded replica answers at once rather than letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from leptonic.errors import InvalidInput, LeptonicError, TooManyRequests
from leptonic.photon.workers import HandlerTimeout

log = logging.getLogger(__name__)

BatchFn = Callable[[list[Any]], "Sequence[Any] | Awaitable[Sequence[Any]]"]

# A bound that lets a few seconds of work queue up at typical batch sizes, no more.
DEFAULT_QUEUE_BATCHES = 16
MIN_DEFAULT_QUEUE = 256


def default_max_queue(max_batch_size: int) -> int:
    """The queue bound used when none is configured: 16 batches, at least 256 items."""
    return max(MIN_DEFAULT_QUEUE, DEFAULT_QUEUE_BATCHES * max_batch_size)


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """A replica's overrides of its batched handlers' settings (None: the handler's own).

    Read from the deployment's environment by :meth:`from_env`, so batching is tuned per
    deployment without a code change (``--env PHOTON_BATCH_SIZE=1`` turns it off: one
    request per call, one call at a time).
    """

    max_batch_size: int | None = None
    max_wait_ms: float | None = None
    max_queue: int | None = None
    adaptive: bool | None = None

    ENV_SIZE = "PHOTON_BATCH_SIZE"
    ENV_WAIT = "PHOTON_BATCH_WAIT_MS"
    ENV_QUEUE = "PHOTON_BATCH_QUEUE"
    ENV_ADAPTIVE = "PHOTON_BATCH_ADAPTIVE"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BatchConfig:
        """Parse the ``PHOTON_BATCH_*`` variables; InvalidInput names a bad one."""
        def number(key: str, kind: type[int] | type[float], low: float) -> Any:
            raw = environ.get(key, "").strip()
            if not raw:
                return None
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or value < low or not math.isfinite(value):
                want = "an integer" if kind is int else "a number"
                raise InvalidInput(f"{key}={raw!r}: must be {want} >= {low:g}")
            return value

        flag = environ.get(cls.ENV_ADAPTIVE, "").strip().lower()
        if flag not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
            raise InvalidInput(f"{cls.ENV_ADAPTIVE}={flag!r}: must be 1/true/yes/on or "
                               f"0/false/no/off")
        return cls(max_batch_size=number(cls.ENV_SIZE, int, 1),
                   max_wait_ms=number(cls.ENV_WAIT, float, 0),
                   max_queue=number(cls.ENV_QUEUE, int, 1),
                   adaptive=None if not flag else flag in ("1", "true", "yes", "on"))


class BatchOutputError(LeptonicError):
    """A batched function broke its contract: not exactly one output per input."""

    title = "Batched handler broke its contract"


class QueueFull(TooManyRequests):
    """The batch queue is at its bound; ``retry_after_s`` says when to try again."""

    def __init__(self, detail: str, retry_after_s: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = retry_after_s


class BatchObserver(Protocol):
    """Receives one call per dispatched batch (the runner turns these into histograms)."""

    def observe_batch(self, size: int, queue_waits_s: Sequence[float], run_s: float) -> None:
        """``size`` items ran for ``run_s`` seconds after waiting ``queue_waits_s`` each."""


@dataclass(slots=True)
class _Pending:
    item: Any
    future: asyncio.Future[Any]
    arrived: float = field(default=0.0)


class Batcher:
    """Batches concurrent ``submit(item)`` calls into ``fn(items) -> outputs``.

    ``fn`` may be sync (run in ``executor``, or the loop's default one, so the event loop
    stays free) or async. It must return a sequence with exactly one output per input, in
    order; otherwise every caller of that batch gets a :class:`BatchOutputError`. An output
    that is an ``Exception`` instance is raised to its own caller only (how a function
    rejects one bad input without failing the rest). An exception raised by ``fn`` fails
    only the callers of that batch. A caller cancelled while waiting is dropped from its
    batch; the others are unaffected. ``max_queue`` bounds the waiting items (None: no
    bound).

    With ``adaptive=True`` the batcher waits only while waiting pays: it keeps a moving
    estimate of how often a wait caught at least one more item, and once that falls below
    one in two (a lone client, say) it dispatches at once, waiting again on a probe every
    ``PROBE_S`` seconds or as soon as a backlog shows there is concurrency after all.
    """

    PROBE_S = 1.0

    def __init__(self, fn: BatchFn, max_batch_size: int, max_wait_s: float, name: str,
                 *, executor: Executor | None = None, max_queue: int | None = None,
                 observer: BatchObserver | None = None, adaptive: bool = False,
                 timeout_s: float | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, not {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, not {max_wait_s}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 (or None for no bound), not {max_queue}")
        self.fn = fn
        self.timeout_s = timeout_s      # one batch's run; past it its callers get 504
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.name = name
        self._executor = executor
        self._observer = observer
        self._is_async = inspect.iscoroutinefunction(fn)
        self._queue: deque[_Pending] = deque()
        self._full = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._batch_s = 0.0          # moving average of a batch's run time, for Retry-After
        self.adaptive = adaptive
        self._wait_pays = 1.0        # moving share of waits that caught another item
        self._last_probe = -math.inf

    @property
    def pending(self) -> int:
        """Items waiting for a batch (cancelled ones not yet dropped included)."""
        return len(self._queue)

    def retry_after_s(self) -> int:
        """Whole seconds until the queue has likely drained (at least 1)."""
        batches = math.ceil(len(self._queue) / self.max_batch_size) + 1
        return max(1, math.ceil(batches * (self._batch_s + self.max_wait_s)))

    async def submit(self, item: Any) -> Any:
        """Queue ``item``; return its output once its batch has run.

        Raises :class:`QueueFull` at once when ``max_queue`` items are already waiting.
        """
        if self.max_queue is not None and len(self._queue) >= self.max_queue:
            raise QueueFull(
                f"handler {self.name!r} has {len(self._queue)} requests queued, its limit; "
                f"retry later or add replicas", self.retry_after_s(),
                queue_limit=self.max_queue)
        loop = asyncio.get_running_loop()
        pending = _Pending(item, loop.create_future(), loop.time())
        self._queue.append(pending)
        if len(self._queue) >= self.max_batch_size:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"batcher:{self.name}")
        return await pending.future

    async def close(self) -> None:
        """Stop the worker; callers still waiting get CancelledError."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        while self._queue:
            self._queue.popleft().future.cancel()

    async def _run(self) -> None:
        # Exits when the queue is empty; the next submit starts a new worker, so an idle
        # batcher holds no task.
        loop = asyncio.get_running_loop()
        while self._drop_cancelled():
            deadline = self._queue[0].arrived + self.max_wait_s
            now, queued = loop.time(), len(self._queue)
            waits = deadline > now and queued < self.max_batch_size
            if waits and self.adaptive and not self._worth_waiting(now, queued):
                deadline, waits = now, False
            while len(self._queue) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._full.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._full.wait()
                except TimeoutError:
                    break
            if waits and self.adaptive:
                self._learn(len(self._queue) > queued)
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.max_batch_size:
                p = self._queue.popleft()
                if not p.future.done():
                    batch.append(p)
            if len(self._queue) < self.max_batch_size:
                self._full.clear()
            if batch:
                await self._dispatch(batch, loop.time())

    def _worth_waiting(self, now: float, queued: int) -> bool:
        if queued > 1:               # a backlog: requests overlap, so waiting gathers more
            self._learn(True)
        if self._wait_pays >= 0.5:
            return True
        if now - self._last_probe >= self.PROBE_S:
            self._last_probe = now
            return True
        return False

    def _learn(self, paid: bool) -> None:
        self._wait_pays = 0.7 * self._wait_pays + (0.3 if paid else 0.0)

    def _drop_cancelled(self) -> bool:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        return bool(self._queue)

    async def _dispatch(self, batch: list[_Pending], now: float) -> None:
        items = [p.item for p in batch]
        started = time.perf_counter()
        try:
            if self._is_async:
                try:
                    outputs = await asyncio.wait_for(self.fn(items),  # type: ignore[arg-type]
                                                     self.timeout_s)
                except TimeoutError:
                    raise HandlerTimeout(self.timeout_s or 0) from None
            else:
                run = getattr(self._executor, "run", None)
                if run is not None:     # a WorkerPool: writes a timed-out thread off
                    outputs = await run(self.fn, self.timeout_s, items)
                else:
                    loop = asyncio.get_running_loop()
                    fn: Any = self.fn       # sync here: a coroutine function is awaited above
                    outputs = await loop.run_in_executor(self._executor, fn, items)
                if inspect.isawaitable(outputs):
                    outputs = await outputs
        except asyncio.CancelledError:
            for p in batch:
                p.future.cancel()
            raise
        except Exception as exc:
            log.debug("batch of %d for %r failed: %r", len(batch), self.name, exc)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self._record(batch, now, time.perf_counter() - started)
        if isinstance(outputs, str | bytes) or not isinstance(outputs, Sequence):
            err = BatchOutputError(
                f"batched handler {self.name!r} returned {type(outputs).__name__} for a batch "
                f"of {len(items)}; it must return a list with one output per input")
        elif len(outputs) != len(items):
            err = BatchOutputError(
                f"batched handler {self.name!r} returned {len(outputs)} outputs for "
                f"{len(items)} inputs; it must return exactly one output per input, in order")
        else:
            for p, out in zip(batch, outputs, strict=True):
                if p.future.done():
                    continue
                if isinstance(out, Exception):
                    p.future.set_exception(out)
                else:
                    p.future.set_result(out)
            return
        for p in batch:
            if not p.future.done():
                p.future.set_exception(err)

    def _record(self, batch: list[_Pending], now: float, run_s: float) -> None:
        self._batch_s = run_s if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * run_s
        if self._observer is not None:
            try:
                self._observer.observe_batch(len(batch), [now - p.arrived for p in batch],
                                             run_s)
            except Exception:  # metrics must never fail a batch
                log.exception("batch observer failed for %r", self.name)
