"""Dynamic batching through the runner's ASGI app: one item per client, 429 at the queue
bound, per-item errors, metrics, the event loop free while the model runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import pytest

from leptonic import Photon, handler
from leptonic.errors import InvalidInput
from leptonic.photon.batching import BatchConfig
from leptonic.photon.runner import PhotonApp, build_app

PROBLEM = "application/problem+json"


class Model(Photon):
    """A blocking "model": each batch waits on ``gate`` so tests can hold it mid-run."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()
        self.batches: list[list[int]] = []

    @handler(batch=4, max_wait_ms=30, max_queue=3)
    def square(self, x: list[int]) -> list[int]:
        self.running.set()
        self.gate.wait(5)
        self.batches.append(list(x))
        return [i * i for i in x]

    @handler(batch=8, max_wait_ms=5)
    def checked(self, x: list[int]) -> list[int | InvalidInput]:
        # a bad item fails its own request only; the rest of the batch is served
        return [InvalidInput(f"x must be >= 0, got {i}") if i < 0 else i for i in x]


async def serve(photon: Model, batching: BatchConfig | None = None
                ) -> tuple[PhotonApp, httpx.AsyncClient]:
    app = build_app(photon, ready=True, batching=batching)
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://p")


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
async def client(model: Model) -> AsyncIterator[httpx.AsyncClient]:
    app, c = await serve(model)
    async with c:
        yield c
    model.gate.set()
    await app.shutdown()


async def test_concurrent_clients_share_batches(client: httpx.AsyncClient,
                                                model: Model) -> None:
    rs = await asyncio.gather(*(client.post("/square", json={"x": i}) for i in range(3)))
    assert [r.json() for r in rs] == [0, 1, 4]
    assert model.batches == [[0, 1, 2]]


async def test_queue_bound_is_429_problem_with_retry_after(client: httpx.AsyncClient,
                                                           model: Model) -> None:
    model.gate.clear()
    running = asyncio.ensure_future(client.post("/square", json={"x": 1}))
    await asyncio.to_thread(model.running.wait, 5)      # batch [1] holds the model
    queued = [asyncio.ensure_future(client.post("/square", json={"x": i})) for i in (2, 3, 4)]
    await asyncio.sleep(0.05)
    r = await client.post("/square", json={"x": 5})
    assert r.status_code == 429
    assert r.headers["content-type"] == PROBLEM
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["status"] == 429
    assert body["handler"] == "square"
    assert body["queue_limit"] == 3
    assert "'square'" in body["detail"]
    model.gate.set()
    assert [x.json() for x in await asyncio.gather(running, *queued)] == [1, 4, 9, 16]
    metrics = (await client.get("/metrics")).text
    assert 'leptonic_photon_requests_total{code="429",handler="square"} 1.0' in metrics


async def test_bad_item_is_its_own_422_and_the_batch_is_served(
        client: httpx.AsyncClient) -> None:
    rs = await asyncio.gather(*(client.post("/checked", json={"x": i}) for i in (1, -2, 3)))
    assert [r.status_code for r in rs] == [200, 422, 200]
    assert rs[1].headers["content-type"] == PROBLEM
    assert rs[1].json()["detail"] == "x must be >= 0, got -2"
    assert rs[1].json()["handler"] == "checked"
    assert rs[0].json() == 1
    assert rs[2].json() == 3


async def test_event_loop_answers_while_the_model_runs(client: httpx.AsyncClient,
                                                       model: Model) -> None:
    model.gate.clear()
    running = asyncio.ensure_future(client.post("/square", json={"x": 3}))
    await asyncio.to_thread(model.running.wait, 5)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.post("/checked", json={"x": 7})).json() == 7
    assert not running.done()
    model.gate.set()
    assert (await running).json() == 9


async def test_a_client_that_goes_away_does_not_break_its_batch(
        client: httpx.AsyncClient, model: Model) -> None:
    calls = [asyncio.ensure_future(client.post("/square", json={"x": i})) for i in range(3)]
    await asyncio.sleep(0)
    calls[1].cancel()                       # gives up while waiting for its batch
    done = await asyncio.gather(calls[0], calls[2])
    assert [r.json() for r in done] == [0, 4]
    assert (await client.post("/square", json={"x": 5})).json() == 25


async def test_batch_histograms_on_metrics(client: httpx.AsyncClient) -> None:
    await asyncio.gather(*(client.post("/square", json={"x": i}) for i in range(3)))
    text = (await client.get("/metrics")).text
    assert 'leptonic_photon_batch_size_count{handler="square"} 1.0' in text
    assert 'leptonic_photon_batch_size_sum{handler="square"} 3.0' in text
    assert 'leptonic_photon_batch_size_bucket{handler="square",le="4.0"} 1.0' in text
    assert 'leptonic_photon_batch_size_bucket{handler="square",le="2.0"} 0.0' in text
    assert 'leptonic_photon_batch_queue_wait_seconds_count{handler="square"} 3.0' in text
    assert 'leptonic_photon_batch_seconds_count{handler="square"} 1.0' in text
    assert 'leptonic_photon_batch_queue_depth{handler="square"} 0.0' in text


async def test_deployment_overrides_turn_batching_off(model: Model) -> None:
    app, c = await serve(model, BatchConfig(max_batch_size=1))
    async with c:
        rs = await asyncio.gather(*(c.post("/square", json={"x": i}) for i in range(3)))
    await app.shutdown()
    assert [r.json() for r in rs] == [0, 1, 4]
    assert model.batches == [[0], [1], [2]]


async def test_deployment_overrides_size_wait_and_queue(model: Model) -> None:
    app, c = await serve(model, BatchConfig(max_batch_size=2, max_wait_ms=0, max_queue=50))
    batcher = app.endpoints["/square"].batcher
    assert batcher is not None
    assert (batcher.max_batch_size, batcher.max_wait_s, batcher.max_queue) == (2, 0, 50)
    async with c:
        rs = await asyncio.gather(*(c.post("/square", json={"x": i}) for i in range(4)))
    await app.shutdown()
    assert sorted(r.json() for r in rs) == [0, 1, 4, 9]
    assert all(len(b) <= 2 for b in model.batches)


async def test_exception_types_in_the_output_union_are_not_part_of_the_schema(
        client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    out = doc["paths"]["/checked"]["post"]["responses"]["200"]["content"]["application/json"]
    assert out["schema"] == {"type": "integer"}


def test_serve_refuses_bad_batch_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from leptonic.photon.runner import serve as serve_process

    assert serve_process("builtin:echo", environ={"PHOTON_BATCH_SIZE": "zero"}) == 1
    assert "PHOTON_BATCH_SIZE='zero': must be an integer >= 1" in capsys.readouterr().err


async def test_adaptive_wait_from_the_handler_or_the_deployment(model: Model) -> None:
    class Adaptive(Photon):
        @handler(batch=4, adaptive_wait=True)
        def f(self, x: list[int]) -> list[int]:
            return x

    app = build_app(Adaptive(), ready=True)
    assert app.endpoints["/f"].batcher.adaptive  # type: ignore[union-attr]
    await app.shutdown()
    app = build_app(Adaptive(), ready=True, batching=BatchConfig(adaptive=False))
    assert not app.endpoints["/f"].batcher.adaptive  # type: ignore[union-attr]
    await app.shutdown()
    app = build_app(model, ready=True, batching=BatchConfig(adaptive=True))
    assert app.endpoints["/square"].batcher.adaptive  # type: ignore[union-attr]
    await app.shutdown()
