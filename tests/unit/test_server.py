"""The guarded HTTP protocol of ``leptonic up``: slow heads, stalled bodies and silent
connections are cut off on time; whole requests are served (and arm no timer)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from leptonic.server import GuardedHttpToolsProtocol

LIMIT_S = 0.4
PROTOCOLS: list[Guarded] = []


class Guarded(GuardedHttpToolsProtocol):
    head_timeout_s = LIMIT_S
    body_idle_timeout_s = LIMIT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        PROTOCOLS.append(self)


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=Guarded, lifespan="off", log_level="warning",
                            access_log=False, timeout_keep_alive=30)
    srv = uvicorn.Server(config)
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (fails after ``seconds``)."""
    start = time.monotonic()
    data = await asyncio.wait_for(reader.read(), seconds)
    assert b"200 OK" not in data
    return time.monotonic() - start


HEAD = b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n"


async def test_whole_requests_are_served_and_arm_no_timer() -> None:
    PROTOCOLS.clear()
    loop = asyncio.get_running_loop()
    armed: list[Any] = []
    call_later = loop.call_later

    def counting(delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(callback, "__func__", None) is Guarded._expire:
            armed.append(delay)
        return call_later(delay, callback, *args, **kwargs)

    loop.call_later = counting  # type: ignore[method-assign]
    try:
        await _three_requests_and_one_after_a_pause()
    finally:
        del loop.call_later      # back to the class's
    assert len(armed) == 1       # the connection's own (a client that never sends)


async def _three_requests_and_one_after_a_pause() -> None:
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):                       # keep-alive: three on one connection
            writer.write(HEAD + b"\r\nbody")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readexactly(2) == b"ok"
            (proto,) = PROTOCOLS
            assert proto._head_timer is None
            assert proto._body_timer is None
        await asyncio.sleep(LIMIT_S * 2)         # idle between requests: not a slow head
        writer.write(HEAD + b"\r\nbody")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_a_dribbled_head_is_cut_off_from_its_first_byte() -> None:
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(LIMIT_S * 0.6)       # the clock starts at the first byte
        start = time.monotonic()
        for i in range(len(HEAD)):
            try:
                writer.write(HEAD[i:i + 1])
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof():
                break
            await asyncio.sleep(0.05)
            if time.monotonic() - start > 5 * LIMIT_S:
                break
        await closed_within(reader, 5 * LIMIT_S)
        assert LIMIT_S * 0.9 <= time.monotonic() - start < 4 * LIMIT_S
        writer.close()


async def test_a_stalled_body_and_a_silent_connection_are_cut_off() -> None:
    async with server() as port:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"\r\nb")            # head done, 1 of 4 body bytes
        await writer.drain()
        waited = await closed_within(reader, 5 * LIMIT_S)
        assert LIMIT_S * 0.9 <= waited < 4 * LIMIT_S
        await closed_within(silent_reader, 5 * LIMIT_S)
        writer.close()
        silent.close()


async def test_a_body_that_keeps_coming_is_not_cut_off() -> None:
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 6\r\n\r\n")
        for byte in b"abcdef":                   # 6 x 0.25 s > the limit, each gap below
            await asyncio.sleep(LIMIT_S * 0.6)
            writer.write(bytes([byte]))
            await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(
            b"HTTP/1.1 200")
        writer.close()
