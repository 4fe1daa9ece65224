"""The ASGI app serving a classic leptonai photon with the classic wire format.

It is leptonic's :class:`~leptonic.photon.runner.PhotonApp` (lifecycle, ``/healthz``,
``/readyz``, ``/metrics``, admission, batching, worker threads, timeouts) with three things
done the way leptonai 0.27 did them: routing (``GET`` handlers with query parameters),
responses (the bare value as JSON, ``None`` as 204, a returned starlette ``Response`` sent
as is) and errors (``{"error": detail}``; request validation as FastAPI's
``{"detail": [...]}``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import typing
from typing import Any
from urllib.parse import parse_qsl

import pydantic_core
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from leptonic.asgi import BadLength, Disconnected, TooLarge, read_body
from leptonic.photon.batching import QueueFull
from leptonic.photon.runner import (
    HandlerError,
    PhotonApp,
    Receive,
    Scope,
    Send,
    _Endpoint,
    _request_id,
    _send_json,
)
from leptonic.photon.workers import HandlerTimeout

log = logging.getLogger("leptonic.compat")


class ClassicApp(PhotonApp):
    """Serves one :class:`leptonic.compat.Photon` instance."""

    def __init__(self, photon: Any, **kwargs: Any) -> None:
        super().__init__(photon, **kwargs)
        self.routes: dict[tuple[str, str], _Endpoint] = {
            (ep.sig.spec.method, ep.path): ep for ep in self._all_endpoints}
        self._gets["/livez"] = self._healthz
        # sync handlers share handler_max_concurrency slots, as leptonai's semaphore
        self._slots = asyncio.Semaphore(type(photon).handler_max_concurrency)

    def _run_init(self) -> Any:
        classic: Any = self.photon          # a leptonic.compat.Photon
        return classic._call_init_once()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        ep = self.routes.get((method, path))
        if ep is not None:
            await self._handle(ep, scope, receive, send)
            return
        allowed = sorted(m for m, p in self.routes if p == path)
        if allowed:
            await _send_json(send, 405, b'{"detail":"Method Not Allowed"}',
                             headers=[(b"content-type", b"application/json"),
                                      (b"allow", ", ".join(allowed).encode())])
            return
        get = self._gets.get(path)
        if get is not None and method == "GET":
            await get(send)
            return
        await _send_json(send, 404, b'{"detail":"Not Found"}')

    async def _respond(self, ep: _Endpoint, scope: Scope, receive: Receive,
                       send: Send) -> int:
        spec = ep.sig.spec
        if spec.method == "GET":
            raw: Any = _query(scope, ep)
        else:
            try:
                body = await read_body(scope, receive, self.max_body_bytes)
            except BadLength as exc:
                return await _error(send, 400, str(exc))
            except TooLarge as exc:
                return await _error(send, 413, str(exc))
            except Disconnected:
                return 499
            raw = body
        kwargs: dict[str, Any] = {}
        if ep.params or ep.model.model_config.get("extra") == "allow":
            try:
                model = (ep.model.model_validate(raw) if isinstance(raw, dict)
                         else ep.model.model_validate_json(raw or b"{}"))
            except ValidationError as exc:
                where = "query" if spec.method == "GET" else "body"
                detail = [{"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                          for e in exc.errors(include_url=False, include_input=False)]
                return await _send_json(send, 422, pydantic_core.to_json({"detail": detail}))
            kwargs = {**model.__dict__, **(model.model_extra or {})}
        if self.stopping:
            return await _error(send, 503, "the replica is shutting down")
        try:
            result = await self._call(ep, kwargs)
        except Exception as exc:
            return await self._failed(ep, exc, scope, send)
        if result is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return 204
        if isinstance(result, Response):
            await result(scope, receive, send)
            return int(result.status_code)
        try:
            payload = pydantic_core.to_json(result)
        except pydantic_core.PydanticSerializationError as exc:
            return await self._failed(ep, HandlerError(
                f"handler {ep.name!r} returned a value that cannot be serialised to JSON: "
                f"{exc}"), scope, send)
        return await _send_json(send, 200, payload)

    async def _call(self, ep: _Endpoint, kwargs: dict[str, Any]) -> Any:
        if ep.batcher is not None:
            return await ep.batcher.submit(kwargs)
        if ep.is_async:
            try:
                async with asyncio.timeout(ep.timeout):
                    return await ep.fn(**kwargs)
            except TimeoutError:
                raise HandlerTimeout(ep.timeout) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ep.timeout
        try:
            async with asyncio.timeout(ep.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise HandlerTimeout(ep.timeout) from None
        try:
            return await self.executor.run(functools.partial(ep.fn, **kwargs),
                                           max(deadline - loop.time(), 0.001))
        finally:
            self._slots.release()

    async def _failed(self, ep: _Endpoint, exc: Exception, scope: Scope, send: Send) -> int:
        if isinstance(exc, HandlerTimeout | TimeoutError):
            seconds = ep.timeout      # the limit, not what was left of it after a wait
            log.warning("handler %r timed out after %gs", ep.name, seconds)
            return await _error(send, 504, f"handler timeout after {seconds:g} seconds")
        if isinstance(exc, HTTPException):
            headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                       for k, v in (exc.headers or {}).items()]
            return await _error(send, exc.status_code, exc.detail, headers)
        if isinstance(exc, QueueFull):
            return await _error(send, exc.status, exc.detail,
                                [(b"retry-after", str(exc.retry_after_s).encode())])
        rid = _request_id(scope)
        log.error("handler %r failed (request %s)", ep.name, rid, exc_info=exc)
        detail = (exc.detail if isinstance(exc, HandlerError)
                  else self._failure_detail(ep, exc, rid))
        return await _error(send, 500, detail)


def _query(scope: Scope, ep: _Endpoint) -> dict[str, Any]:
    """Query parameters, a repeated one as a list where the parameter is a list."""
    pairs = parse_qsl((scope.get("query_string") or b"").decode("latin-1"),
                      keep_blank_values=True)
    fields = ep.model.model_fields
    out: dict[str, Any] = {}
    for key, value in pairs:
        info = fields.get(key)
        if info is not None and typing.get_origin(info.annotation) in (list, tuple, set):
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


async def _error(send: Send, status: int, detail: Any,
                 headers: list[tuple[bytes, bytes]] | None = None) -> int:
    return await _send_json(send, status, pydantic_core.to_json({"error": detail}),
                            headers=[(b"content-type", b"application/json"), *(headers or [])])


def launch(photon: Any, host: str = "0.0.0.0", port: int = 8080,
           log_level: str = "info") -> None:
    """Serve ``photon`` (an instance) with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    from leptonic.photon.runner import _http_impl, _loop_impl, build_app

    server: uvicorn.Server | None = None

    def init_failed(_: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = build_app(photon, on_init_error=init_failed)
    log.info("serving classic photon %s at http://%s:%d", type(photon).__name__, host, port)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, loop=_loop_impl(), http=_http_impl(), lifespan="on",
        log_level=log_level, access_log=False))
    server.run()
