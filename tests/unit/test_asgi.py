"""leptonic/asgi.py: one rule for a declared body length and bounded reads, and the same
answer to a bad Content-Length from the gateway, a photon replica and the API (400 when it
is not a number of bytes, 413 over the limit), called at the ASGI level as a server that
passes the header through would."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from leptonic import Photon, handler
from leptonic.api.limits import BodyLimit
from leptonic.asgi import (
    BadLength,
    Disconnected,
    TooLarge,
    check_length,
    declared_length,
    read_body,
)
from leptonic.gateway.proxy import Gateway
from leptonic.gateway.routes import RouteTable
from leptonic.photon.runner import build_app


@pytest.mark.parametrize(("headers", "expected"), [
    ([], None), ([(b"content-length", b"12")], 12), ([(b"content-length", b" 7 ")], 7),
    ([(b"content-length", b"3"), (b"content-length", b"3")], 3),
    ([(b"host", b"x")], None),
])
def test_declared_length(headers: list[tuple[bytes, bytes]], expected: int | None) -> None:
    assert declared_length(headers) == expected


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1e3", b"", b"0x10", b"1.5"])
def test_a_length_that_is_not_a_number_of_bytes_is_refused(value: bytes) -> None:
    with pytest.raises(BadLength, match="not a number of bytes"):
        declared_length([(b"content-length", value)])


def test_two_lengths_that_disagree_are_refused() -> None:
    with pytest.raises(BadLength):
        declared_length([(b"content-length", b"3"), (b"content-length", b"4")])
    with pytest.raises(TooLarge, match="limit of 10 bytes"):
        check_length([(b"content-length", b"11")], 10)


def _receiver(*messages: dict[str, Any]) -> Callable[[], Any]:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


async def test_read_body_in_chunks_bounded_and_disconnected() -> None:
    scope: dict[str, Any] = {"headers": []}
    chunks = _receiver({"type": "http.request", "body": b"ab", "more_body": True},
                       {"type": "http.request", "body": b"cd", "more_body": False})
    assert await read_body(scope, chunks, 10) == b"abcd"
    with pytest.raises(TooLarge):
        await read_body(scope, _receiver({"type": "http.request", "body": b"x" * 6,
                                          "more_body": True},
                                         {"type": "http.request", "body": b"x" * 6}), 10)
    with pytest.raises(Disconnected):
        await read_body(scope, _receiver({"type": "http.request", "body": b"x",
                                          "more_body": True}, {"type": "http.disconnect"}),
                        10)
    with pytest.raises(TooLarge):                 # declared: nothing is read
        await read_body({"headers": [(b"content-length", b"99")]}, _receiver(), 10)


class _Echo(Photon):
    @handler
    def echo(self, text: str) -> str:
        return text


async def _call(app: Any, path: str, length: bytes) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [(b"content-length", length),
                                               (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80), "scheme": "http",
             "http_version": "1.1", "root_path": ""}
    await app(scope, _receiver({"type": "http.request", "body": b'{"text": "x"}'}), send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"application/problem+json")
    return start["status"], json.loads(body)


async def _unreachable(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app behind the limit must not be called")


@pytest.mark.parametrize(("length", "status"), [(b"abc", 400), (b"-5", 400),
                                                (b"999999", 413)])
async def test_gateway_runner_and_api_answer_a_bad_length_alike(length: bytes,
                                                                 status: int) -> None:
    gateway = Gateway(RouteTable(), max_body_bytes=1024)
    runner = build_app(_Echo(), max_body_bytes=1024)
    await runner.startup()
    api = BodyLimit(_unreachable, lambda scope: 1024)
    try:
        answers = [await _call(gateway, "/run/web/echo", length),
                   await _call(runner, "/echo", length),
                   await _call(api, "/api/v1/photons", length)]
    finally:
        await runner.shutdown()
    assert [s for s, _ in answers] == [status] * 3, answers
    details = {body["detail"] for _, body in answers}
    assert len(details) == 1, details           # the same words, wherever it arrives
