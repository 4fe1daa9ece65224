"""Real HTTP servers on loopback for the gateway tests, run inside the test's event loop.

``serve(app)`` starts uvicorn on a fresh 127.0.0.1 port; ``UpstreamApp`` is a replica
stand-in that echoes what it received and can stream, fail or answer problem+json;
``raw_server(handler)`` is a bare TCP server for replicas that misbehave byte by byte, and
``scripted(...)`` writes such a handler as a list of steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """Run ``app`` under uvicorn on 127.0.0.1:<free port>; yields (url, server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                            ws="none", http="httptools", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        assert server.started, "test server did not start"
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: a step of :func:`scripted`: reset the connection (what a SIGKILLed replica does)
ABORT = "abort"


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; yields (port, peers)."""
    peers: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[1])
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        server.close()
        await server.wait_closed()


def scripted(*steps: bytes | float | str) -> Handler:
    """A handler that reads one request head, then takes ``steps`` in turn: bytes are
    written (and drained), a number is a pause in seconds, ``ABORT`` resets the
    connection."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif step == ABORT:
                writer.transport.abort()
                return
            else:
                await asyncio.sleep(float(step))
    return handler


def closed_port() -> int:
    """A loopback port with nothing listening (connections to it are refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class UpstreamApp:
    """A replica stand-in.

    ``/echo``: JSON of method, path, query, headers and body. ``/status/N``: that status.
    ``/problem``: a 422 problem+json. ``/stream``: chunked; sends "first", then waits for
    ``release`` before "second". Records the client port of every request.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.client_ports: list[int] = []
        self.release = asyncio.Event()
        self.stream_finished = asyncio.Event()
        self.stream_cancelled = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.client_ports.append(scope["client"][1])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/echo" or path.startswith("/echo/"):
            payload = {
                "replica": self.name,
                "method": scope["method"],
                "path": path,
                "query": scope["query_string"].decode(),
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "body": body.decode(),
            }
            await _json(send, 200, payload, [(b"x-upstream", self.name.encode())])
        elif path.startswith("/status/"):
            await _json(send, int(path.rsplit("/", 1)[1]), {"replica": self.name})
        elif path == "/problem":
            doc = {"type": "about:blank", "title": "Invalid input", "status": 422,
                   "detail": "field 'text' is required"}
            await _json(send, 422, doc, content_type=b"application/problem+json")
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            try:
                await send({"type": "http.response.body", "body": b"data: first\n\n",
                            "more_body": True})
                await asyncio.wait_for(self.release.wait(), 10)
                await send({"type": "http.response.body", "body": b"data: second\n\n",
                            "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except asyncio.CancelledError:
                self.stream_cancelled = True
                raise
            finally:
                self.stream_finished.set()
        else:
            await _json(send, 404, {"detail": "no such path"})


async def _json(send: Any, status: int, payload: Any,
                headers: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = b"application/json") -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
