"""Refused requests are answered as problem+json and counted, with a bounded label set:
a refusal for a deployment that has no route does not mint a series of its name."""

from __future__ import annotations

import time

import httpx

from leptonic.gateway import Gateway, RouteTable, Upstream
from leptonic.gateway.proxy import UNKNOWN_DEPLOYMENT, Refusal

SERIES = "leptonic_gateway_requests_total"


def authorize(token: str | None, deployment: str, client: str | None) -> Refusal | bool:
    if token == "scoped":
        return Refusal(403, "Forbidden", "this token may only call deployment 'other'")
    if token == "flood":
        return Refusal(429, "Too many requests", "slow down", ((b"retry-after", b"3"),),
                       delay_s=0.05)
    return token == "good"


def count(gateway: Gateway, deployment: str, code: int) -> float:
    value = gateway.registry.get_sample_value(
        SERIES, {"deployment": deployment, "code": str(code)})
    return value or 0.0


async def test_401_403_429_and_413_are_counted_by_deployment() -> None:
    table = RouteTable({"echo": [Upstream("echo-0", "http://127.0.0.1:9")]})
    gateway = Gateway(table, authorize=authorize, max_body_bytes=10)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        missing = await client.post("/run/echo/x")
        scoped = await client.post("/run/echo/x", headers={"authorization": "Bearer scoped"})
        started = time.monotonic()
        flood = [await client.post("/run/echo/x", headers={"authorization": "Bearer flood"})
                 for _ in range(3)]
        held = time.monotonic() - started
        big = await client.post("/run/echo/x", headers={"authorization": "Bearer good"},
                                content=b"x" * 11)
        for n in range(5):      # names nobody deployed, refused before the route lookup
            await client.post(f"/run/made-up-{n}/x")
    assert missing.status_code == 401
    assert scoped.status_code == 403
    assert {r.status_code for r in flood} == {429}
    assert flood[0].headers["retry-after"] == "3"
    assert held >= 3 * 0.05                          # each answer held for its delay
    assert flood[0].headers["content-type"] == "application/problem+json"
    assert big.status_code == 413
    assert count(gateway, "echo", 401) == 1
    assert count(gateway, "echo", 403) == 1
    assert count(gateway, "echo", 429) == 3
    assert count(gateway, "echo", 413) == 1
    assert count(gateway, UNKNOWN_DEPLOYMENT, 401) == 5
    labels = {s.labels["deployment"] for m in gateway.registry.collect()
              if m.name == SERIES.removesuffix("_total") for s in m.samples}
    assert labels == {"echo", UNKNOWN_DEPLOYMENT}
    await gateway.aclose()
