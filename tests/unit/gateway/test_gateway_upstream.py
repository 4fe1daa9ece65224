"""The keep-alive upstream client against scripted raw TCP servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from leptonic.gateway.upstream import (
    UpstreamClient,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from tests.unit.gateway.gateway_servers import ABORT, closed_port, raw_server, scripted

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
GET = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def replying(*responses: bytes, then: float | None = None) -> Handler:
    """Answer each request on a connection with the next response; optionally linger."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if then is not None:
            await asyncio.sleep(then)
    return handler


async def read_all(client: UpstreamClient, port: int, **kwargs: bool) -> tuple[int, bytes]:
    resp = await client.request("127.0.0.1", port, GET, **kwargs)
    try:
        parts = [resp.take_body()]
        while (chunk := await resp.next_chunk()) is not None:
            parts.append(chunk)
        return resp.status, b"".join(parts)
    finally:
        resp.release()


async def test_content_length_body_and_headers() -> None:
    ok = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Thing: 1\r\nKeep-Alive: t\r\n\r\nhello"
    async with raw_server(replying(ok)) as (port, _):
        client = UpstreamClient()
        resp = await client.request("127.0.0.1", port, GET)
        assert resp.status == 201
        assert resp.complete
        assert resp.headers == [(b"content-length", b"5"), (b"x-thing", b"1")]
        assert resp.take_body() == b"hello"
        resp.release()
        await client.aclose()


async def test_chunked_body_streams_chunk_by_chunk() -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.wait_for(gate.wait(), 5)
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(handler) as (port, _):
        client = UpstreamClient()
        resp = await client.request("127.0.0.1", port, GET)
        assert resp.headers == []      # transfer-encoding is hop-by-hop
        assert not resp.complete
        first = resp.take_body() or await resp.next_chunk()
        assert first == b"first"
        gate.set()
        assert await resp.next_chunk() == b"second"
        assert await resp.next_chunk() is None
        resp.release()
        assert client.idle_count("127.0.0.1", port) == 1
        await client.aclose()


async def test_body_until_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")

    async with raw_server(handler) as (port, _):
        client = UpstreamClient()
        assert await read_all(client, port) == (200, b"all of it")
        assert client.idle_count("127.0.0.1", port) == 0


async def test_keep_alive_reuses_one_connection() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with raw_server(replying(ok, ok, ok, then=1)) as (port, peers):
        client = UpstreamClient()
        for _ in range(3):
            assert await read_all(client, port) == (200, b"ok")
        assert len(peers) == 1
        assert client.connections_opened == 1
        await client.aclose()


async def test_connection_close_response_is_not_pooled() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with raw_server(replying(ok)) as (port, peers):
        client = UpstreamClient()
        assert await read_all(client, port) == (200, b"ok")
        assert await read_all(client, port) == (200, b"ok")
        assert len(peers) == 2


async def test_refused_connection_is_a_connect_error() -> None:
    client = UpstreamClient()
    with pytest.raises(UpstreamConnectError) as info:
        await client.request("127.0.0.1", closed_port(), GET)
    assert info.value.before_response
    assert not info.value.reused


async def test_close_before_any_byte_is_retryable() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.transport.abort()       # RST, no response byte

    async with raw_server(handler) as (port, _):
        with pytest.raises(UpstreamError) as info:
            await UpstreamClient().request("127.0.0.1", port, GET)
    assert info.value.before_response


async def test_close_after_partial_headers_is_not_retryable() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()

    async with raw_server(handler) as (port, _):
        with pytest.raises(UpstreamError) as info:
            await UpstreamClient().request("127.0.0.1", port, GET)
    assert not info.value.before_response


async def test_close_mid_body_fails_the_stream() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with raw_server(handler) as (port, _):
        client = UpstreamClient()
        resp = await client.request("127.0.0.1", port, GET)
        assert resp.status == 200
        assert resp.take_body() == b"partial" or await resp.next_chunk() == b"partial"
        with pytest.raises(UpstreamError) as info:
            await resp.next_chunk()
        resp.release()
    assert not info.value.before_response


async def test_a_small_body_read_whole_fails_as_retryable() -> None:
    handler = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", 0.05, ABORT)
    async with raw_server(handler) as (port, _):
        client = UpstreamClient()
        resp = await client.request("127.0.0.1", port, GET)
        assert resp.status == 200
        assert resp.small
        assert not resp.complete
        with pytest.raises(UpstreamError) as info:
            await resp.read_all()
    assert info.value.before_response       # the client has seen nothing of it
    assert "before the client saw any of it" in str(info.value)
    assert resp._conn is None               # released


async def test_a_small_body_arriving_late_is_read_whole() -> None:
    handler = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", 0.05, b"ok", 0.05,
                       b"done", 1.0)
    async with raw_server(handler) as (port, _):
        client = UpstreamClient()
        resp = await client.request("127.0.0.1", port, GET)
        await asyncio.wait_for(resp.read_all(), 3)
        assert resp.complete
        assert resp.take_body() == b"okdone"
        resp.release()
        assert client.idle_count("127.0.0.1", port) == 1


@pytest.mark.parametrize(("head", "small"), [
    (b"Content-Length: 262144", True),
    (b"Content-Length: 262145", False),
    (b"Transfer-Encoding: chunked", False),
    (b"X-No-Length: 1", False),
])
async def test_only_a_declared_small_body_may_be_read_whole(head: bytes, small: bool) -> None:
    handler = scripted(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n", 0.5)
    async with raw_server(handler) as (port, _):
        resp = await UpstreamClient().request("127.0.0.1", port, GET)
        assert resp.small is small
        resp.release()


async def test_stale_pooled_connection_is_reported_as_reused() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok)
        await writer.drain()
        await read_request(reader)     # the second request gets dropped unanswered
        writer.transport.abort()

    async with raw_server(handler) as (port, _):
        client = UpstreamClient()
        assert await read_all(client, port) == (200, b"ok")
        with pytest.raises(UpstreamError) as info:
            await client.request("127.0.0.1", port, GET)
    assert info.value.before_response
    assert info.value.reused


async def test_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(handler) as (port, _):
        client = UpstreamClient(read_timeout=0.2)
        with pytest.raises(UpstreamTimeout) as info:
            await asyncio.wait_for(client.request("127.0.0.1", port, GET), 3)
    assert info.value.before_response


async def test_head_response_ends_at_headers() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"
    async with raw_server(replying(head, then=1)) as (port, _):
        client = UpstreamClient()
        resp = await asyncio.wait_for(
            client.request("127.0.0.1", port, GET, head_only=True), 3)
        assert resp.complete
        assert resp.take_body() == b""
        resp.release()
        assert client.idle_count("127.0.0.1", port) == 0
