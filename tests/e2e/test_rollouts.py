"""Safe change and self-healing end to end: a real ``leptonic up``, real replica processes,
real HTTP under constant load, real SIGSTOP and kill -9.

Delays, intervals and probe periods are set short per deployment so the suite takes a
few minutes on a small shared machine; loads are a handful of clients on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import RunningPlatform
from tests.e2e.traffic import Traffic, create_svc_versions, replicas_by_pid, rollout, until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST_PROBES = ("--probe-period", "0.5", "--probe-timeout", "0.5")


def deploy(p: RunningPlatform, name: str, photon: str, replicas: int, *opts: str) -> None:
    p.cli("deployment", "create", "--name", name, "--photon", photon, "--replicas",
          str(replicas), *FAST_PROBES, "--drain-timeout", "10", *opts, "--timeout", "60")


def done(p: RunningPlatform, name: str, rollout_id: int) -> dict | None:
    st = rollout(p, name)
    if st["id"] == rollout_id and st["phase"] in ("Succeeded", "RolledBack", "Aborted"):
        return st
    return None


async def test_rolling_update_under_load_fails_nothing_and_ends_on_v2(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    create_svc_versions(p, tmp_path)
    deploy(p, "svc", "svc@1", 3)
    async with Traffic(p, "svc", concurrency=6) as traffic:
        await asyncio.sleep(1.0)
        p.cli("deployment", "update", "svc", "--photon", "svc@v2", "--strategy", "rolling",
              "--no-wait")
        st = await until(lambda: done(p, "svc", 1), 90, "the rolling update")
        finished = time.monotonic()
        await asyncio.sleep(1.5)
    load = traffic.load
    print(f"rolling update: {load.summary()}")
    assert st["phase"] == "Succeeded", st
    assert load.failed == [], load.summary()
    assert {1, 2} <= {a.version for a in load.answers}
    assert load.versions_after(finished + 0.5) == {2}, "every answer at the end is v2"
    reps = p.replicas("svc")
    assert len(reps) == 3
    assert {r["photon_version"] for r in reps} == {2}


async def test_failing_canary_is_rolled_back_automatically(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    create_svc_versions(p, tmp_path)
    deploy(p, "svc", "svc@1", 2)
    async with Traffic(p, "svc", concurrency=4) as traffic:
        await asyncio.sleep(2.0)
        # svc@3 is a v2 that answers 500 to one request in five
        p.cli("deployment", "update", "svc", "--photon", "svc@3", "--strategy", "canary",
              "--step-interval", "5", "--no-wait")
        st = await until(lambda: done(p, "svc", 1), 90, "the canary to be judged")
        rolled_back = time.monotonic()
        await asyncio.sleep(4.0)
    load = traffic.load
    print(f"failing canary: {load.summary()}; reason: {st['reason']}")
    assert st["phase"] == "RolledBack", st
    assert st["reason"].startswith("success-rate check failed at step 1/4 (10% of traffic)")
    assert len(load.failed) / load.total < 0.01, load.summary()
    assert load.versions_after(rolled_back + 1.0) == {1}, "the stable version serves on"
    events = p.api("GET", "/deployments/svc/events", params={"limit": 200}).json()
    (warning,) = [e for e in events if e["reason"] == "RolloutRolledBack"]
    assert warning["kind"] == "Warning"
    assert "success-rate" in warning["message"]
    assert re.search(r"canary \d+(\.\d+)?% over \d+ requests", warning["message"])
    d = p.api("GET", "/deployments/svc").json()
    assert d["status"]["rollout"] == "RolledBack"
    assert "success-rate check failed" in d["status"]["message"]
    await until(lambda: {r["photon_version"] for r in p.replicas("svc")} == {1}, 30,
                "the canary replica to be stopped")


async def test_blue_green_switch_and_rollback_fail_nothing(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    create_svc_versions(p, tmp_path)
    deploy(p, "svc", "svc@1", 2, "--strategy", "blue-green", "--smoke-path", "/echo",
           "--smoke-body", '{"text": "smoke"}', "--keep-old", "120")
    blue = {r["id"] for r in p.replicas("svc")}
    async with Traffic(p, "svc", concurrency=4) as traffic:
        await asyncio.sleep(1.0)
        p.cli("deployment", "update", "svc", "--photon", "svc@2", "--no-wait")
        st = await until(lambda: done(p, "svc", 1), 60, "the switch")
        switched = time.monotonic()
        await asyncio.sleep(1.5)
        assert traffic.load.versions_after(switched + 0.5) == {2}
        assert blue <= {r["id"] for r in p.replicas("svc")}, "blue is kept for rollback"
        started = time.monotonic()
        p.cli("deployment", "rollback", "svc")
        await until(lambda: done(p, "svc", 2), 30, "the rollback")
        rolled_back = time.monotonic()
        await asyncio.sleep(1.5)
    load = traffic.load
    print(f"blue-green: {load.summary()}; rollback took {rolled_back - started:.2f}s")
    assert st["phase"] == "Succeeded", st
    assert load.failed == [], load.summary()
    assert load.versions_after(rolled_back + 0.5) == {1}
    routed = p.api("GET", "/deployments/svc/routes").json()
    assert {r["id"] for r in routed["replicas"]} == blue, "the very same blue replicas"
    events = [e["reason"] for e in p.api("GET", "/deployments/svc/events",
                                         params={"limit": 200}).json()]
    assert "RollbackRequested" in events


async def test_autoscaling_up_down_to_zero_and_back(platform: RunningPlatform,
                                                    tmp_path: Path) -> None:
    p = platform
    create_svc_versions(p, tmp_path)
    deploy(p, "svc", "svc@1", 1, "--min-replicas", "0", "--max-replicas", "3",
           "--target-concurrency", "1", "--upscale-delay", "1", "--downscale-delay", "2",
           "--scale-to-zero-after", "4", "--look-back", "2")
    assert len(p.replicas("svc")) == 1

    def ready() -> int:
        return sum(r["state"] == "ready" for r in p.replicas("svc"))

    async with Traffic(p, "svc", "work", concurrency=3, pause_s=0.0,
                       body={"ms": 150}) as traffic:
        began = time.monotonic()
        await until(lambda: ready() == 3, 30, "three replicas under load")
        scaled_up = time.monotonic() - began
    rising = traffic.load
    # less load, still in flight: down to one replica; the busy one is not the one stopped
    async with Traffic(p, "svc", "work", concurrency=1, pause_s=0.0,
                       body={"ms": 150}) as traffic:
        began = time.monotonic()
        await until(lambda: len(p.replicas("svc")) == 1, 40, "one replica under less load")
        scaled_down = time.monotonic() - began
        await asyncio.sleep(0.5)
    falling = traffic.load
    print(f"autoscaling: 3 replicas {scaled_up:.1f}s after the load rose ({rising.summary()});"
          f" 1 replica {scaled_down:.1f}s after it fell ({falling.summary()})")
    assert rising.failed == []
    assert falling.failed == [], "scaling down failed no request in flight"
    await until(lambda: len(p.replicas("svc")) == 0, 40, "scale to zero once idle")
    d = p.api("GET", "/deployments/svc").json()
    assert d["status"]["phase"] == "Stopped"
    reasons = [e["message"] for e in p.api("GET", "/deployments/svc/events",
                                           params={"limit": 200}).json()
               if e["reason"] == "Scaled"]
    assert any("to 3 replica(s)" in m for m in reasons), reasons
    assert any("to 0 replica(s)" in m for m in reasons), reasons

    began = time.monotonic()
    async with httpx.AsyncClient(headers=p.headers, timeout=60) as client:
        r = await client.post(f"{p.url}/run/svc/echo", json={"text": "wake"})
    cold = time.monotonic() - began
    print(f"a request to the scaled-to-zero deployment answered in {cold:.2f}s")
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "wake", "version": 1}


async def test_hung_replica_is_replaced_and_failures_are_bounded(
        platform: RunningPlatform) -> None:
    p = platform
    deploy(p, "b", "builtin:echo", 2, "--liveness-failures", "3")
    by_pid = replicas_by_pid(p, "b")
    victim = min(by_pid)
    victim_id = by_pid[victim]["id"]

    def routed() -> set[str]:
        return {r["id"] for r in p.api("GET", "/deployments/b/routes").json()["replicas"]}

    def healthy() -> list[dict]:
        return [r for r in p.replicas("b") if r["state"] == "ready" and r["pid"] != victim]

    async with Traffic(p, "b", concurrency=4) as traffic:
        await asyncio.sleep(1.0)
        os.kill(victim, signal.SIGSTOP)            # alive, but answers nothing
        stopped = time.monotonic()
        try:
            await until(lambda: victim_id not in routed(), 20,
                        "the hung replica to leave the routes", interval=0.05)
            out_of_routes = time.monotonic() - stopped
            await until(lambda: len(healthy()) == 2, 30, "a replacement")
            replaced = time.monotonic() - stopped
            await asyncio.sleep(1.0)
        finally:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
    load = traffic.load
    print(f"SIGSTOP: out of the routes after {out_of_routes:.2f}s, replaced after "
          f"{replaced:.2f}s; {load.summary()}")
    assert victim_id in routed(), "restarted in the same slot, routed again"
    assert len(load.failed) <= max(3, load.total // 100), load.summary()
    events = p.api("GET", "/deployments/b/events", params={"limit": 200}).json()
    assert any(e["reason"] == "ReplicaCrashed" and "liveness" in e["message"]
               for e in events)


async def test_control_plane_kill9_mid_rollout_resumes_without_duplicates(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    create_svc_versions(p, tmp_path)
    deploy(p, "svc", "svc@1", 3, "--strategy", "canary", "--steps", "34,67",
           "--step-interval", "3")
    p.cli("deployment", "update", "svc", "--photon", "svc@2", "--no-wait")
    await until(lambda: rollout(p, "svc")["step"] >= 0, 30, "the first canary step")
    before = rollout(p, "svc")
    p.kill9()
    assert before["phase"] == "Progressing"
    p.start()
    st = await until(lambda: done(p, "svc", 1), 90, "the resumed rollout")
    assert st["phase"] == "Succeeded", st
    assert st["started_at"] == before["started_at"], "the same rollout, resumed"

    def settled() -> bool:
        reps = p.replicas("svc")
        return len(reps) == 3 and all(r["state"] == "ready" and r["photon_version"] == 2
                                      for r in reps)

    await until(settled, 30, "three v2 replicas")
    await asyncio.sleep(1.0)
    rows = {r["pid"] for r in p.replicas("svc")}
    assert p.runner_pids() == rows, "no duplicated or orphaned replica process"
    res = await p.load("svc", "echo", 60, concurrency=4)
    assert res.failed == []
    assert {b["version"] for b in res.bodies} == {2}
