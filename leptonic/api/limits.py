"""Bound request bodies before any handler reads them (413 problem+json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leptonic.asgi import BadLength, TooLarge, check_length, send_problem

Scope = dict[str, Any]


class BodyLimit:
    """ASGI middleware: a body over ``limit_for(scope)`` bytes gets 413, whether it says
    so in Content-Length or streams past the limit chunk by chunk; a Content-Length that
    is not a number of bytes gets 400 (leptonic/asgi.py, as in the gateway and runner)."""

    def __init__(self, app: Any, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        try:
            check_length(scope.get("headers", ()), limit)
        except BadLength as exc:
            await send_problem(send, 400, "Bad request", str(exc), close=True)
            return
        except TooLarge as exc:
            await send_problem(send, 413, "Payload too large", str(exc), close=True)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(limit)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge as exc:
            if not started:
                await send_problem(send, 413, "Payload too large", str(exc), close=True)
