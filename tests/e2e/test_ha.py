"""Two control planes on one PostgreSQL: one leads, both serve; kill -9 the leader and the
other takes over within a lease period, adopting the replicas, while traffic keeps flowing
through its gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import RunningPlatform, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
LEASE_S = 4.0


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[RunningPlatform,
                                                              RunningPlatform]]:
    env = {"LEPTONIC_DATABASE_URL": postgres_url, "LEPTONIC_LEASE_SECONDS": str(LEASE_S)}
    data = tmp_path / "data"           # shared: artifacts, logs, the admin token
    a = RunningPlatform(data, free_port(), extra_env=env)
    b = RunningPlatform(data, free_port(), extra_env=env)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        for p in (a, b):
            p.stop()
        a.kill_all_runners()


def status(p: RunningPlatform) -> dict:
    return p.api("GET", "/status").json()


def wait_for(check, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


async def steady_load(url: str, headers: dict, stop: asyncio.Event,
                      failures: list[str]) -> int:
    ok = 0
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        while not stop.is_set():
            try:
                r = await client.post(url, json={"text": "ha"})
                if r.status_code == 200:
                    ok += 1
                else:
                    failures.append(f"HTTP {r.status_code}: {r.text[:120]}")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)
    return ok


async def test_leader_kill9_follower_takes_over(pair) -> None:
    a, b = pair
    assert status(a)["leader"] is True
    assert status(b)["leader"] is False
    assert status(b)["database"] == "postgresql"

    a.cli("deployment", "create", "--name", "ha", "--photon", "builtin:echo",
          "--replicas", "2")
    before = {r["pid"] for r in a.wait_ready("ha", 2)}
    # the follower's gateway serves from the route table the leader keeps in the store
    wait_for(lambda: httpx.post(f"{b.url}/run/ha/echo", headers=b.headers,
                                json={"text": "x"}).status_code == 200, 10, "follower serves")

    stop, failures = asyncio.Event(), []
    load = asyncio.create_task(steady_load(f"{b.url}/run/ha/echo", b.headers, stop,
                                           failures))
    await asyncio.sleep(1.0)
    os.kill(a.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    deadline = killed_at + 3 * LEASE_S
    while time.monotonic() < deadline:
        if (await asyncio.to_thread(status, b))["leader"]:
            break
        await asyncio.sleep(0.1)
    takeover = time.monotonic() - killed_at
    assert (await asyncio.to_thread(status, b))["leader"], "the follower never took over"
    assert takeover <= LEASE_S + LEASE_S / 3 + 1.0, f"takeover took {takeover:.1f}s"
    await asyncio.sleep(2.0)           # traffic after the takeover too
    stop.set()
    ok = await load
    assert failures == []
    assert ok > 50

    # the replicas were adopted, not duplicated or lost
    after = {r["pid"] for r in b.wait_ready("ha", 2)}
    assert after == before
    assert b.runner_pids() == before
    # and the new leader manages them
    b.cli("deployment", "scale", "ha", "--replicas", "3")
    assert len(b.wait_ready("ha", 3, timeout=30)) == 3
    print(f"takeover after kill -9: {takeover:.2f}s (lease {LEASE_S}s), "
          f"{ok} requests through the survivor, 0 failed")


SLOW = '''
import asyncio

from leptonic import Photon, handler


class Slow(Photon):
    @handler
    async def work(self, ms: int = 200) -> int:
        await asyncio.sleep(ms / 1000)
        return ms
'''


async def _through(p: RunningPlatform, path: str, body: dict, clients: int,
                   stop: asyncio.Event, failures: list[str]) -> int:
    ok = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal ok
        while not stop.is_set():
            try:
                r = await client.post(f"{p.url}{path}", json=body)
                if r.status_code == 200:
                    ok += 1
                else:
                    failures.append(f"HTTP {r.status_code}: {r.text[:120]}")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    async with httpx.AsyncClient(headers=p.headers, timeout=30) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))
    return ok


async def test_traffic_through_the_follower_only_scales_and_judges_a_canary(
        pair, tmp_path: Path) -> None:
    """The leader's autoscaler and canary analysis see the requests the follower's
    gateway served: no request goes through the leader's."""
    a, b = pair
    assert status(b)["leader"] is False
    code = tmp_path / "code"             # not tmp_path: the shared data dir is in it
    code.mkdir()
    (code / "slow.py").write_text(SLOW)
    a.cli("photon", "create", "--name", "slow", "-m", f"{code / 'slow.py'}:Slow")
    a.cli("deployment", "create", "--name", "auto", "--photon", "slow", "--min-replicas", "1",
          "--max-replicas", "3", "--target-concurrency", "1", "--upscale-delay", "0",
          "--look-back", "3")
    a.cli("deployment", "create", "--name", "cn", "--photon", "builtin:echo", "--replicas",
          "2", "--strategy", "canary", "--steps", "50,100", "--step-interval", "3",
          "--min-requests", "20")
    a.wait_ready("cn", 2)
    for name, path in (("auto", "/run/auto/work"), ("cn", "/run/cn/echo")):
        body = {"text": "x"} if name == "cn" else {}
        wait_for(lambda path=path, body=body: httpx.post(
            f"{b.url}{path}", headers=b.headers, json=body, timeout=5).status_code == 200,
            30, f"the follower serving {name}")
    stop, failures = asyncio.Event(), []
    loads = [asyncio.create_task(_through(b, "/run/auto/work", {"ms": 200}, 6, stop,
                                          failures)),
             asyncio.create_task(_through(b, "/run/cn/echo", {"text": "c"}, 2, stop,
                                          failures))]
    try:
        deadline = time.monotonic() + 60
        while a.api("GET", "/deployments/auto").json()["status"]["desired_replicas"] < 2:
            assert time.monotonic() < deadline, "the leader never saw the follower's load"
            await asyncio.sleep(0.2)
        a.cli("deployment", "update", "cn", "--env", "V=2", "--no-wait")
        deadline = time.monotonic() + 90
        while True:
            ro = a.api("GET", "/deployments/cn/rollout").json()["status"]
            if ro["id"] >= 1 and ro["phase"] in ("Succeeded", "RolledBack", "Aborted"):
                break
            assert time.monotonic() < deadline, f"the canary was never judged: {ro}"
            await asyncio.sleep(0.3)
        # the leader's built-in series count what the follower served
        deadline = time.monotonic() + 30
        while ((a.api("GET", "/metrics/latest").json()["series"].get("deployment/auto")
                or {}).get("requests_per_s") or 0) <= 0:
            assert time.monotonic() < deadline, "the follower's requests not in the series"
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        served = await asyncio.gather(*loads)
    assert failures == []
    assert ro["phase"] == "Succeeded", ro
    judged = [c for c in ro["analysis"] if c["name"] == "success-rate"]
    assert judged
    assert judged[-1]["requests"] >= 20, judged
    assert judged[-1]["passed"] is True
    assert sum(served) > 0
