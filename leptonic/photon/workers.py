"""The worker threads that run sync handlers, with timeouts that cannot shrink the pool.

A Python thread cannot be killed. When a call runs past its timeout its caller gets an
answer at once (504), and the thread running it is *written off*: it no longer counts as a
worker, a fresh one takes its place, and it exits when (if ever) the call returns. At most
``max_written_off`` threads are written off at a time; past that no replacement starts,
so a replica whose handlers hang for good runs out of workers and :meth:`stuck` says so
(its probes then fail and the platform replaces it).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class HandlerTimeout(Exception):
    """A handler call ran past its timeout; its worker was written off."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g}s")
        self.seconds = seconds


class _Job:
    __slots__ = ("args", "fn", "future", "kwargs", "started", "timeout_s", "worker")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 timeout_s: float | None) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.future: Future[Any] = Future()
        self.timeout_s = timeout_s
        self.started: float | None = None
        self.worker: _Worker | None = None


class _Worker:
    __slots__ = ("job", "written_off")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.written_off = False


class WorkerPool(Executor):
    """Up to ``max_workers`` threads, started as needed, for sync handler calls.

    ``submit`` works as for any Executor (the batcher and ``run_in_executor`` use it);
    :meth:`run` adds a timeout.
    """

    def __init__(self, max_workers: int, *, max_written_off: int | None = None,
                 name: str = "photon-handler") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, not {max_workers}")
        self.max_workers = max_workers
        self.max_written_off = max_workers if max_written_off is None else max_written_off
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()      # counted workers (not written off)
        self._idle = 0
        self._written_off = 0                    # written off and still running
        self._off: set[_Worker] = set()
        self._shutdown = False
        self._ids = itertools.count(1)

    # -- Executor ------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._submit(fn, args, kwargs, None).future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            n = len(self._workers)
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.future.cancel()
        for _ in range(n):
            self._jobs.put(None)

    # -- with a timeout --------------------------------------------------------------------
    async def run(self, fn: Callable[..., Any], timeout_s: float | None, /, *args: Any,
                  **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker; past ``timeout_s`` raise HandlerTimeout and
        write the worker off (a queued call that never started is just dropped)."""
        job = self._submit(fn, args, kwargs, timeout_s)
        waiter = asyncio.wrap_future(job.future)
        if timeout_s is None:
            return await waiter
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            self.abandon(job.future)
            raise HandlerTimeout(timeout_s) from None
        except asyncio.CancelledError:
            job.future.cancel()        # the caller left: a call not yet started never runs
            raise

    def abandon(self, future: Future[Any]) -> None:
        """Give up on the call behind ``future``: cancel it if it has not started, else
        write off its worker and start another in its place (within the bound)."""
        if future.cancel():
            return
        with self._lock:
            for w in self._workers:
                if w.job is not None and w.job.future is future:
                    w.written_off = True
                    self._workers.discard(w)
                    self._off.add(w)
                    self._written_off += 1
                    break
            else:
                return
        self._maybe_spawn()

    # -- health ------------------------------------------------------------------------------
    def stuck(self, now: float | None = None) -> bool:
        """No more workers may be written off, and every thread, counted or written off,
        is busy with a call past twice its timeout: this replica cannot serve a sync
        handler again (a slow call still within twice its timeout may yet return)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._written_off < self.max_written_off:
                return False
            for w in (*self._workers, *self._off):
                job = w.job
                if job is None or job.timeout_s is None or job.started is None:
                    return False
                if now - job.started < 2 * job.timeout_s:
                    return False
            return True

    @property
    def written_off(self) -> int:
        return self._written_off

    @property
    def workers(self) -> int:
        return len(self._workers)

    # -- inside ------------------------------------------------------------------------------
    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout_s: float | None) -> _Job:
        if self._shutdown:
            raise RuntimeError("cannot run a handler after the pool has shut down")
        job = _Job(fn, args, kwargs, timeout_s)
        self._jobs.put(job)
        self._maybe_spawn()
        return job

    def _maybe_spawn(self) -> None:
        with self._lock:
            if self._shutdown or self._idle > 0 or len(self._workers) >= self.max_workers:
                return
            if len(self._workers) + self._written_off >= self.max_workers + self.max_written_off:
                return
            w = _Worker()
            self._workers.add(w)
            self._idle += 1
        threading.Thread(target=self._work, args=(w,), daemon=True,
                         name=f"{self.name}-{next(self._ids)}").start()

    def _work(self, w: _Worker) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self._idle -= 1
            if not job.future.set_running_or_notify_cancel():
                with self._lock:
                    self._idle += 1
                continue
            job.started = time.monotonic()
            job.worker = w
            w.job = job
            try:
                result = job.fn(*job.args, **job.kwargs)
            except BaseException as exc:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            finally:
                del job
            with self._lock:
                w.job = None
                if w.written_off:       # replaced long ago: leave, freeing the slot
                    self._written_off -= 1
                    self._off.discard(w)
                    return
                self._idle += 1
            self._maybe_spawn()
