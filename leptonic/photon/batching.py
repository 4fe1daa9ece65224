"""Dynamic batching: gather concurrent single requests into one call of a batched function.

The :class:`Batcher` owns the queue and the timing only; sending responses is the
runner's business. A batch is dispatched when ``max_batch_size`` items are waiting or
``max_wait_s`` after its first item arrived, whichever comes first. Batches run one at a
time (a batched function usually saturates one accelerator); items that arrive while a
batch runs form the next one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from leptonic.errors import LeptonicError

log = logging.getLogger(__name__)

BatchFn = Callable[[list[Any]], "Sequence[Any] | Awaitable[Sequence[Any]]"]


class BatchOutputError(LeptonicError):
    """A batched function broke its contract: not exactly one output per input."""

    title = "Batched handler broke its contract"


@dataclass(slots=True)
class _Pending:
    item: Any
    future: asyncio.Future[Any]
    arrived: float = field(default=0.0)


class Batcher:
    """Batches concurrent ``submit(item)`` calls into ``fn(items) -> outputs``.

    ``fn`` may be sync (run in ``executor``, or the loop's default one, so the event loop
    stays free) or async. It must return a sequence with exactly one output per input, in
    order; otherwise every caller of that batch gets a :class:`BatchOutputError`. An
    exception from ``fn`` fails only the callers of that batch. A caller cancelled while
    waiting is dropped from its batch; the others are unaffected.
    """

    def __init__(self, fn: BatchFn, max_batch_size: int, max_wait_s: float, name: str,
                 *, executor: Executor | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, not {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, not {max_wait_s}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.name = name
        self._executor = executor
        self._is_async = inspect.iscoroutinefunction(fn)
        self._queue: deque[_Pending] = deque()
        self._full = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Items waiting for a batch (cancelled ones not yet dropped included)."""
        return len(self._queue)

    async def submit(self, item: Any) -> Any:
        """Queue ``item``; return its output once its batch has run."""
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
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.max_batch_size:
                p = self._queue.popleft()
                if not p.future.done():
                    batch.append(p)
            if len(self._queue) < self.max_batch_size:
                self._full.clear()
            if batch:
                await self._dispatch(batch)

    def _drop_cancelled(self) -> bool:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        return bool(self._queue)

    async def _dispatch(self, batch: list[_Pending]) -> None:
        items = [p.item for p in batch]
        try:
            if self._is_async:
                outputs = await self.fn(items)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                outputs = await loop.run_in_executor(self._executor, self.fn, items)
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
                if not p.future.done():
                    p.future.set_result(out)
            return
        for p in batch:
            if not p.future.done():
                p.future.set_exception(err)
