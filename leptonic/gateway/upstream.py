"""A pooled keep-alive HTTP/1.1 client for talking to replicas, built for the proxy's hot path.

It is asyncio protocols plus httptools' response parser (the parser uvicorn uses), with no
per-request tasks and at most two futures per exchange. It was picked over an
``aiohttp.ClientSession`` because it spends about a quarter of the CPU per request: 14 us
against 57 us for a small JSON POST at concurrency 32 on uvloop (``python
benchmarks/gateway.py --client-compare``), and the gateway often shares a core with the
replicas it proxies to.

What it does:

* one pool of idle keep-alive connections per ``(host, port)`` (LIFO, bounded);
* Content-Length, chunked and read-until-close response bodies, handed to the caller
  chunk by chunk as they arrive, with back-pressure (reading pauses while the caller lags);
* a connect timeout, and a read timeout that is an *idle* timeout (time without a byte);
* errors that say whether any response byte had arrived (``before_response``): only
  then is it safe for the proxy to send the request to another replica;
* a small body (declared, at most ``BUFFER_BYTES``) read whole on request, so a replica
  that dies between its headers and its body is still a failure the client never sees.

The caller owns a :class:`Response` until ``release()``: that returns the connection to the
pool when the response was read completely and the replica allows keep-alive, and
closes it otherwise.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

__all__ = [
    "Response",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
]

# Hop-by-hop response headers (RFC 9110 7.6.1) the proxy must not pass on; the
# front server frames the body itself (Content-Length kept, chunking redone).
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate",
})

_HIGH_WATER = 256 * 1024     # pause reading a replica once this much body is unread
_LOW_WATER = 64 * 1024
# A body declared at most this long may be read whole before the client sees anything
# (never more than _HIGH_WATER, or reading would pause under the waiting caller).
BUFFER_BYTES = _HIGH_WATER


class UpstreamError(Exception):
    """An exchange with a replica failed.

    ``before_response`` is true when nothing of the response can have reached the
    client: not a single byte had arrived, or a small body failed while it was read whole
    (``Response.read_all``). Only then may the request go to another replica.
    ``reused`` is true when it failed on a pooled connection (which may simply have been
    closed by the replica while idle) rather than on a fresh one.
    """

    def __init__(self, message: str, *, before_response: bool, reused: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response
        self.reused = reused


class UpstreamConnectError(UpstreamError):
    """The TCP connection could not be opened (refused, unreachable, timed out)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, before_response=True, reused=False)


class UpstreamTimeout(UpstreamError):
    """No byte came from the replica for ``read_timeout`` seconds."""


