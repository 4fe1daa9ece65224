"""``Client`` and ``AsyncClient``: a leptonic platform from Python.

::

    from leptonic import Client

    with Client() as c:                       # LEPTONIC_URL/TOKEN, else the local platform
        c.create_photon("echo", "app.py:Echo", path="examples/echo")
        c.create_deployment("echo", "echo", replicas=2)
        c.wait_ready("echo", timeout=120)
        c.deployment("echo").echo(text="hi")  # POST /run/echo/echo {"text": "hi"}

The API methods (``_base._API``) are the same on both; on ``AsyncClient`` they are
awaited. Errors are ``leptonic.errors`` classes carrying the server's ``detail``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Iterator
from typing import Any, NamedTuple

import httpx

from leptonic.client._base import (
    _API,
    Call,
    SSEDecoder,
    WaitTimeout,
    _seg,
    check_ready,
    connection_error,
    decode_body,
    error_from_response,
    is_event_stream,
    logs_call,
    resolve_token,
    resolve_url,
    timeout_error,
)
from leptonic.client.jobs import JobsAPI, job_done
from leptonic.client.models import ModelsAPI
from leptonic.core.models import Deployment, Job

ProgressFn = Callable[[Deployment], None]


def _headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": "leptonic-client"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _streaming_timeout(timeout: float | None) -> httpx.Timeout:
    # a followed log or a streamed answer may be quiet for long; only connecting is bounded
    return httpx.Timeout(timeout, read=None)


class Client(_API, JobsAPI, ModelsAPI):
    """A blocking client of a leptonic platform.

    ``url`` and ``token`` default to ``$LEPTONIC_URL`` / ``$LEPTONIC_TOKEN``, else to the
    local platform's ``endpoint`` and ``admin-token`` files in ``$LEPTONIC_DATA_DIR`` (or
    ``~/.leptonic``). ``transport`` replaces the network (tests, in-process platforms).
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float | None = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = resolve_url(url)
        self.token = resolve_token(token, url=self.url)
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=_headers(self.token),
                                  timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    # -- sending ------------------------------------------------------------------------
    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            resp = self._http.send(request, stream=stream)
            if resp.status_code >= 400:
                if stream:
                    resp.read()
                    resp.close()
                raise error_from_response(resp)
        except httpx.TransportError as exc:
            raise connection_error(self.url, exc) from exc
        return resp

    def _run(self, call: Call) -> Any:
        return call.parse(self._send(call.request(self._http)))

    # -- waiting and streaming ----------------------------------------------------------
    def wait_ready(self, name: str, timeout: float = 300.0,
                   on_progress: ProgressFn | None = None, *,
                   interval: float = 0.5) -> Deployment:
        """Poll deployment ``name`` until all its desired replicas are ready.

        Calls ``on_progress(deployment)`` on every poll. Raises ``DeploymentFailed`` with
        the replicas' last error if it goes into CrashLoop, ``WaitTimeout`` after
        ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        dep: Deployment | None = None
        while True:
            dep = self.get_deployment(name)
            if on_progress is not None:
                on_progress(dep)
            if check_ready(dep):
                return dep
            left = deadline - time.monotonic()
            if left <= 0:
                raise timeout_error(dep, name, timeout)
            time.sleep(min(interval, left))

    def wait_job(self, name: str, timeout: float | None = None,
                 on_progress: Callable[[Job], None] | None = None, *,
                 interval: float = 0.2) -> Job:
        """Poll job ``name`` until it succeeds -> ``Job``. Raises ``JobFailed`` (with the
        reason and the last log lines) once it fails, ``WaitTimeout`` after ``timeout``
        seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job: Job = self.get_job(name)
            if on_progress is not None:
                on_progress(job)
            if job_done(job):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {name} did not finish within {timeout:g}s: "
                                  f"{job.status.phase}: {job.status.message}")
            time.sleep(interval)

    def follow_logs(self, name: str, tail: int | None = 200,
                    replica: str | None = None, grep: str | None = None,
                    ignore_case: bool = False) -> Iterator[str]:
        """The log lines of a deployment, then new ones as they come (until closed);
        only those matching the regular expression ``grep`` when given."""
        yield from self._stream_lines(logs_call(name, tail, replica, follow=True, grep=grep,
                                                ignore_case=ignore_case))

    def follow_job_logs(self, name: str, *, index: int | None = None,
                        attempt: int | None = None, tail: int = 200) -> Iterator[str]:
        """A job's log lines, then new ones as they come, until the job has finished."""
        yield from self._stream_lines(Call("GET", f"/jobs/{_seg(name)}/logs", params={
            "index": index, "attempt": attempt, "tail": tail, "follow": "true"}))

    def _stream_lines(self, call: Call) -> Iterator[str]:
        """The lines of a streamed answer, as they come (no read timeout between them)."""
        request = call.request(self._http)
        request.extensions["timeout"] = _streaming_timeout(self.timeout).as_dict()
        resp = self._send(request, stream=True)
        try:
            yield from resp.iter_lines()
        except httpx.TransportError as exc:
            raise connection_error(self.url, exc) from exc
        finally:
            resp.close()

    def call(self, deployment: str, handler: str, /, **inputs: Any) -> Any:
        """POST ``inputs`` as JSON to ``/run/{deployment}/{handler}`` through the gateway.

        Returns the decoded JSON answer, or an iterator of the decoded ``data:`` items
        when the handler streams (``text/event-stream``).
        """
        request = self._http.build_request(
            "POST", f"/run/{_seg(deployment)}/{handler.lstrip('/')}", json=inputs)
        request.extensions["timeout"] = _streaming_timeout(self.timeout).as_dict()
        resp = self._send(request, stream=True)
        if is_event_stream(resp):
            return self._events(resp)
        try:
            resp.read()
        finally:
            resp.close()
        return decode_body(resp)

    def call_traced(self, deployment: str, handler: str, /, **inputs: Any) -> Traced:
        """``call`` that also returns the request id the gateway gave the answer (what
        ``feedback`` names): ``Traced(answer, request_id)``. Not for streams."""
        request = self._http.build_request(
            "POST", f"/run/{_seg(deployment)}/{handler.lstrip('/')}", json=inputs)
        resp = self._send(request)
        return Traced(decode_body(resp), resp.headers.get("x-leptonic-request-id", ""))

    def _events(self, resp: httpx.Response) -> Iterator[Any]:
        decoder = SSEDecoder()
        try:
            for line in resp.iter_lines():
                yield from decoder.feed(line)
            yield from decoder.flush()
        except httpx.TransportError as exc:
            raise connection_error(self.url, exc) from exc
        finally:
            resp.close()

    def deployment(self, name: str) -> DeploymentHandle:
        """A handle whose attributes call the deployment's handlers:
        ``client.deployment("echo").echo(text="hi")``."""
        return DeploymentHandle(self, name)


