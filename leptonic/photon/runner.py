"""The photon runner: serves one photon instance as a lean ASGI app, one process per replica.

Routes: ``POST /{handler path}`` per handler, ``GET /healthz`` (alive), ``GET /readyz``
(503 until ``init()`` has returned), ``GET /metrics`` (Prometheus text), ``GET
/openapi.json`` and ``GET /docs``. The app is raw ASGI rather than a framework because
the per-request cost is the replica's throughput: the hot path is one dict lookup, one
pydantic ``model_validate_json`` and one serialisation.

Run it as ``python -m leptonic.photon.runner --entry app.py:Echo --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import inspect
import itertools
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from pathlib import Path
from typing import Any

import pydantic_core
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from pydantic import ValidationError

from leptonic.asgi import BadLength, Disconnected, TooLarge, read_body
from leptonic.errors import PROBLEM_CONTENT_TYPE, LeptonicError, PhotonDefinitionError, problem
from leptonic.photon.batching import BatchConfig, Batcher, QueueFull, default_max_queue
from leptonic.photon.handler import HandlerSignature
from leptonic.photon.openapi import openapi_document, swagger_ui_html
from leptonic.photon.photon import Photon
from leptonic.photon.sample import MAX_READ, Sample, parse_query
from leptonic.photon.sample import PATH as SAMPLE_PATH
from leptonic.photon.workers import HandlerTimeout, WorkerPool

log = logging.getLogger("leptonic.photon.runner")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_HANDLER_TIMEOUT_S = 60.0
DEFAULT_MAX_CONCURRENCY = 64
QUEUE_WAIT_S = 2.0          # a request beyond max_concurrency waits at most this long
GRACEFUL_SHUTDOWN_S = 30
# a 503 with this header means "full, try another replica": the gateway retries it
SATURATED_HEADER = b"x-leptonic-saturated"
STUCK_HEADER = b"x-leptonic-stuck"
_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", PROBLEM_CONTENT_TYPE.encode())]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]
_END = object()


def _header(scope: Scope, name: bytes) -> bytes:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return b""


class _RunnerMetrics:
    """The runner's Prometheus metrics, in a registry of its own (one app, one registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("leptonic_photon_requests", "Handler requests by status code",
                                ["handler", "code"], registry=self.registry)
        self.seconds = Histogram("leptonic_photon_request_seconds",
                                 "Handler request duration (to the last byte for streams)",
                                 ["handler"], registry=self.registry)
        self.in_flight = Gauge("leptonic_photon_in_flight", "Handler requests in progress",
                               registry=self.registry)
        self.batch_size = Histogram(
            "leptonic_photon_batch_size", "Items per call of a batched handler", ["handler"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.queue_wait = Histogram(
            "leptonic_photon_batch_queue_wait_seconds",
            "Time a request waited in the batch queue before its batch started", ["handler"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0), registry=self.registry)
        self.batch_seconds = Histogram(
            "leptonic_photon_batch_seconds", "Run time of one call of a batched handler",
            ["handler"], registry=self.registry)
        self.queue_depth = Gauge("leptonic_photon_batch_queue_depth",
                                 "Requests waiting for a batch", ["handler"],
                                 registry=self.registry)
        self._counters: dict[tuple[str, int], Any] = {}

    def count(self, handler: str, code: int) -> None:
        child = self._counters.get((handler, code))
        if child is None:
            child = self._counters[(handler, code)] = self.requests.labels(handler, str(code))
        child.inc()


class _BatchMetrics:
    """Feeds one batched handler's batches into the runner's histograms."""

    __slots__ = ("run", "size", "wait")

    def __init__(self, metrics: _RunnerMetrics, handler: str) -> None:
        self.size = metrics.batch_size.labels(handler)
        self.wait = metrics.queue_wait.labels(handler)
        self.run = metrics.batch_seconds.labels(handler)

    def observe_batch(self, size: int, queue_waits_s: Sequence[float], run_s: float) -> None:
        self.size.observe(size)
        self.run.observe(run_s)
        for waited in queue_waits_s:
            self.wait.observe(waited)


class HandlerError(LeptonicError):
    """A handler raised, or returned a value its return type cannot serialise."""

    title = "Handler failed"


class _Endpoint:
    """One handler bound to the photon instance, with everything the hot path needs."""

    __slots__ = ("batcher", "call", "dump", "fn", "is_async", "model", "name", "params",
                 "path", "sig", "stream", "timeout", "timer")

    def __init__(self, sig: HandlerSignature, photon: Photon, executor: WorkerPool,
                 metrics: _RunnerMetrics, batching: BatchConfig, timeout_s: float) -> None:
        spec = sig.spec
        self.sig = sig
        self.timeout = spec.timeout_s or timeout_s
        self.name = spec.name
        self.path = spec.path
        self.stream = spec.stream
        self.is_async = spec.is_async
        self.params = sig.params
        self.model = sig.request_model
        self.fn: Callable[..., Any] = getattr(photon, spec.name)
        self.timer = metrics.seconds.labels(spec.name)
        self.dump = _serialiser(sig)
        self.batcher: Batcher | None = None
        if spec.batch is not None:
            size = batching.max_batch_size or spec.batch
            wait_ms = spec.max_wait_ms if batching.max_wait_ms is None else batching.max_wait_ms
            if size == 1:
                wait_ms = 0.0   # batching off: nothing to wait for
            self.batcher = Batcher(
                self._batch_fn(), size, wait_ms / 1000, spec.name, executor=executor,
                max_queue=batching.max_queue or spec.max_queue or default_max_queue(size),
                observer=_BatchMetrics(metrics, spec.name),
                adaptive=spec.adaptive_wait if batching.adaptive is None else batching.adaptive,
                timeout_s=self.timeout)

    def _batch_fn(self) -> Callable[[list[dict[str, Any]]], Any]:
        fn, params = self.fn, self.params

        def columns(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
            return {p: [it[p] for it in items] for p in params}

        if self.is_async:
            async def run_async(items: list[dict[str, Any]]) -> Any:
                return await fn(**columns(items))
            return run_async

        def run_sync(items: list[dict[str, Any]]) -> Any:
            return fn(**columns(items))
        return run_sync


def _serialiser(sig: HandlerSignature) -> Callable[[Any], bytes]:
    adapter, name = sig.output, sig.spec.name
    if sig.output_type is Any:
        def dump_any(value: Any) -> bytes:
            try:
                return pydantic_core.to_json(value)
            except pydantic_core.PydanticSerializationError as exc:
                raise HandlerError(
                    f"handler {name!r} returned a value that cannot be serialised to JSON: "
                    f"{exc}") from exc
        return dump_any

    def dump(value: Any) -> bytes:
        try:
            return adapter.dump_json(value, warnings="error")
        except pydantic_core.PydanticSerializationError:
            pass
        try:  # coerce (e.g. a dict into the declared model), then serialise
            return adapter.dump_json(adapter.validate_python(value))
        except (ValidationError, pydantic_core.PydanticSerializationError) as exc:
            raise HandlerError(
                f"handler {name!r} returned a value that does not match its return type "
                f"{sig.output_type!r}: {str(exc).splitlines()[-1].strip()}") from exc
    return dump


class PhotonApp:
    """The ASGI app serving one photon instance. Build it with :func:`build_app`.

    With a server, the ASGI lifespan runs ``init()`` in the background at startup (so
    ``/healthz`` answers while a model loads) and ``shutdown()`` at the end. Without one
    (tests, ``httpx.ASGITransport``), ``await app.startup()`` runs ``init()`` and
    ``await app.shutdown()`` stops it.
    """

    def __init__(self, photon: Photon, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 ready: bool = False, replica_id: str | None = None,
                 on_init_error: Callable[[BaseException], None] | None = None,
                 max_workers: int | None = None,
                 batching: BatchConfig | None = None,
                 handler_timeout_s: float = DEFAULT_HANDLER_TIMEOUT_S,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 max_queue: int | None = None, debug_errors: bool = False) -> None:
        self.photon = photon
        self.name = type(photon).__name__
        self.max_body_bytes = max_body_bytes
        self.replica_id = replica_id
        self.on_init_error = on_init_error
        self.ready = ready
        self.init_error: BaseException | None = None
        self.stopping = False
        self.metrics = _RunnerMetrics()
        self.signatures = type(photon).signatures()
        # every admitted request may need a thread: as many workers as requests
        self.executor = WorkerPool(max_workers or max_concurrency)
        self.max_concurrency = max_concurrency
        self.max_queue = max_concurrency if max_queue is None else max_queue
        self.debug_errors = debug_errors
        self._active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._request_ids = itertools.count(1)
        batching = batching or BatchConfig()
        self._all_endpoints = [_Endpoint(sig, photon, self.executor, self.metrics, batching,
                                         handler_timeout_s) for sig in self.signatures]
        self.endpoints = {ep.path: ep for ep in self._all_endpoints}
        self._init_task: asyncio.Task[None] | None = None
        self._openapi: bytes | None = None
        self.sample = Sample.from_env()     # model monitoring's inputs and answers
        self._gets: dict[str, Callable[[Send], Awaitable[None]]] = {
            "/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics,
            "/openapi.json": self._openapi_json, "/docs": self._docs,
        }

    # -- lifecycle -------------------------------------------------------------------

    async def startup(self) -> None:
        """Run ``init()`` in a worker thread; ready once it returns. Raises what it raised."""
        if self.ready:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        run_init = self._run_init

        def settle(exc: BaseException | None) -> None:
            if not done.done():
                if exc is None:
                    done.set_result(None)
                else:
                    done.set_exception(exc)

        def target() -> None:
            # A daemon thread, not the pool: a replica stopped while its model is still
            # loading must be able to exit without waiting for init() to finish.
            error: BaseException | None = None
            try:
                result: Any = run_init()
                if inspect.isawaitable(result):
                    asyncio.run(_awaitable_to_coro(result))
            except BaseException as exc:
                error = exc
            try:
                loop.call_soon_threadsafe(settle, error)
            except RuntimeError:  # the loop is gone: nobody is waiting any more
                pass

        threading.Thread(target=target, name="photon-init", daemon=True).start()
        try:
            await done
        except BaseException as exc:
            self.init_error = exc
            raise
        self.ready = True

    def _run_init(self) -> Any:
        """The photon's ``init()`` (a compatibility app wraps it); runs in a thread."""
        return self.photon.init()

    async def shutdown(self) -> None:
        """Stop taking work, run ``shutdown()`` if ``init()`` had succeeded, free threads."""
        self.stopping = True
        if self._init_task is not None and not self._init_task.done():
            self._init_task.cancel()
        for ep in self._all_endpoints:
            if ep.batcher is not None:
                await ep.batcher.close()
        if self.ready:
            self.ready = False
            try:
                # a thread of its own: the handler workers may all be hung
                await asyncio.to_thread(self.photon.shutdown)
            except Exception:
                log.exception("%s.shutdown() failed", self.name)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _init_in_background(self) -> None:
        try:
            await self.startup()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            print(f"leptonic: {self.name}.init() failed; the replica cannot serve:",
                  file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            sys.stderr.flush()
            if self.on_init_error is not None:
                self.on_init_error(exc)
        else:
            log.info("%s is ready: init() returned", self.name)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._init_task = asyncio.get_running_loop().create_task(
                    self._init_in_background(), name="photon-init")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            ep = self.endpoints.get(path)
            if ep is None and len(path) > 1 and path.endswith("/"):
                ep = self.endpoints.get(path.rstrip("/"))
            method = scope["method"]
            if ep is not None:
                if method == "POST":
                    await self._handle(ep, scope, receive, send)
                else:
                    await _send_problem(send, 405, "Method not allowed",
                                        f"handler {ep.name!r} answers POST {ep.path}",
                                        headers=[(b"allow", b"POST")])
                return
            if path == SAMPLE_PATH and method == "GET":
                q = parse_query(scope.get("query_string", b""))
                await _send_json(send, 200, self.sample.read(q.get("after", 0),
                                                             q.get("limit", MAX_READ)))
                return
            get = self._gets.get(path)
            if get is not None:
                if method in ("GET", "HEAD"):
                    await get(send)
                else:
                    await _send_problem(send, 405, "Method not allowed",
                                        f"{path} answers GET", headers=[(b"allow", b"GET")])
                return
            routes = [f"POST {p}" for p in self.endpoints]
            await _send_problem(send, 404, "Not found",
                                f"no handler at {path}; this photon ({self.name}) serves "
                                f"{', '.join(routes)}", handlers=routes)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _handle(self, ep: _Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        start = time.perf_counter()
        # a batched handler's requests hold no worker while they queue: its own bounded
        # queue (429 with Retry-After past it) is their bound, so a batch can fill up
        batched = ep.batcher is not None
        if not batched and self._active >= self.max_concurrency and not await self._admit():
            code = await _send_problem(
                send, 503, "Service unavailable",
                f"this replica is at its limit of {self.max_concurrency} requests in "
                f"progress and {len(self._waiters)} waiting; retry, or add replicas",
                headers=[(SATURATED_HEADER, b"1"), (b"retry-after", b"1")], handler=ep.name)
            metrics.count(ep.name, code)
            return
        if not batched:
            self._active += 1
        metrics.in_flight.inc()
        code = 500
        try:
            code = await self._respond(ep, scope, receive, send)
        finally:
            if not batched:
                self._active -= 1
                while self._waiters:        # hand the slot to the longest waiting request
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                        break
            metrics.in_flight.dec()
            ep.timer.observe(time.perf_counter() - start)
            metrics.count(ep.name, code)

    async def _admit(self) -> bool:
        """Wait, bounded in count and time, until a slot is free; False: answer 503."""
        if len(self._waiters) >= self.max_queue:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUEUE_WAIT_S
        while self._active >= self.max_concurrency:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(left):
                    await waiter
            except TimeoutError:
                return False
            finally:
                if not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
        return True

    async def _respond(self, ep: _Endpoint, scope: Scope, receive: Receive,
                       send: Send) -> int:
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BadLength as exc:
            return await _send_problem(send, 400, "Bad request", str(exc))
        except TooLarge as exc:
            return await _send_problem(send, 413, "Payload too large", str(exc))
        except Disconnected:
            return 499
        try:
            kwargs = ep.model.model_validate_json(body or b"{}").__dict__
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                      for e in exc.errors(include_url=False, include_input=False)]
            listed = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in errors)
            return await _send_problem(
                send, 422, "Invalid input",
                f"invalid request body for handler {ep.name!r}: {listed}", errors=errors)
        if self.stopping:
            return await _send_problem(send, 503, "Service unavailable",
                                       "the replica is shutting down")
        if ep.stream:
            return await self._stream(ep, kwargs, scope, receive, send)
        try:
            if ep.batcher is not None:
                result = await ep.batcher.submit(kwargs)
            elif ep.is_async:
                try:
                    # a timer on this task, not a task of its own (wait_for): cheap per call
                    async with asyncio.timeout(ep.timeout):
                        result = await ep.fn(**kwargs)
                except TimeoutError:
                    raise HandlerTimeout(ep.timeout) from None
            else:
                result = await self.executor.run(functools.partial(ep.fn, **kwargs),
                                                 ep.timeout)
            payload = ep.dump(result)
        except Exception as exc:
            return await self._handler_failed(ep, exc, scope, send)
        if ep.name in self.sample.handlers and not isinstance(result, Exception):
            self.sample.record(ep.name, _header(scope, b"x-request-id"), body, payload)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        return 200

    async def _handler_failed(self, ep: _Endpoint, exc: Exception, scope: Scope,
                              send: Send) -> int:
        if isinstance(exc, HandlerTimeout):
            log.warning("handler %r timed out after %gs (request %s); abandoned", ep.name,
                        exc.seconds, _request_id(scope))
            return await _send_problem(
                send, 504, "Handler timed out",
                f"handler {ep.name!r} did not answer within {exc.seconds:g}s; the call was "
                "abandoned (raise the limit with @handler(timeout=...) or the deployment's "
                "--handler-timeout)", handler=ep.name, timeout_s=exc.seconds)
        if isinstance(exc, QueueFull):
            return await _send_problem(
                send, exc.status, exc.title, exc.detail,
                headers=[(b"retry-after", str(exc.retry_after_s).encode())],
                handler=ep.name, **exc.extra)
        if isinstance(exc, LeptonicError) and not isinstance(exc, HandlerError):
            # raised on purpose by the photon (e.g. InvalidInput): its status and words
            return await _send_problem(send, exc.status, exc.title, exc.detail,
                                       handler=ep.name, **exc.extra)
        rid = _request_id(scope)
        log.error("handler %r failed (request %s)", ep.name, rid, exc_info=exc)
        # a HandlerError is in the platform's own words (no user data)
        detail = (exc.detail if isinstance(exc, HandlerError)
                  else self._failure_detail(ep, exc, rid))
        return await _send_problem(send, 500, "Handler failed", detail, handler=ep.name,
                                   exception=type(exc).__name__, request_id=rid)

    def _failure_detail(self, ep: _Endpoint, exc: BaseException, rid: str) -> str:
        """What a caller learns of an unexpected exception: its type and where to look;
        its message (which may hold anything, a password say) only with --debug-errors."""
        if self.debug_errors:
            return f"handler {ep.name!r} failed: {_exc_line(exc)} (request id {rid})"
        return (f"handler {ep.name!r} failed with {type(exc).__name__}; the replica's log "
                f"has the traceback under request id {rid}")

    async def _stream(self, ep: _Endpoint, kwargs: dict[str, Any], scope: Scope,
                      receive: Receive, send: Send) -> int:
        items = (_aiter_async(ep.fn(**kwargs), ep.timeout) if ep.is_async
                 else _aiter_sync(ep.fn(**kwargs), self.executor, ep.timeout))
        # The first item is produced before the headers go out, so a handler that fails
        # straight away gets a proper 500 rather than a broken stream.
        try:
            first = await anext(items, _END)
            data = b"" if first is _END else b"data: " + ep.dump(first) + b"\n\n"
        except Exception as exc:
            await items.aclose()
            return await self._handler_failed(ep, exc, scope, send)
        gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, gone))
        code = 200
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            if first is not _END:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                async for item in items:
                    if gone.is_set():
                        code = 499
                        break
                    await send({"type": "http.response.body",
                                "body": b"data: " + ep.dump(item) + b"\n\n",
                                "more_body": True})
        except Exception as exc:
            rid = _request_id(scope)
            log.error("handler %r failed while streaming (request %s)", ep.name, rid,
                      exc_info=exc)
            if isinstance(exc, HandlerTimeout):
                code = 504
                err = problem(504, "Handler timed out",
                              f"handler {ep.name!r} sent no item within {exc.seconds:g}s; "
                              "the stream was abandoned", handler=ep.name)
            else:
                code = 500
                err = problem(500, "Handler failed", self._failure_detail(ep, exc, rid),
                              handler=ep.name, exception=type(exc).__name__, request_id=rid)
            if not gone.is_set():
                await send({"type": "http.response.body",
                            "body": b"event: error\ndata: " + pydantic_core.to_json(err)
                                    + b"\n\n", "more_body": True})
        finally:
            watcher.cancel()
            await items.aclose()
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b""})
        return code

    # -- built-in routes ---------------------------------------------------------------

    async def _healthz(self, send: Send) -> None:
        if self.executor.stuck():
            return await self._stuck(send)
        await _send_json(send, 200, pydantic_core.to_json(
            {"status": "ok", "photon": self.name, "replica_id": self.replica_id}))

    async def _stuck(self, send: Send) -> None:
        await _send_problem(
            send, 503, "Service unavailable",
            f"every handler worker of this replica has been stuck past twice its timeout "
            f"({self.executor.written_off} written off); it cannot serve and must be "
            "replaced", headers=[(STUCK_HEADER, b"1")])

    async def _readyz(self, send: Send) -> None:
        if self.executor.stuck():
            await self._stuck(send)
        elif self.ready and not self.stopping:
            await _send_json(send, 200, b'{"status":"ready"}')
        elif self.stopping:
            await _send_problem(send, 503, "Service unavailable", "the replica is stopping")
        elif self.init_error is not None:
            await _send_problem(send, 503, "Service unavailable",
                                f"{self.name}.init() failed: {_exc_line(self.init_error)}")
        else:
            await _send_problem(send, 503, "Service unavailable",
                                f"{self.name}.init() has not returned yet")

    async def _metrics(self, send: Send) -> None:
        for ep in self._all_endpoints:
            if ep.batcher is not None:
                self.metrics.queue_depth.labels(ep.name).set(ep.batcher.pending)
        body = generate_latest(self.metrics.registry)
        await _send_json(send, 200, body,
                         headers=[(b"content-type", CONTENT_TYPE_LATEST.encode())])

    async def _openapi_json(self, send: Send) -> None:
        if self._openapi is None:
            doc = openapi_document(self.name, self.signatures,
                                   description=(type(self.photon).__doc__ or "").strip() or None)
            self._openapi = pydantic_core.to_json(doc)
        await _send_json(send, 200, self._openapi)

    async def _docs(self, send: Send) -> None:
        await _send_json(send, 200, swagger_ui_html(self.name).encode(),
                         headers=[(b"content-type", b"text/html; charset=utf-8")])