class Response:
    """One upstream response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_chunks", "_conn", "_error", "_pending", "_waiter", "complete", "declared",
        "got_bytes", "headers", "keep_alive", "reused", "status", "until_eof",
    )

    def __init__(self, conn: _Connection, reused: bool) -> None:
        self._conn: _Connection | None = conn
        self.reused = reused
        self.status = 0
        # Lower-cased names, hop-by-hop headers already removed; the caller may append.
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.until_eof = True       # no Content-Length and not chunked: body ends at EOF
        self.declared = -1          # the Content-Length, when the replica sent one
        self._chunks: deque[bytes] = deque()
        self._pending = 0           # unread body bytes
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def take_body(self) -> bytes:
        """All body bytes received so far (the whole body once ``complete``)."""
        chunks = self._chunks
        n = len(chunks)
        if n == 0:
            return b""
        body = chunks[0] if n == 1 else b"".join(chunks)
        chunks.clear()
        self._pending = 0
        return body

    async def next_chunk(self) -> bytes | None:
        """The body bytes that arrived since the last call; ``None`` once the body ended.

        Raises :class:`UpstreamError` (``before_response=False``) when the replica fails
        or stalls mid-body.
        """
        while True:
            if self._chunks:
                body = self.take_body()
                conn = self._conn
                if conn is not None and conn.paused:
                    conn.resume()
                return body
            if self._error is not None:
                raise self._error
            if self.complete:
                return None
            conn = self._conn
            if conn is None:
                return None
            await self._more(conn)

    @property
    def small(self) -> bool:
        """Is the body's length declared and at most ``BUFFER_BYTES``? Such a body can be
        read whole before answering the client (``read_all``)."""
        return 0 <= self.declared <= BUFFER_BYTES

    async def read_all(self) -> None:
        """Wait for the rest of a ``small`` body; ``take_body`` then has all of it.

        A replica that fails meanwhile raises :class:`UpstreamError` with
        ``before_response`` true and the connection released: nothing of this response can
        have reached the client yet, so the proxy may still send the request elsewhere.
        """
        try:
            while not self.complete:
                if self._error is not None:
                    raise self._error
                conn = self._conn
                if conn is None:
                    raise UpstreamError("response released before its body was read",
                                        before_response=False)
                await self._more(conn)
        except UpstreamError as exc:
            self.release()
            kind = UpstreamTimeout if isinstance(exc, UpstreamTimeout) else UpstreamError
            raise kind(f"{exc}, before the client saw any of it",
                       before_response=True) from exc
        except BaseException:
            self.release()
            raise

    async def _more(self, conn: _Connection) -> None:
        """Wait until the connection has more for this response: body, its end, an error."""
        waiter = self._waiter = conn.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def release(self) -> None:
        """Give the connection back: to the pool if reusable, else close it. Idempotent."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        conn.finish(self)


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection to a replica, parsing responses with httptools."""

    def __init__(self, client: UpstreamClient, key: tuple[str, int]) -> None:
        self.client = client
        self.key = key
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.paused = False
        self.resp: Response | None = None
        self.headers_fut: asyncio.Future[None] | None = None
        self.head_only = False
        self.last_io = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        resp = self.resp
        if resp is None or resp.complete:
            # A replica must not talk while no request is outstanding.
            self.close()
            return
        resp.got_bytes = True
        self.last_io = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(
                f"invalid HTTP response from replica: {exc}",
                before_response=False, reused=resp.reused))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self.resp
        if resp is None or resp.complete:
            return
        if resp.status and resp.until_eof and not self.head_only:
            self.on_message_complete()      # a read-until-close body ended normally
            return
        reason = f": {exc}" if exc else ""
        if not resp.got_bytes:
            self._fail(UpstreamError(
                f"replica closed the connection before responding{reason}",
                before_response=True, reused=resp.reused))
        else:
            self._fail(UpstreamError(
                f"replica closed the connection mid-response{reason}",
                before_response=False, reused=resp.reused))

    def pause_writing(self) -> None:   # large request bodies; the kernel buffer catches up
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        resp = self.resp
        if resp is None or resp.complete:
            return
        if name in HOP_BY_HOP:
            if name == b"transfer-encoding":
                resp.until_eof = False
            return
        if name == b"content-length":
            resp.until_eof = False
            try:
                resp.declared = int(value)
            except ValueError:
                resp.declared = -1      # httptools refuses a malformed one right after
        resp.headers.append((name, value))

    def on_headers_complete(self) -> None:
        resp = self.resp
        if resp is None or resp.complete:
            return
        resp.status = self.parser.get_status_code()
        if self.head_only:
            # httptools cannot be told that a HEAD response has no body: end it here
            # and drop the connection rather than risk misreading the next response.
            resp.keep_alive = False
            self._complete(resp)
        fut = self.headers_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def on_body(self, body: bytes) -> None:
        resp = self.resp
        if resp is None or resp.complete:
            return
        resp._chunks.append(body)
        resp._pending += len(body)
        if resp._pending > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        waiter = resp._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        resp = self.resp
        if resp is None or resp.complete:
            return
        resp.keep_alive = self.parser.should_keep_alive() and not self.head_only
        self._complete(resp)

    # -- internals --------------------------------------------------------------------
    def _complete(self, resp: Response) -> None:
        resp.complete = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiter = resp._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        resp = self.resp
        if resp is None or resp.complete or resp._error is not None:
            return
        resp._error = error
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        fut = self.headers_fut
        if fut is not None and not fut.done():
            fut.set_exception(error)
        waiter = resp._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_idle(self) -> None:
        self.timer = None
        resp = self.resp
        if resp is None or resp.complete:
            return
        timeout = self.client.read_timeout
        left = self.last_io + timeout - self.loop.time()
        if left > 0 or self.paused:     # a paused read is the caller's delay, not the replica's
            self.timer = self.loop.call_later(max(left, timeout / 10), self._check_idle)
            return
        self._fail(UpstreamTimeout(
            f"replica sent nothing for {timeout:g}s",
            before_response=not resp.got_bytes, reused=resp.reused))
        self.close()

    def begin(self, resp: Response, data: bytes, body: bytes, head_only: bool) -> None:
        self.resp = resp
        self.head_only = head_only
        self.headers_fut = self.loop.create_future()
        self.last_io = self.loop.time()
        self.timer = self.loop.call_later(self.client.read_timeout, self._check_idle)
        transport = self.transport
        assert transport is not None
        if body and len(body) > 65536:
            transport.write(data)
            transport.write(body)
        else:
            transport.write(data + body if body else data)

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def finish(self, resp: Response) -> None:
        """Called by ``Response.release``: pool the connection or close it."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.resp = None
        self.headers_fut = None
        if resp.complete and resp.keep_alive and resp._error is None and not self.closed:
            if self.paused:
                self.resume()
            self.client._put_idle(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamClient:
    """Keep-alive connection pools to replicas and the request/response exchange."""

    def __init__(
        self,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 300.0,
        max_idle_per_host: int = 512,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connections_opened = 0        # for tests and metrics: new TCP connections

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def request(
        self, host: str, port: int, head: bytes, body: bytes = b"", *, head_only: bool = False
    ) -> Response:
        """Send one request (``head``: request line and headers, ending in a blank line).

        Returns once the response status and headers arrived; read the body with
        ``Response.next_chunk``/``take_body`` and always call ``Response.release``.
        Set ``head_only`` for HEAD requests, whose responses have no body.
        """
        key = (host, port)
        conn: _Connection | None = None
        idle = self._idle.get(key)
        while idle:
            candidate = idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        reused = conn is not None
        if conn is None:
            conn = await self._connect(key)
        resp = Response(conn, reused)
        conn.begin(resp, head, body, head_only)
        fut = conn.headers_fut
        assert fut is not None
        try:
            await fut
        except BaseException:
            resp.release()
            raise
        return resp

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = self.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, key), key[0], key[1])
        except TimeoutError as exc:
            raise UpstreamConnectError(
                f"connecting to {key[0]}:{key[1]} timed out after {self.connect_timeout:g}s"
            ) from exc
        except OSError as exc:
            raise UpstreamConnectError(
                f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}") from exc
        self.connections_opened += 1
        return conn

    def _put_idle(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if len(idle) >= self.max_idle_per_host:
            conn.close()
        else:
            idle.append(conn)

    def idle_count(self, host: str, port: int) -> int:
        return sum(1 for c in self._idle.get((host, port), ()) if not c.closed)

    def drop_idle(self, host: str, port: int) -> None:
        """Close the pooled connections to one replica (after it failed on one of them)."""
        for conn in self._idle.pop((host, port), ()):
            conn.close()

    async def aclose(self) -> None:
        """Close every pooled connection (in-flight ones close on ``release``)."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
