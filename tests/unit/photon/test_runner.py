"""The runner's ASGI app, driven in-process: handler routes, errors, probes, metrics, docs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from leptonic import Photon, handler
from leptonic.errors import InvalidInput
from leptonic.photon.runner import PhotonApp, build_app

PROBLEM = "application/problem+json"


class Item(BaseModel):
    name: str
    qty: int = 1


class Demo(Photon):
    """A photon exercising every kind of handler."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.inited = False
        self.stopped = False
        self.threads: list[int] = []

    def init(self) -> None:
        self.gate.wait(5)
        self.inited = True

    def shutdown(self) -> None:
        self.stopped = True

    @handler
    async def echo(self, text: str, times: int = 1) -> str:
        return text * times

    @handler
    def sync_echo(self, text: str) -> str:
        self.threads.append(threading.get_ident())
        return text

    @handler(path="/v1/item")
    def item(self, item: Item) -> Item:
        return Item(name=item.name.upper(), qty=item.qty)

    @handler
    def as_dict(self) -> Item:
        return {"name": "coerced"}  # type: ignore[return-value]

    @handler
    def wrong(self) -> int:
        return "not an int"  # type: ignore[return-value]

    @handler
    def boom(self, x: int = 0) -> int:
        raise ValueError(f"bad x {x}")

    @handler
    async def refuse(self) -> int:
        raise InvalidInput("x must be even")

    @handler
    def count(self, n: int = 3) -> Iterator[int]:
        yield from range(n)

    @handler
    async def acount(self, n: int = 3) -> AsyncIterator[dict[str, Any]]:
        for i in range(n):
            yield {"i": i}

    @handler
    async def fail_stream(self, after: int = 1) -> AsyncIterator[int]:
        for i in range(after):
            yield i
        raise RuntimeError("stream broke")

    @handler(batch=4, max_wait_ms=20)
    def lengths(self, texts: list[str], scale: list[int]) -> list[int]:
        return [len(t) * s for t, s in zip(texts, scale, strict=True)]

    @handler(batch=4, max_wait_ms=20)
    async def short(self, xs: list[int]) -> list[int]:
        return xs[:-1]


@pytest.fixture
def photon() -> Demo:
    return Demo()


@pytest.fixture
async def app(photon: Demo) -> AsyncIterator[PhotonApp]:
    app = build_app(photon, max_body_bytes=1024)
    yield app
    photon.gate.set()
    await app.shutdown()


@pytest.fixture
async def client(app: PhotonApp, photon: Demo) -> AsyncIterator[httpx.AsyncClient]:
    photon.gate.set()
    await app.startup()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://photon") as c:
        yield c


async def test_async_handler(client: httpx.AsyncClient) -> None:
    r = await client.post("/echo", json={"text": "ab", "times": 2})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == "abab"


async def test_sync_handler_runs_in_a_thread(client: httpx.AsyncClient, photon: Demo) -> None:
    r = await client.post("/sync_echo", json={"text": "hi"})
    assert r.json() == "hi"
    assert photon.threads
    assert photon.threads[0] != threading.get_ident()


