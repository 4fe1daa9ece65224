"""The gateway in-process against real replica stand-ins on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from leptonic.gateway import Gateway, RouteTable, Upstream
from tests.unit.gateway.gateway_servers import (
    ABORT,
    UpstreamApp,
    closed_port,
    raw_server,
    scripted,
    serve,
)

Replicas = list[tuple[str, UpstreamApp, Any]]


@contextlib.asynccontextmanager
async def gateway_client(table: RouteTable, **kwargs: Any
                         ) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    kwargs.setdefault("rng", random.Random(7))
    gateway = Gateway(table, **kwargs)
    async with serve(gateway) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client, gateway
    await gateway.aclose()


def table_of(replicas: Replicas, name: str = "echo") -> RouteTable:
    return RouteTable({name: [Upstream(app.name, url) for url, app, _ in replicas]})


async def accepts(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return False
    writer.close()
    return True


def headers_of(payload: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in payload["headers"]}


async def test_request_and_response_pass_through(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, _):
        resp = await client.post(
            "/run/echo/echo/sub?x=1&y=two", content=b'{"text": "hi"}',
            headers={"content-type": "application/json", "x-custom": "kept",
                     "authorization": "Bearer platform-token", "connection": "x-hop",
                     "x-hop": "dropped", "x-request-id": "req-42"})
    assert resp.status_code == 200
    payload = resp.json()
    assert payload["method"] == "POST"
    assert payload["path"] == "/echo/sub"
    assert payload["query"] == "x=1&y=two"
    assert payload["body"] == '{"text": "hi"}'
    seen = headers_of(payload)
    assert seen["x-custom"] == "kept"
    assert seen["content-type"] == "application/json"
    assert "authorization" not in seen
    assert "x-hop" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-request-id"] == "req-42"
    upstream_url = dict((app.name, url) for url, app, _ in upstreams)[payload["replica"]]
    assert seen["host"] == upstream_url.removeprefix("http://")
    assert resp.headers["x-leptonic-replica"] == payload["replica"]
    assert resp.headers["x-upstream"] == payload["replica"]
    assert resp.headers["x-leptonic-request-id"] == "req-42"     # what feedback names


async def test_request_id_is_generated_when_absent(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, _):
        r1, r2 = await client.get("/run/echo/echo"), await client.get("/run/echo/echo")
    first, second = r1.json(), r2.json()
    ids = {headers_of(first)["x-request-id"], headers_of(second)["x-request-id"]}
    assert len(ids) == 2
    assert all(len(i) == 32 for i in ids)
    # the client gets the id the replica saw
    assert r1.headers["x-leptonic-request-id"] == headers_of(first)["x-request-id"]


@pytest.mark.parametrize("status", [201, 404, 500, 503])
async def test_replica_status_passes_through(upstreams: Replicas, status: int) -> None:
    async with gateway_client(table_of(upstreams)) as (client, _):
        resp = await client.get(f"/run/echo/status/{status}")
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["replica"] in ("a", "b")


async def test_replica_problem_json_passes_through_untouched(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, _):
        resp = await client.post("/run/echo/problem", json={})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json() == {"type": "about:blank", "title": "Invalid input", "status": 422,
                           "detail": "field 'text' is required"}


async def test_head_request_has_no_body(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, gateway):
        head = await client.head("/run/echo/echo")
        after = await client.get("/run/echo/echo")
    assert head.status_code == 200
    assert head.content == b""
    assert after.status_code == 200
    assert after.json()["method"] == "GET"
    assert gateway.outstanding == {}


async def test_token_is_required_when_authorize_is_set(upstreams: Replicas) -> None:
    seen: list[str | None] = []
    clients: set[str | None] = set()

    def authorize(token: str | None, deployment: str, client: str | None) -> bool:
        seen.append(token)
        clients.add(client)
        return token == "secret"

    async with gateway_client(table_of(upstreams), authorize=authorize) as (client, _):
        missing = await client.get("/run/echo/echo")
        wrong = await client.get("/run/echo/echo", headers={"authorization": "Bearer nope"})
        basic = await client.get("/run/echo/echo", headers={"authorization": "Basic secret"})
        good = await client.get("/run/echo/echo", headers={"authorization": "Bearer secret"})
    for resp in (missing, wrong, basic):
        assert resp.status_code == 401
        assert resp.headers["content-type"] == "application/problem+json"
        assert "Authorization: Bearer TOKEN" in resp.json()["detail"]
        assert resp.headers["www-authenticate"] == "Bearer"
    assert good.status_code == 200
    assert "authorization" not in headers_of(good.json())
    assert seen == [None, "nope", None, "secret"]
    assert clients == {"127.0.0.1"}      # the caller's address, for per-address limits


async def test_an_authorize_that_needs_io_is_awaited_and_the_loop_serves_meanwhile(
        upstreams: Replicas) -> None:
    """A check that must ask the store returns an awaitable (the platform's runs in a
    worker thread): the gateway awaits it, and other requests are served meanwhile."""
    release = asyncio.Event()

    async def slow_check(token: str | None) -> bool:
        await release.wait()
        return token == "slow"

    def authorize(token: str | None, deployment: str, client: str | None) -> Any:
        return slow_check(token) if token in ("slow", "slow-bad") else token == "fast"

    async with gateway_client(table_of(upstreams), authorize=authorize) as (client, _):
        slow = asyncio.create_task(client.get("/run/echo/echo",
                                              headers={"authorization": "Bearer slow"}))
        bad = asyncio.create_task(client.get("/run/echo/echo",
                                             headers={"authorization": "Bearer slow-bad"}))
        fast = await client.get("/run/echo/echo", headers={"authorization": "Bearer fast"})
        assert fast.status_code == 200          # served while the slow checks wait
        assert not slow.done()
        release.set()
        assert (await slow).status_code == 200
        assert (await bad).status_code == 401


async def test_unknown_deployment_is_404_naming_it(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, gateway):
        resp = await client.post("/run/nope/predict", json={})
        outside = await client.get("/elsewhere")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert "'nope'" in resp.json()["detail"]
    assert outside.status_code == 404
    assert outside.headers["content-type"] == "application/problem+json"
    assert gateway.registry.get_sample_value(
        "leptonic_gateway_requests_total", {"deployment": "(unknown)", "code": "404"}) == 1


async def test_deployment_without_ready_replica_is_503(upstreams: Replicas) -> None:
    table = table_of(upstreams)
    table.set_routes("empty", [])
    async with gateway_client(table) as (client, _):
        resp = await client.get("/run/empty/echo")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["retry-after"] == "1"
    assert "'empty'" in resp.json()["detail"]


async def test_oversized_body_is_413(upstreams: Replicas) -> None:
    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * 40

    async with gateway_client(table_of(upstreams), max_body_bytes=100) as (client, _):
        at_limit = await client.post("/run/echo/echo", content=b"x" * 100)
        declared = await client.post("/run/echo/echo", content=b"x" * 101)
        streamed = await client.post("/run/echo/echo", content=chunks(3))
        small_stream = await client.post("/run/echo/echo", content=chunks(2))
    assert at_limit.status_code == 200
    assert at_limit.json()["body"] == "x" * 100
    for resp in (declared, streamed):
        assert resp.status_code == 413
        assert resp.headers["content-type"] == "application/problem+json"
        assert "100 bytes" in resp.json()["detail"]
    assert small_stream.status_code == 200
    assert small_stream.json()["body"] == "x" * 80


async def test_refused_replica_is_retried_elsewhere_and_ejected(upstreams: Replicas) -> None:
    url, app, _ = upstreams[0]
    dead = Upstream("dead", f"http://127.0.0.1:{closed_port()}")
    table = RouteTable({"echo": [dead, Upstream(app.name, url)]})
    async with gateway_client(table) as (client, gateway):
        responses = [await client.get("/run/echo/echo") for _ in range(20)]
        ejected = gateway.ejected()
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.headers["x-leptonic-replica"] for r in responses} == {"a"}
    assert ejected == ["dead"]
    assert gateway.registry.get_sample_value(
        "leptonic_gateway_retries_total", {"deployment": "echo"}) >= 1


async def test_replica_going_away_under_load_fails_no_request() -> None:
    apps = [UpstreamApp("a"), UpstreamApp("b")]
    async with serve(apps[0]) as (url_a, _), serve(apps[1]) as (url_b, server_b):
        table = RouteTable({"echo": [Upstream("a", url_a), Upstream("b", url_b)]})
        async with gateway_client(table) as (client, gateway):
            async def burst(n: int) -> list[httpx.Response]:
                return await asyncio.gather(*(client.get("/run/echo/echo") for _ in range(n)))

            warm = await burst(16)          # pooled connections to both replicas
            assert {r.headers["x-leptonic-replica"] for r in warm} == {"a", "b"}
            server_b.should_exit = True      # b closes its connections and stops listening
            for _ in range(300):
                if not await accepts(url_b):
                    break
                await asyncio.sleep(0.01)
            after = await burst(32)
            ejected = gateway.ejected()
            retries = gateway.registry.get_sample_value(
                "leptonic_gateway_retries_total", {"deployment": "echo"})
    assert [r.status_code for r in after] == [200] * 32
    assert retries >= 1
    assert {r.headers["x-leptonic-replica"] for r in after} == {"a"}
    assert ejected == ["b"]


async def _misbehaving_and_a_good_replica(
        upstreams: Replicas, name: str, n: int, *steps: bytes | float | str
) -> tuple[list[httpx.Response], list[str]]:
    """``n`` requests at once to a deployment of a replica that follows ``steps`` and a
    good one; the answers, and which replicas the gateway ejected."""
    url, app, _ = upstreams[0]
    async with raw_server(scripted(*steps)) as (port, _):
        table = RouteTable({"echo": [Upstream(name, f"http://127.0.0.1:{port}"),
                                     Upstream(app.name, url)]})
        async with gateway_client(table) as (client, gateway):
            responses = await asyncio.gather(
                *(client.post("/run/echo/echo", content=b"{}") for _ in range(n)))
            ejected = gateway.ejected()
            assert gateway.outstanding == {}
    return responses, ejected


async def test_replica_resetting_connections_is_retried_elsewhere(upstreams: Replicas) -> None:
    # a replica killed mid-request: the connection reset before any byte
    responses, ejected = await _misbehaving_and_a_good_replica(upstreams, "resets", 16, ABORT)
    assert ejected == ["resets"]
    assert [r.status_code for r in responses] == [200] * 16
    assert {r.headers["x-leptonic-replica"] for r in responses} == {"a"}


async def test_replica_dying_between_headers_and_body_is_retried_elsewhere(
        upstreams: Replicas) -> None:
    # a replica SIGKILLed with its node, mid-answer: the headers reach the gateway alone
    responses, ejected = await _misbehaving_and_a_good_replica(
        upstreams, "dies", 8, b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n", 0.05, ABORT)
    assert ejected == ["dies"]
    assert [r.status_code for r in responses] == [200] * 8
    assert {r.headers["x-leptonic-replica"] for r in responses} == {"a"}


async def test_a_stream_cut_by_its_replica_cuts_the_client_connection() -> None:
    stream = scripted(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                      b"6\r\nfirst\n\r\n", 0.05, ABORT)
    async with raw_server(stream) as (port, _):
        table = RouteTable({"echo": [Upstream("s", f"http://127.0.0.1:{port}")]})
        async with gateway_client(table) as (client, _), \
                client.stream("GET", "/run/echo/stream") as resp:
            assert resp.status_code == 200     # sent on: too late to go elsewhere
            with pytest.raises(httpx.RemoteProtocolError):
                async for _ in resp.aiter_raw():
                    pass


async def test_all_replicas_failing_is_502() -> None:
    table = RouteTable({"echo": [Upstream("x", f"http://127.0.0.1:{closed_port()}"),
                                 Upstream("y", f"http://127.0.0.1:{closed_port()}")]})
    async with gateway_client(table, retries=2) as (client, gateway):
        resp = await client.post("/run/echo/echo", json={"a": 1})
    assert resp.status_code == 502
    assert resp.headers["content-type"] == "application/problem+json"
    assert "'echo'" in resp.json()["detail"]
    assert gateway.ejected() == ["x", "y"]
    assert gateway.outstanding == {}
    assert gateway.registry.get_sample_value(
        "leptonic_gateway_requests_total", {"deployment": "echo", "code": "502"}) == 1


async def test_stream_is_delivered_before_the_replica_finishes(upstreams: Replicas) -> None:
    url, app, _ = upstreams[0]
    table = RouteTable({"echo": [Upstream("a", url)]})
    async with gateway_client(table) as (client, gateway), \
            client.stream("GET", "/run/echo/stream") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        chunks = resp.aiter_raw()
        first = await asyncio.wait_for(chunks.__anext__(), 5)
        assert first == b"data: first\n\n"
        assert not app.stream_finished.is_set()
        assert gateway.outstanding == {"a": 1}
        app.release.set()
        rest = b"".join([c async for c in chunks])
    assert rest == b"data: second\n\n"
    assert gateway.outstanding == {}


async def test_client_leaving_a_stream_frees_the_replica_slot(upstreams: Replicas) -> None:
    url, app, _ = upstreams[0]
    table = RouteTable({"echo": [Upstream("a", url)]})
    async with gateway_client(table) as (client, gateway):
        async with client.stream("GET", "/run/echo/stream") as resp:
            await asyncio.wait_for(resp.aiter_raw().__anext__(), 5)
            assert gateway.outstanding == {"a": 1}
        await client.aclose()                      # drop the connection mid-stream
        for _ in range(300):
            if not gateway.outstanding:
                break
            await asyncio.sleep(0.01)
        assert gateway.outstanding == {}
        app.release.set()


async def test_busy_replica_gets_no_new_requests(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, gateway), \
            client.stream("GET", "/run/echo/stream") as streaming:
        busy = streaming.headers["x-leptonic-replica"]
        others = [(await client.get("/run/echo/echo")).headers["x-leptonic-replica"]
                  for _ in range(10)]
        assert gateway.outstanding == {busy: 1}
        for _, app, _ in upstreams:
            app.release.set()
    assert busy not in others
    assert len(set(others)) == 1


async def test_keep_alive_connection_is_reused(upstreams: Replicas) -> None:
    url, app, _ = upstreams[0]
    table = RouteTable({"echo": [Upstream("a", url)]})
    async with gateway_client(table) as (client, gateway):
        for _ in range(10):
            assert (await client.post("/run/echo/echo", content=b"{}")).status_code == 200
    assert gateway.client.connections_opened == 1
    assert len(app.client_ports) == 10
    assert len(set(app.client_ports)) == 1


async def test_metrics_count_requests_and_latency(upstreams: Replicas) -> None:
    async with gateway_client(table_of(upstreams)) as (client, gateway):
        for _ in range(3):
            await client.get("/run/echo/echo")
        await client.get("/run/echo/status/500")
    sample = gateway.registry.get_sample_value
    assert sample("leptonic_gateway_requests_total", {"deployment": "echo", "code": "200"}) == 3
    assert sample("leptonic_gateway_requests_total", {"deployment": "echo", "code": "500"}) == 1
    assert sample("leptonic_gateway_upstream_latency_seconds_count",
                  {"deployment": "echo"}) == 4
    assert sample("leptonic_gateway_in_flight_requests", {"deployment": "echo"}) == 0


def test_alerts_and_the_canary_analysis_read_one_histogram() -> None:
    from leptonic.core.analysis import LATENCY_BOUNDS_MS, histogram_quantile
    from leptonic.observe.series import read_gateway

    gateway = Gateway(RouteTable())
    latencies = [0.0007, 0.0042, 0.0042, 0.019, 0.2, 0.45, 0.7, 75.0]
    for i, seconds in enumerate(latencies):
        gateway._record("echo", "canary" if i % 2 else "stable", 200, seconds)
    # Prometheus: the analysis' bounds, both groups summed, a sum of the latencies
    sample = gateway.registry.get_sample_value
    assert sample("leptonic_gateway_upstream_latency_seconds_count",
                  {"deployment": "echo"}) == len(latencies)
    assert sample("leptonic_gateway_upstream_latency_seconds_sum",
                  {"deployment": "echo"}) == pytest.approx(sum(latencies))
    assert sample("leptonic_gateway_upstream_latency_seconds_bucket",
                  {"deployment": "echo", "le": "0.005"}) == 3
    assert sample("leptonic_gateway_upstream_latency_seconds_bucket",
                  {"deployment": "echo", "le": "60.0"}) == 7
    series = read_gateway(gateway.metrics.collect())["echo"]
    assert [le for le, _ in series.buckets] == [
        *(ms / 1000 for ms in LATENCY_BOUNDS_MS), float("inf")]
    # the series' (alerts', dashboard's) p99 and the analysis' p99 are one figure
    traffic = gateway.traffic("echo")
    assert set(traffic) == {"canary", "stable"}
    counts = [a + b for a, b in zip(traffic["canary"].buckets, traffic["stable"].buckets,
                                    strict=True)]
    for q in (0.5, 0.9, 0.99):
        from_series = histogram_quantile(q, series.buckets)
        from_analysis = type(traffic["canary"])(8, 0, tuple(counts)).quantile_ms(q)
        assert from_series is not None
        assert from_analysis is not None
        assert from_series * 1000 == pytest.approx(from_analysis)


async def test_route_changes_apply_to_the_next_request(upstreams: Replicas) -> None:
    (url_a, _, _), (url_b, _, _) = upstreams
    table = RouteTable({"echo": [Upstream("a", url_a)]})
    async with gateway_client(table) as (client, _):
        before = await client.get("/run/echo/echo")
        table.set_routes("echo", [Upstream("b", url_b)])
        after = await client.get("/run/echo/echo")
        table.remove("echo")
        gone = await client.get("/run/echo/echo")
    assert before.headers["x-leptonic-replica"] == "a"
    assert after.headers["x-leptonic-replica"] == "b"
    assert gone.status_code == 404


async def _full_replica(scope: Any, receive: Any, send: Any) -> None:
    """A replica at its concurrency limit: 503 marked saturated, before any work."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"x-leptonic-saturated", b"1"), (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": b'{"status":503}'})


async def test_a_saturated_replica_is_retried_on_another(upstreams: Replicas) -> None:
    url, app, _ = upstreams[0]
    async with serve(_full_replica) as (full_url, _):
        table = RouteTable({"echo": [Upstream("full", full_url), Upstream(app.name, url)]})
        async with gateway_client(table) as (client, gateway):
            responses = [await client.get("/run/echo/echo") for _ in range(20)]
            retried = gateway.registry.get_sample_value(
                "leptonic_gateway_retries_total", {"deployment": "echo"})
            assert gateway.ejected() == []       # full is not broken: it stays routed
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.headers["x-leptonic-replica"] for r in responses} == {"a"}
    assert retried is not None
    assert retried >= 1


async def test_every_replica_saturated_is_503_with_retry_after() -> None:
    async with serve(_full_replica) as (u1, _), serve(_full_replica) as (u2, _):
        table = RouteTable({"echo": [Upstream("f1", u1), Upstream("f2", u2)]})
        async with gateway_client(table) as (client, _gw):
            r = await client.get("/run/echo/echo")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert "concurrency limit" in r.json()["detail"]