def build_app(photon: Photon, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              ready: bool = False, replica_id: str | None = None,
              on_init_error: Callable[[BaseException], None] | None = None,
              max_workers: int | None = None,
              batching: BatchConfig | None = None,
              handler_timeout_s: float = DEFAULT_HANDLER_TIMEOUT_S,
              max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
              max_queue: int | None = None, debug_errors: bool = False) -> PhotonApp:
    """The ASGI app serving ``photon`` (validated first: raises PhotonDefinitionError).

    ``ready=True`` marks it ready without running ``init()``; otherwise the ASGI lifespan
    (or ``await app.startup()``) runs it. ``on_init_error`` is called, after the traceback
    is printed, when ``init()`` raises during the lifespan. Sync handlers run in a thread
    pool of ``max_workers`` threads (default: ``max_concurrency``); a call past
    ``handler_timeout_s`` (or the handler's own ``timeout=``) answers 504. At most
    ``max_concurrency`` requests are in progress, ``max_queue`` (default as many) wait up
    to ``QUEUE_WAIT_S``, the rest get 503 marked for the gateway to retry elsewhere.
    ``batching`` overrides every batched handler's settings (see :class:`BatchConfig`).
    """
    # a photon class may bring its own app (the classic leptonai API: leptonic.compat)
    app_class = getattr(type(photon), "_app_class", None)
    factory: type[PhotonApp] = app_class() if app_class is not None else PhotonApp
    return factory(photon, max_body_bytes=max_body_bytes, ready=ready,
                   replica_id=replica_id, on_init_error=on_init_error,
                   max_workers=max_workers, batching=batching,
                   handler_timeout_s=handler_timeout_s, max_concurrency=max_concurrency,
                   max_queue=max_queue, debug_errors=debug_errors)