class AsyncClient(_API, JobsAPI, ModelsAPI):
    """The asyncio twin of ``Client``: the same methods, awaited; streams are async
    iterators."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float | None = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = resolve_url(url)
        self.token = resolve_token(token, url=self.url)
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(self.token),
                                       timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r})"

    # -- sending ------------------------------------------------------------------------
    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            resp = await self._http.send(request, stream=stream)
            if resp.status_code >= 400:
                if stream:
                    await resp.aread()
                    await resp.aclose()
                raise error_from_response(resp)
        except httpx.TransportError as exc:
            raise connection_error(self.url, exc) from exc
        return resp

    async def _run(self, call: Call) -> Any:
        return call.parse(await self._send(call.request(self._http)))

    # -- waiting and streaming ----------------------------------------------------------
    # same signature as Client.wait_ready; the deadline is checked between polls
    async def wait_ready(self, name: str, timeout: float = 300.0,  # noqa: ASYNC109
                         on_progress: ProgressFn | None = None, *,
                         interval: float = 0.5) -> Deployment:
        """See ``Client.wait_ready``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            dep: Deployment = await self.get_deployment(name)
            if on_progress is not None:
                on_progress(dep)
            if check_ready(dep):
                return dep
            left = deadline - loop.time()
            if left <= 0:
                raise timeout_error(dep, name, timeout)
            await asyncio.sleep(min(interval, left))

    async def wait_job(self, name: str, timeout: float | None = None,  # noqa: ASYNC109
                       on_progress: Callable[[Job], None] | None = None, *,
                       interval: float = 0.2) -> Job:
        """See ``Client.wait_job``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            job: Job = await self.get_job(name)
            if on_progress is not None:
                on_progress(job)
            if job_done(job):
                return job
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(f"job {name} did not finish within {timeout:g}s: "
                                  f"{job.status.phase}: {job.status.message}")
            await asyncio.sleep(interval)

    async def follow_logs(self, name: str, tail: int | None = 200,
                          replica: str | None = None, grep: str | None = None,
                          ignore_case: bool = False) -> AsyncIterator[str]:
        """See ``Client.follow_logs``."""
        call = logs_call(name, tail, replica, follow=True, grep=grep, ignore_case=ignore_case)
        request = call.request(self._http)
        request.extensions["timeout"] = _streaming_timeout(self.timeout).as_dict()
        resp = await self._send(request, stream=True)
        try:
            async for line in resp.aiter_lines():
                yield line
        except httpx.TransportError as exc:
            raise connection_error(self.url, exc) from exc
        finally:
            await resp.aclose()

    def call(self, deployment: str, handler: str, /, **inputs: Any) -> PendingCall:
        """See ``Client.call``: ``await`` it for the answer (a streamed one is an async
        iterator), or ``async for item in client.call(...)`` straight over a stream."""
        return PendingCall(self._call(deployment, handler, inputs), handler)

    async def call_traced(self, deployment: str, handler: str, /, **inputs: Any) -> Traced:
        """See ``Client.call_traced``."""
        request = self._http.build_request(
            "POST", f"/run/{_seg(deployment)}/{handler.lstrip('/')}", json=inputs)
        resp = await self._send(request)
        return Traced(decode_body(resp), resp.headers.get("x-leptonic-request-id", ""))

    async def _call(self, deployment: str, handler: str, inputs: dict[str, Any]) -> Any:
        request = self._http.build_request(
            "POST", f"/run/{_seg(deployment)}/{handler.lstrip('/')}", json=inputs)
        request.extensions["timeout"] = _streaming_timeout(self.timeout).as_dict()
        resp = await self._send(request, stream=True)
        if is_event_stream(resp):
            return self._events(resp)
        try:
            await resp.aread()
        finally:
            await resp.aclose()
        return decode_body(resp)

    async def _events(self, resp: httpx.Response) -> AsyncIterator[Any]:
        decoder = SSEDecoder()
        try:
            async for line in resp.aiter_lines():
                for item in decoder.feed(line):
                    yield item
            for item in decoder.flush():
                yield item
        except httpx.TransportError as exc:
            raise connection_error(self.url, exc) from exc
        finally:
            await resp.aclose()

    def deployment(self, name: str) -> AsyncDeploymentHandle:
        """See ``Client.deployment``; the handler calls are awaited."""
        return AsyncDeploymentHandle(self, name)


class Traced(NamedTuple):
    """A handler's answer and the request id the gateway gave it."""

    answer: Any
    request_id: str


