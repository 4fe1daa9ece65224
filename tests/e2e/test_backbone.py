"""The backbone end to end: a real ``leptonic up``, real replica processes, real kill -9."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from tests.e2e.harness import RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_deploy_serve_survive_replica_kill_and_platform_restart(
        platform: RunningPlatform) -> None:
    p = platform
    p.cli("photon", "create", "--name", "echo", "-m", "app.py:Echo")
    out = p.cli("deployment", "create", "--name", "echo", "--photon", "echo", "--replicas", "2")
    assert "echo" in out.stdout
    ready = p.wait_ready("echo", 2, timeout=10)   # the CLI waited; they are ready now

    res = await p.load("echo", "echo", 500, concurrency=16)
    assert res.failed == []
    assert res.ok == 500
    assert set(res.replicas) == {r["id"] for r in ready}, "both replicas take traffic"

    # kill -9 one replica while a bounded load runs: no request fails
    victim = ready[0]["pid"]
    killed = asyncio.Event()

    async def kill_at_100(i: int) -> None:
        if i == 100:
            os.kill(victim, signal.SIGKILL)
            killed.set()
        if i % 50 == 0:
            await asyncio.sleep(0.05)      # stretch the run past the restart

    res = await p.load("echo", "echo", 800, concurrency=8, during=kill_at_100)
    assert killed.is_set()
    assert res.failed == []
    assert res.ok == 800
    replaced = p.wait_ready("echo", 2, timeout=20, exclude_pids={victim})
    assert victim not in {r["pid"] for r in replaced}
    assert any(r["restarts"] >= 1 for r in replaced)
    events = p.api("GET", "/deployments/echo/events").json()
    assert any(e["reason"] == "ReplicaCrashed" for e in events)

    # a clean restart of the platform brings the deployment back with no manual step
    assert p.stop() == 0
    assert p.runner_pids() == set(), "a clean stop takes its replicas with it"
    p.start()
    p.wait_ready("echo", 2, timeout=30)
    res = await p.load("echo", "echo", 100, concurrency=8)
    assert res.failed == []
    photons = p.api("GET", "/photons/echo").json()
    assert [v["version"] for v in photons["versions"]] == [1]


async def test_control_plane_kill9_readopts_replicas(platform: RunningPlatform) -> None:
    p = platform
    p.cli("deployment", "create", "--name", "b", "--photon", "builtin:echo", "--replicas", "2")
    before = {r["pid"] for r in p.wait_ready("b", 2)}
    assert p.runner_pids() == before
    p.kill9()
    assert p.runner_pids() == before, "replicas outlive a crashed control plane"
    p.start()
    after = {r["pid"] for r in p.wait_ready("b", 2, timeout=20)}
    assert after == before, "re-adopted, not restarted"
    await asyncio.sleep(1.0)
    assert p.runner_pids() == before, "no duplicate replica was started"
    res = await p.load("b", "echo", 100, concurrency=4)
    assert res.failed == []


def test_crashing_photon_reports_crashloop_with_its_error(
        platform: RunningPlatform, tmp_path) -> None:
    p = platform
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "app.py").write_text(
        "from leptonic import Photon, handler\n\n"
        "class Bad(Photon):\n"
        "    def init(self):\n"
        "        raise RuntimeError('weights file is missing')\n\n"
        "    @handler\n"
        "    def hi(self) -> str:\n"
        "        return 'hi'\n")
    p.cli("photon", "create", "--name", "bad", "-m", "app.py:Bad", "--path", str(bad))
    res = p.cli("deployment", "create", "--name", "bad", "--photon", "bad", "--timeout", "60",
                check=False)
    assert res.returncode != 0
    assert "weights file is missing" in res.stderr
    d = p.api("GET", "/deployments/bad").json()
    assert d["status"]["phase"] == "CrashLoop"
    assert "weights file is missing" in d["status"]["last_error"]
    r = httpx.post(f"{p.url}/run/bad/hi", headers=p.headers, json={})
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "bad" in r.json()["detail"]