# -- ASGI helpers ------------------------------------------------------------------------


async def _send_json(send: Send, status: int, body: bytes,
                     headers: list[tuple[bytes, bytes]] | None = None) -> int:
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or _JSON),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
    return status


async def _send_problem(send: Send, status: int, title: str, detail: str,
                        headers: list[tuple[bytes, bytes]] | None = None,
                        **extra: Any) -> int:
    body = pydantic_core.to_json(problem(status, title, detail, **extra))
    return await _send_json(send, status, body, headers=[*_PROBLEM, *(headers or [])])


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _aiter_async(agen: Any, timeout_s: float | None = None
                       ) -> AsyncGenerator[Any, None]:
    it = agen.__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    item = await anext(it)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise HandlerTimeout(timeout_s or 0) from None
            yield item
    finally:
        if hasattr(agen, "aclose"):
            await agen.aclose()


async def _aiter_sync(gen: Iterator[Any], executor: WorkerPool,
                      timeout_s: float | None = None) -> AsyncGenerator[Any, None]:
    timed_out = False
    try:
        while True:
            try:
                item = await executor.run(next, timeout_s, gen, _END)
            except HandlerTimeout:
                timed_out = True        # its thread is still inside the generator
                raise
            if item is _END:
                return
            yield item
    finally:
        close = getattr(gen, "close", None)
        if close is not None and not timed_out:
            await executor.run(close, timeout_s)