async def test_model_in_and_out_with_custom_path(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/item", json={"item": {"name": "bolt"}})
    assert r.json() == {"name": "BOLT", "qty": 1}


async def test_output_is_coerced_to_the_return_type(client: httpx.AsyncClient) -> None:
    assert (await client.post("/as_dict", json={})).json() == {"name": "coerced", "qty": 1}


async def test_empty_body_for_a_handler_without_inputs(client: httpx.AsyncClient) -> None:
    assert (await client.post("/as_dict")).status_code == 200


async def test_wrong_body_is_422_problem_listing_fields(client: httpx.AsyncClient) -> None:
    r = await client.post("/echo", json={"txt": "x", "times": "many"})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422
    for needle in ("'echo'", "text", "times", "txt"):
        assert needle in body["detail"]
    assert {tuple(e["loc"]) for e in body["errors"]} == {("text",), ("times",), ("txt",)}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
async def test_invalid_json_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/echo", content=raw)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM


async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/echo", json={"text": "x" * 2000})
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM
    assert "1024 bytes" in r.json()["detail"]


async def test_chunked_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 300

    r = await client.post("/echo", content=chunks())
    assert r.status_code == 413


async def test_unknown_path_is_404_listing_handlers(client: httpx.AsyncClient) -> None:
    r = await client.post("/nope", json={})
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert "POST /echo" in r.json()["detail"]
    assert "POST /v1/item" in r.json()["handlers"]


async def test_get_on_a_handler_is_405(client: httpx.AsyncClient) -> None:
    r = await client.get("/echo")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_handler_exception_is_500_naming_handler_type_and_request_id(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    r = await client.post("/boom", json={"x": 7}, headers={"x-request-id": "req-42"})
    assert r.status_code == 500
    assert r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert "'boom'" in doc["detail"]
    assert "ValueError" in doc["detail"]
    assert "req-42" in doc["detail"]
    assert (doc["handler"], doc["exception"], doc["request_id"]) == ("boom", "ValueError",
                                                                     "req-42")
    # the message may hold anything (a password): callers never see it by default
    assert "bad x 7" not in r.text
    logged = [rec for rec in caplog.records if "req-42" in rec.getMessage()]
    assert logged
    assert logged[0].exc_info
    assert "bad x 7" in str(logged[0].exc_info[1])


async def test_debug_errors_sends_the_message(photon: Demo) -> None:
    app = build_app(photon, ready=True, debug_errors=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://replica") as c:
        r = await c.post("/boom", json={"x": 7})
    assert r.status_code == 500
    assert "ValueError: bad x 7" in r.json()["detail"]
    await app.shutdown()


async def test_output_not_matching_return_type_is_500(client: httpx.AsyncClient) -> None:
    r = await client.post("/wrong", json={})
    assert r.status_code == 500
    assert "'wrong'" in r.json()["detail"]
    assert "return type" in r.json()["detail"]


async def test_leptonic_error_from_handler_keeps_its_status(client: httpx.AsyncClient) -> None:
    r = await client.post("/refuse", json={})
    assert r.status_code == 422
    assert r.json()["detail"] == "x must be even"


async def test_batched_handler_gets_one_item_per_client(client: httpx.AsyncClient) -> None:
    rs = await asyncio.gather(*(client.post("/lengths", json={"texts": "x" * i, "scale": 2})
                                for i in range(6)))
    assert [r.json() for r in rs] == [2 * i for i in range(6)]


async def test_batched_wrong_output_count_is_500_naming_handler(
        client: httpx.AsyncClient) -> None:
    rs = await asyncio.gather(*(client.post("/short", json={"xs": i}) for i in range(2)))
    for r in rs:
        assert r.status_code == 500
        assert "'short'" in r.json()["detail"]
        assert "one output per input" in r.json()["detail"]


async def test_batched_body_is_one_item(client: httpx.AsyncClient) -> None:
    r = await client.post("/lengths", json={"texts": ["a"], "scale": 1})
    assert r.status_code == 422


def sse_items(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]


async def test_sync_stream_is_server_sent_events(client: httpx.AsyncClient) -> None:
    r = await client.post("/count", json={"n": 4})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.text == "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n"


async def test_async_stream_items_are_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/acount", json={"n": 2})
    assert sse_items(r.text) == ['{"i":0}', '{"i":1}']


async def test_empty_stream(client: httpx.AsyncClient) -> None:
    r = await client.post("/count", json={"n": 0})
    assert r.status_code == 200
    assert r.text == ""


async def test_stream_failing_before_first_item_is_500(client: httpx.AsyncClient) -> None:
    r = await client.post("/fail_stream", json={"after": 0})
    assert r.status_code == 500
    assert r.json()["exception"] == "RuntimeError"
    assert "stream broke" not in r.text


async def test_stream_failing_midway_ends_with_error_event(client: httpx.AsyncClient) -> None:
    r = await client.post("/fail_stream", json={"after": 2})
    assert r.status_code == 200
    assert sse_items(r.text)[:2] == ["0", "1"]
    assert "event: error" in r.text
    assert "RuntimeError" in r.text
    assert "stream broke" not in r.text


async def test_stream_items_are_sent_as_produced() -> None:
    release = asyncio.Event()

    class Slow(Photon):
        @handler
        async def ticks(self) -> AsyncIterator[int]:
            yield 1
            await release.wait()
            yield 2

    app = build_app(Slow(), ready=True)
    sent: list[dict[str, Any]] = []
    first_body = asyncio.Event()
    done = asyncio.Event()
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_body.set()

    scope = {"type": "http", "method": "POST", "path": "/ticks", "headers": []}
    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait_for(first_body.wait(), timeout=2)
    assert not task.done()
    assert sent[-1]["body"] == b"data: 1\n\n"
    release.set()
    await asyncio.wait_for(task, timeout=2)
    done.set()
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    await app.shutdown()


async def test_healthz_always_readyz_after_init(app: PhotonApp, photon: Demo) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://photon") as c:
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"] == PROBLEM
        assert "init() has not returned" in r.json()["detail"]
        starting = asyncio.ensure_future(app.startup())
        await asyncio.sleep(0.02)
        assert (await c.get("/readyz")).status_code == 503
        assert not photon.inited
        photon.gate.set()
        await asyncio.wait_for(starting, timeout=5)
        assert photon.inited
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
    await app.shutdown()
    assert photon.stopped


async def test_failed_init_keeps_readyz_503_with_the_error() -> None:
    class Bad(Photon):
        def init(self) -> None:
            raise RuntimeError("weights missing")

        @handler
        def f(self) -> int:
            return 1

    app = build_app(Bad())
    with pytest.raises(RuntimeError, match="weights missing"):
        await app.startup()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://photon") as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert "RuntimeError: weights missing" in r.json()["detail"]
    await app.shutdown()


async def test_lifespan_runs_init_in_background_and_reports_failure(
        capsys: pytest.CaptureFixture[str]) -> None:
    class Bad(Photon):
        def init(self) -> None:
            raise RuntimeError("weights missing")

        @handler
        def f(self) -> int:
            return 1

    failures: list[BaseException] = []
    app = build_app(Bad(), on_init_error=failures.append)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, send))
    for _ in range(200):
        if failures:
            break
        await asyncio.sleep(0.01)
    assert outbox == [{"type": "lifespan.startup.complete"}]
    assert isinstance(failures[0], RuntimeError)
    assert "weights missing" in capsys.readouterr().err
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, timeout=2)
    assert outbox[-1] == {"type": "lifespan.shutdown.complete"}


