"""Bound request bodies before any handler reads them (413 problem+json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leptonic.errors import PROBLEM_CONTENT_TYPE, problem

Scope = dict[str, Any]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a body over ``limit_for(scope)`` bytes gets 413, whether it says
    so in Content-Length or streams past the limit chunk by chunk."""

    def __init__(self, app: Any, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    await _reply_413(send, limit)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply_413(send, limit)


async def _reply_413(send: Any, limit: int) -> None:
    import json
    body = json.dumps(problem(413, "Payload too large",
                              f"the request body is larger than the limit of {limit} bytes"
                              )).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
