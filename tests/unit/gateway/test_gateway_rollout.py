"""The gateway's part in rollouts and autoscaling: weighted splits, per-template traffic
counters, requests held for a deployment scaled to zero."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from leptonic.gateway import RouteTable, Upstream
from leptonic.gateway.routes import Hold, Route
from tests.unit.gateway.gateway_servers import closed_port
from tests.unit.gateway.test_gateway_proxy import Replicas, gateway_client


def split_table(upstreams: Replicas, weights: dict[str, float]) -> RouteTable:
    (url_a, a, _), (url_b, b, _) = upstreams
    table = RouteTable()
    table.set_routes("echo", [Upstream(a.name, url_a, group="1"),
                              Upstream(b.name, url_b, group="2")], weights)
    return table


def test_route_split_keeps_only_weighted_groups_with_upstreams() -> None:
    ups = [Upstream("a", "http://h:1", "1"), Upstream("b", "http://h:2", "2"),
           Upstream("c", "http://h:3", "3")]
    route = Route.of("echo", ups, {"1": 90, "2": 10})
    assert route.ids == ("a", "b"), "group 3 has no weight: no traffic"
    assert route.split == ((90.0, ("a",)), (100.0, ("b",)))
    assert Route.of("echo", ups[:1], {"1": 90, "2": 10}).split == (), "one group: no split"
    assert Route.of("echo", ups).split == ()
    assert Route.of("echo", ups, {"2": 100}).ids == ("b",)


async def test_weighted_split_sends_the_asked_share(upstreams: Replicas) -> None:
    async with gateway_client(split_table(upstreams, {"1": 80, "2": 20})) as (client, gw):
        seen: list[str] = []
        for _ in range(20):
            batch = await asyncio.gather(*(client.get("/run/echo/echo") for _ in range(20)))
            seen += [r.headers["x-leptonic-replica"] for r in batch]
        share = seen.count("b") / len(seen)
        assert 0.13 < share < 0.27
        traffic = gw.traffic("echo")
    assert traffic["1"].requests + traffic["2"].requests == 400
    assert traffic["2"].requests == seen.count("b")
    assert traffic["1"].errors == 0
    assert sum(traffic["1"].buckets) == traffic["1"].requests


async def test_traffic_counts_5xx_per_group(upstreams: Replicas) -> None:
    async with gateway_client(split_table(upstreams, {"1": 50, "2": 50})) as (client, gw):
        for _ in range(20):
            await client.get("/run/echo/status/500")
            await client.get("/run/echo/status/404")
        traffic = gw.traffic("echo")
    assert sum(t.requests for t in traffic.values()) == 40
    assert sum(t.errors for t in traffic.values()) == 20, "4xx are the client's, not errors"


async def test_an_empty_weighted_group_falls_back_to_the_others(upstreams: Replicas) -> None:
    (url_a, a, _), _ = upstreams
    table = RouteTable()
    dead = Upstream("dead", f"http://127.0.0.1:{closed_port()}", group="2")
    table.set_routes("echo", [Upstream(a.name, url_a, group="1"), dead], {"1": 1, "2": 99})
    async with gateway_client(table) as (client, gw):
        codes = [(await client.get("/run/echo/echo")).status_code for _ in range(20)]
    assert codes == [200] * 20, "a dead canary's requests are retried on the stable set"
    assert gw.traffic("echo")["1"].requests == 20


async def test_held_request_is_served_once_a_replica_is_ready(upstreams: Replicas) -> None:
    (url_a, a, _), _ = upstreams
    table = RouteTable()
    table.set_routes("echo", [], hold=Hold(max_queued=5, timeout_s=10))
    woken: list[str] = []
    async with gateway_client(table, on_hold=woken.append) as (client, gw):
        pending = asyncio.create_task(client.get("/run/echo/echo"))
        for _ in range(100):
            if gw.waiting("echo"):
                break
            await asyncio.sleep(0.01)
        assert gw.waiting("echo") == 1
        assert woken == ["echo"]
        table.set_routes("echo", [], hold=Hold(5, 10))      # still nothing: keeps waiting
        await asyncio.sleep(0.05)
        assert not pending.done()
        table.set_routes("echo", [Upstream(a.name, url_a)], hold=Hold(5, 10))
        resp = await asyncio.wait_for(pending, 5)
        assert resp.status_code == 200
        assert gw.waiting("echo") == 0
        assert gw.arrived("echo") == 1


async def test_hold_times_out_and_is_bounded() -> None:
    table = RouteTable()
    table.set_routes("echo", [], hold=Hold(max_queued=1, timeout_s=0.3))
    async with gateway_client(table) as (client, gw):
        first = asyncio.create_task(client.get("/run/echo/echo"))
        for _ in range(100):
            if gw.waiting("echo"):
                break
            await asyncio.sleep(0.01)
        full = await client.get("/run/echo/echo")
        assert full.status_code == 503
        assert "already wait" in full.json()["detail"]
        late = await first
    assert late.status_code == 503
    assert "within 0.3s" in late.json()["detail"]
    assert late.headers["retry-after"] == "1"


@pytest.mark.parametrize("hold", [None, Hold(1, 5)])
async def test_a_deleted_deployment_does_not_hold(hold: Hold | None) -> None:
    table = RouteTable()
    table.set_routes("echo", [], hold=hold)
    async with gateway_client(table) as (client, _):
        pending = asyncio.create_task(client.get("/run/echo/echo"))
        await asyncio.sleep(0.05)
        table.remove("echo")
        resp: httpx.Response = await asyncio.wait_for(pending, 5)
    assert resp.status_code == 503