async def test_async_init_is_awaited() -> None:
    class A(Photon):
        async def init(self) -> None:  # type: ignore[override]
            await asyncio.sleep(0)
            self.ok = True

        @handler
        def f(self) -> int:
            return 1

    a = A()
    app = build_app(a)
    await app.startup()
    assert a.ok
    assert app.ready
    await app.shutdown()


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.post("/echo", json={"text": "a"})
    await client.post("/echo", json={"text": "a"})
    await client.post("/echo", json={})
    await client.post("/boom", json={})
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'leptonic_photon_requests_total{code="200",handler="echo"} 2.0' in text
    assert 'leptonic_photon_requests_total{code="422",handler="echo"} 1.0' in text
    assert 'leptonic_photon_requests_total{code="500",handler="boom"} 1.0' in text
    assert 'leptonic_photon_request_seconds_count{handler="echo"} 3.0' in text
    assert "leptonic_photon_in_flight 0.0" in text


async def test_openapi_describes_every_handler(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "Demo"
    assert set(doc["paths"]) >= {"/echo", "/v1/item", "/count", "/lengths"}
    echo = doc["paths"]["/echo"]["post"]
    req = echo["requestBody"]["content"]["application/json"]["schema"]
    assert req["required"] == ["text"]
    assert req["properties"]["times"]["default"] == 1
    assert req["additionalProperties"] is False
    assert echo["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "string"}
    item = doc["paths"]["/v1/item"]["post"]
    ref = item["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Item"
    assert "Item" in doc["components"]["schemas"]
    stream = doc["paths"]["/count"]["post"]["responses"]["200"]["content"]
    assert stream["text/event-stream"]["x-item-schema"] == {"type": "integer"}
    batched = doc["paths"]["/lengths"]["post"]
    props = batched["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert props["texts"]["type"] == "string"
    assert batched["x-batch"] == {"max_batch_size": 4, "max_wait_ms": 20.0}


async def test_docs_page_points_at_openapi(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "swagger-ui-dist" in r.text
    assert "/openapi.json" in r.text


async def test_builtin_echo() -> None:
    from leptonic.photon.builtin.echo import Echo

    app = build_app(Echo())
    await app.startup()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://photon") as c:
        assert (await c.post("/echo", json={"text": "hey"})).json() == "hey"
        assert sse_items((await c.post("/count", json={})).text) == ["0", "1", "2"]
    await app.shutdown()


class Hangs(Photon):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    @handler(timeout=0.2)
    def hang(self) -> str:
        self.release.wait(30)
        return "late"

    @handler(timeout=0.2)
    async def hang_async(self) -> str:
        await asyncio.sleep(30)
        return "late"

    @handler
    def info(self) -> str:
        return "ok"


@pytest.fixture
async def hangs() -> AsyncIterator[tuple[Hangs, PhotonApp, httpx.AsyncClient]]:
    photon = Hangs()
    app = build_app(photon, ready=True, max_concurrency=48)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://replica", timeout=10) as c:
        yield photon, app, c
    photon.release.set()
    await app.shutdown()


async def test_a_handler_past_its_timeout_answers_504_on_time(
        hangs: tuple[Hangs, PhotonApp, httpx.AsyncClient]) -> None:
    _, _, c = hangs
    for path in ("/hang", "/hang_async"):
        started = time.monotonic()
        r = await c.post(path, json={})
        assert r.status_code == 504, r.text
        assert r.headers["content-type"] == PROBLEM
        assert time.monotonic() - started < 1.0
        assert "0.2s" in r.json()["detail"]
        assert r.json()["timeout_s"] == 0.2


async def test_forty_hung_calls_leave_another_handler_answering(
        hangs: tuple[Hangs, PhotonApp, httpx.AsyncClient]) -> None:
    _, app, c = hangs
    hung = [asyncio.ensure_future(c.post("/hang", json={})) for _ in range(40)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    r = await c.post("/info", json={})
    assert r.status_code == 200
    assert r.json() == "ok"
    assert time.monotonic() - started < 1.0
    codes = [x.status_code for x in await asyncio.gather(*hung)]
    assert codes == [504] * 40
    # the pool kept its size: the hung threads were written off, new ones serve
    r = await c.post("/info", json={})
    assert r.status_code == 200
    assert app.executor.written_off == 40


async def test_beyond_max_concurrency_a_short_queue_then_503_for_the_gateway(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from leptonic.photon import runner

    monkeypatch.setattr(runner, "QUEUE_WAIT_S", 0.1)
    photon = Hangs()
    app = build_app(photon, ready=True, max_concurrency=2, max_queue=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://replica", timeout=10) as c:
        busy = [asyncio.ensure_future(c.post("/hang", json={})) for _ in range(2)]
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(c.post("/info", json={}))
        await asyncio.sleep(0.01)
        r = await c.post("/info", json={})        # the queue (1) is full: 503 at once
        assert r.status_code == 503
        assert r.headers["x-leptonic-saturated"] == "1"
        assert r.headers["retry-after"] == "1"
        assert "limit of 2 requests" in r.json()["detail"]
        assert (await queued).status_code == 503  # waited 0.1 s, no slot came free
        assert [x.status_code for x in await asyncio.gather(*busy)] == [504, 504]
        assert (await c.post("/info", json={})).status_code == 200
    photon.release.set()
    await app.shutdown()


async def test_a_replica_whose_every_worker_hangs_fails_its_probes() -> None:
    photon = Hangs()
    app = build_app(photon, ready=True, max_concurrency=1)
    app.executor.max_written_off = 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://replica", timeout=10) as c:
        assert (await c.get("/readyz")).status_code == 200
        for _ in range(2):
            assert (await c.post("/hang", json={})).status_code == 504
        await asyncio.sleep(0.45)        # twice the timeout
        for path in ("/readyz", "/healthz"):
            r = await c.get(path)
            assert r.status_code == 503
            assert r.headers["x-leptonic-stuck"] == "1"
    photon.release.set()
    await app.shutdown()


async def test_batched_requests_are_bounded_by_their_queue_not_max_concurrency() -> None:
    class Batched(Photon):
        @handler(batch=8, max_wait_ms=50)
        def double(self, x: list[int]) -> list[int]:
            return [v * 2 for v in x]

    app = build_app(Batched(), ready=True, max_concurrency=2, max_queue=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://replica", timeout=10) as c:
        rs = await asyncio.gather(*(c.post("/double", json={"x": i}) for i in range(8)))
    assert [r.status_code for r in rs] == [200] * 8
    assert [r.json() for r in rs] == [i * 2 for i in range(8)]
    await app.shutdown()