class DeploymentHandle:
    """Calls a deployment's handlers as methods: ``handle.embed(texts=["a"])``.

    A handler whose name clashes with an attribute is reached with ``handle.call(name)``.
    """

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name

    def call(self, handler: str, /, **inputs: Any) -> Any:
        return self._client.call(self.name, handler, **inputs)

    def traced(self, handler: str, /, **inputs: Any) -> Traced:
        """The answer and its request id: ``handle.traced("predict", features=[...])``."""
        return self._client.call_traced(self.name, handler, **inputs)

    def feedback(self, items: Iterable[Any]) -> Any:
        """The truth of earlier answers (see ``Client.feedback``)."""
        return self._client.feedback(self.name, items)

    def model_metrics(self, window: str = "1h") -> Any:
        return self._client.model_metrics(self.name, window)

    def __getattr__(self, handler: str) -> Callable[..., Any]:
        if handler.startswith("_"):
            raise AttributeError(handler)

        def invoke(**inputs: Any) -> Any:
            return self._client.call(self.name, handler, **inputs)

        invoke.__name__ = handler
        return invoke

    def __repr__(self) -> str:
        return f"DeploymentHandle({self.name!r})"


class PendingCall:
    """A handler call of ``AsyncClient``: awaitable (the answer; a streamed one as an async
    iterator) and async-iterable itself, so ``async for x in handle.count(n=3)`` works
    without the ``await``. It is sent once, when first awaited or iterated."""

    def __init__(self, call: Coroutine[Any, Any, Any], handler: str) -> None:
        self._call: Coroutine[Any, Any, Any] | None = call
        self._handler = handler

    def __await__(self) -> Generator[Any, None, Any]:
        if self._call is None:
            raise RuntimeError(f"the call of {self._handler!r} was already awaited")
        call, self._call = self._call, None
        return call.__await__()

    async def __aiter__(self) -> AsyncIterator[Any]:
        answer = await self
        if not hasattr(answer, "__aiter__"):
            raise TypeError(f"handler {self._handler!r} answered without streaming "
                            f"({type(answer).__name__}); await the call instead of "
                            "iterating it")
        async for item in answer:
            yield item

    def __del__(self) -> None:
        if self._call is not None:       # never awaited: no "was never awaited" warning
            self._call.close()


class AsyncDeploymentHandle:
    """``DeploymentHandle`` for ``AsyncClient``: ``await handle.echo(text="hi")``, and
    ``async for item in handle.count(n=3)`` over a streamed answer."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name

    def call(self, handler: str, /, **inputs: Any) -> PendingCall:
        return self._client.call(self.name, handler, **inputs)

    def traced(self, handler: str, /, **inputs: Any) -> Coroutine[Any, Any, Traced]:
        return self._client.call_traced(self.name, handler, **inputs)

    def feedback(self, items: Iterable[Any]) -> Any:
        return self._client.feedback(self.name, items)

    def model_metrics(self, window: str = "1h") -> Any:
        return self._client.model_metrics(self.name, window)

    def __getattr__(self, handler: str) -> Callable[..., Any]:
        if handler.startswith("_"):
            raise AttributeError(handler)

        def invoke(**inputs: Any) -> PendingCall:
            return self._client.call(self.name, handler, **inputs)

        invoke.__name__ = handler
        return invoke

    def __repr__(self) -> str:
        return f"AsyncDeploymentHandle({self.name!r})"
