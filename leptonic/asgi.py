"""What the gateway, the photon runner and the control plane's API share at the ASGI level:
one rule for a request's declared body length, bounded body reads, and problem+json
replies. So a bad ``Content-Length`` gets the same answer wherever it arrives: 400 when it
is not a number of bytes, 413 when it is over the limit (as are bodies that stream past
it), and a client that went away mid-body is noticed the same way."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from leptonic.errors import PROBLEM_CONTENT_TYPE, problem

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BadLength(Exception):
    """The request's Content-Length is not a number of bytes."""

    def __init__(self, value: bytes) -> None:
        shown = value[:40].decode("latin-1", "replace")
        super().__init__(f"Content-Length {shown!r} is not a number of bytes: send the "
                         "body's length, or leave the header out")


class TooLarge(Exception):
    """The request body is (or says it is) over the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit} bytes")
        self.limit = limit


class Disconnected(Exception):
    """The client went away before the whole body arrived."""


def length_of(value: bytes) -> int:
    """One Content-Length header's value as bytes; ``BadLength`` for anything but digits."""
    text = value.strip()
    if not text.isdigit():
        raise BadLength(value)
    return int(text)


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length the request declares (None: none). Raises ``BadLength`` for
    anything but digits, and for two headers that disagree (RFC 9112 6.3)."""
    found: int | None = None
    for name, value in headers:
        if name != b"content-length":
            continue
        length = length_of(value)
        if found is not None and found != length:
            raise BadLength(value)
        found = length
    return found


def check_length(headers: Iterable[tuple[bytes, bytes]], limit: int) -> int | None:
    """``declared_length``, and ``TooLarge`` when it is over ``limit``."""
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise TooLarge(limit)
    return declared


async def read_body(scope: Mapping[str, Any], receive: Receive, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes. Raises ``BadLength``,
    ``TooLarge`` (declared or streamed past the limit) or ``Disconnected``."""
    check_length(scope.get("headers", ()), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def problem_body(status: int, title: str, detail: str, **extra: Any) -> bytes:
    return json.dumps(problem(status, title, detail, **extra)).encode()


async def send_problem(send: Send, status: int, title: str, detail: str, *,
                       headers: Iterable[tuple[bytes, bytes]] = (), close: bool = False,
                       **extra: Any) -> int:
    """Answer ``status`` with an ``application/problem+json`` body; returns the status."""
    body = problem_body(status, title, detail, **extra)
    head = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
    return status