async def _awaitable_to_coro(aw: Awaitable[Any]) -> Any:
    return await aw


def _request_id(scope: Scope) -> str:
    """The gateway's request id (``x-request-id``), else one of the runner's own."""
    for key, value in scope.get("headers") or ():
        if key == b"x-request-id":
            return bytes(value).decode("latin-1")[:128]
    return f"runner-{os.getpid()}-{time.monotonic_ns():x}"


def _exc_line(exc: BaseException) -> str:
    return traceback.format_exception_only(exc)[-1].strip()


# -- process entry point -----------------------------------------------------------------


def serve(entry: str, host: str = "127.0.0.1", port: int = 8000,
          bundle_dir: str | Path | None = None, replica_id: str | None = None, *,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          environ: Mapping[str, str] | None = None,
          handler_timeout_s: float = DEFAULT_HANDLER_TIMEOUT_S,
          max_concurrency: int = DEFAULT_MAX_CONCURRENCY, debug_errors: bool = False,
          on_listening: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Load ``entry``, serve it with uvicorn until SIGTERM/SIGINT; return the exit code.

    ``on_listening`` is called once the server accepts connections, with what it serves
    (``photon``, ``entry``, ``url``, ``handlers``: method and path of each), from a thread.

    0 after a graceful stop (``shutdown()`` called); 1 when the photon cannot be loaded,
    the ``PHOTON_BATCH_*`` settings in ``environ`` (default: the process environment)
    are invalid, or its ``init()`` raised (the traceback is on stderr, where the platform
    reads it).
    """
    import uvicorn

    from leptonic.photon.loader import load_photon_class

    _configure_logging()
    try:
        batching = BatchConfig.from_env(os.environ if environ is None else environ)
    except LeptonicError as exc:
        print(f"leptonic: {exc.detail}", file=sys.stderr)
        return 1
    if bundle_dir is not None:
        os.chdir(bundle_dir)
    try:
        cls = load_photon_class(entry, bundle_dir)
        photon = cls()
    except PhotonDefinitionError as exc:
        print(f"leptonic: {exc.detail}", file=sys.stderr)
        return 1
    except Exception:
        print(f"leptonic: cannot create photon {entry!r}:", file=sys.stderr)
        traceback.print_exc()
        return 1

    exit_code = 0
    terminated = False
    server: uvicorn.Server | None = None

    def init_failed(_: BaseException) -> None:
        nonlocal exit_code
        exit_code = 1
        if server is not None:
            server.should_exit = True

    try:
        app = build_app(photon, max_body_bytes=max_body_bytes, replica_id=replica_id,
                        on_init_error=init_failed, batching=batching,
                        handler_timeout_s=handler_timeout_s, max_concurrency=max_concurrency,
                        debug_errors=debug_errors)
    except PhotonDefinitionError as exc:
        print(f"leptonic: {exc.detail}", file=sys.stderr)
        return 1
    config = uvicorn.Config(app, host=host, port=port, loop=_loop_impl(), http=_http_impl(),
                            lifespan="on", access_log=False, log_level="info",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = uvicorn.Server(config)

    # uvicorn re-raises the stop signal once it has shut down; this handler makes that a
    # clean exit (0) instead of death by SIGTERM, and stops a server that is still starting.
    def on_term(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        if server is not None:
            server.should_exit = True

    signal.signal(signal.SIGTERM, on_term)
    paths = ", ".join(f"{ep.sig.spec.method} {ep.path}" for ep in app._all_endpoints)
    if type(app).__name__ == "ClassicApp":
        log.info("%s is a classic leptonai photon: served by leptonic.compat", app.name)
    log.info("serving photon %s%s at http://%s:%d (%s)", app.name,
             f" (replica {replica_id})" if replica_id else "", host, port, paths)
    if on_listening is not None:
        info = {"photon": app.name, "entry": entry, "url": f"http://{host}:{port}",
                "handlers": [{"method": ep.sig.spec.method, "path": ep.path}
                             for ep in app._all_endpoints]}

        def announce(srv: uvicorn.Server = server) -> None:
            while not srv.started and not srv.should_exit:
                time.sleep(0.02)
            if srv.started:
                on_listening(info)

        threading.Thread(target=announce, name="announce", daemon=True).start()
    server.run()
    if exit_code == 0 and not server.started and not terminated:
        return 1  # uvicorn could not start (e.g. the port is taken); it logged why
    log.info("photon %s stopped (exit %d)", app.name, exit_code)
    return exit_code


def _loop_impl() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leptonic.photon.runner",
                                     description="Serve one photon over HTTP.")
    parser.add_argument("--entry", required=True,
                        help="FILE.py:Class inside the bundle, or builtin:NAME")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replica-id", default=os.environ.get("LEPTONIC_REPLICA_ID"))
    parser.add_argument("--bundle", default=None, help="the photon's directory (default: cwd)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--handler-timeout", type=float, default=DEFAULT_HANDLER_TIMEOUT_S,
                        help="seconds a handler call may take before a 504")
    parser.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY,
                        help="requests in progress at once; as many wait briefly, then 503")
    parser.add_argument("--debug-errors", action="store_true",
                        help="send a handler's exception message to its caller")
    parser.add_argument("--limit-open-files", type=int, default=None)
    parser.add_argument("--limit-processes", type=int, default=None)
    parser.add_argument("--platform", default=None, help=argparse.SUPPRESS)  # owner mark
    args = parser.parse_args(argv)
    from leptonic.runtime.isolation import apply_limits

    # before any user code is imported, so it cannot raise them again
    apply_limits(args.limit_open_files, args.limit_processes)
    return serve(args.entry, args.host, args.port, bundle_dir=args.bundle,
                 replica_id=args.replica_id, max_body_bytes=args.max_body_bytes,
                 handler_timeout_s=args.handler_timeout, max_concurrency=args.max_concurrency,
                 debug_errors=args.debug_errors)


if __name__ == "__main__":
    sys.exit(main())
