"""leptonic on a real multi-node Ray cluster (on one machine, loopback only).

One ``ray.cluster_utils.Cluster`` per module: a head labelled ``tier=datacenter`` and two
worker nodes labelled ``tier=edge``, all on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
=0``, token auth off). ``leptonic up --runtime ray --ray-address`` joins it. Tests that
remove a node add one back, so each starts from a head and two edge nodes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.harness import RunningPlatform, ray_named_actors, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


class Ray:
    """The module's cluster, with the edge nodes it has now."""

    def __init__(self) -> None:
        os.environ.update(RAY_ENV)
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "labels": {"tier": "datacenter"}, "node_ip_address": "127.0.0.1"})
        self.edges: list[Any] = []
        for _ in range(2):
            self.add_edge()

    def add_edge(self) -> Any:
        node = self.cluster.add_node(num_cpus=2, labels={"tier": "edge"},
                                     node_ip_address="127.0.0.1")
        self.edges.append(node)
        return node

    def remove(self, node: Any) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.edges.remove(node)

    def edge_ids(self) -> set[str]:
        return {n.node_id for n in self.edges}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Ray]:
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    r = Ray()
    try:
        yield r
    finally:
        r.cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def platform(cluster: Ray, tmp_path: Path) -> Iterator[RunningPlatform]:
    while len(cluster.edges) < 2:                   # a test before may have removed one
        cluster.add_edge()
    with running_platform(tmp_path / "data", RAY_ENV, ["--runtime", "ray", "--ray-address",
                                                      cluster.cluster.address]) as p:
        yield p
    # nothing of this platform may be left on the cluster
    left = [n for n in ray_named_actors(cluster.cluster.address, RAY_ENV) if n.startswith("lep-")]
    assert left == [], left


def nodes(p: RunningPlatform) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in p.api("GET", "/nodes").json()}


def wait_nodes(p: RunningPlatform, want: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {k: v for k, v in nodes(p).items() if v["status"] == "Ready"}
        if len(found) >= want:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"not {want} ready nodes: {nodes(p)}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def deploy_edge(p: RunningPlatform, name: str = "echo", replicas: int = 2) -> None:
    r = p.api("POST", "/deployments", json={
        "name": name, "photon": "builtin:echo", "replicas": replicas,
        "placement": {"tier": "edge"}, "resources": {"cpu": 0.5}})
    assert r.status_code == 201, r.text


def test_every_ray_node_is_a_leptonic_node_on_loopback(platform: RunningPlatform,
                                                       cluster: Ray) -> None:
    p = platform
    found = wait_nodes(p, 3)
    tiers = sorted(n["tier"] for n in found.values())
    assert tiers == ["datacenter", "edge", "edge"]
    assert {n["address"] for n in found.values()} == {"127.0.0.1"}
    assert {k for k, n in found.items() if n["tier"] == "edge"} == cluster.edge_ids()
    for n in found.values():
        assert n["capacity"]["cpu"] == 2.0
        assert n["capacity"]["memory_mb"] > 0
    deploy_edge(p)
    ready = p.wait_ready("echo", 2)
    # nothing of ours listens anywhere but loopback: the platform and its replicas
    ours = {p.proc.pid, *(r["pid"] for r in ready)}
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in ours:
            assert ipaddress.ip_address(conn.laddr.ip.removeprefix("::ffff:")).is_loopback, \
                conn


def test_edge_replicas_spread_and_survive_losing_a_node(platform: RunningPlatform,
                                                        cluster: Ray) -> None:
    p = platform
    wait_nodes(p, 3)
    deploy_edge(p)
    ready = p.wait_ready("echo", 2)
    by_node = {r["node"]: r for r in ready}
    assert len(by_node) == 2                       # two replicas, two different nodes
    edge_names = {n["name"] for n in nodes(p).values()
                  if n["tier"] == "edge" and n["status"] == "Ready"}
    assert set(by_node) == edge_names
    victim_node = next(n for n in cluster.edges)
    victim_name = next(n["name"] for n in nodes(p).values() if n["id"] == victim_node.node_id)
    victim_pid = by_node[victim_name]["pid"]

    removed_at: list[float] = []

    async def during(i: int) -> None:
        if i == 150:
            await asyncio.to_thread(cluster.remove, victim_node)
            removed_at.append(time.monotonic())
        await asyncio.sleep(0.005)

    result = asyncio.run(p.load("echo", "echo", 900, concurrency=4, during=during))
    assert result.failed == []
    assert result.ok == 900
    # both replicas ready again, on the surviving edge node; the lost one's process gone
    survivor = next(iter(edge_names - {victim_name}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = [r for r in p.replicas("echo") if r["state"] == "ready"]
        if len(ready) == 2 and {r["node"] for r in ready} == {survivor}:
            break
        time.sleep(0.2)
    assert sorted(r["node"] for r in ready) == [survivor, survivor]
    # the lost node's replica dies with its actor, which notices its raylet is gone
    # by itself: seconds later on a loaded machine
    deadline = time.monotonic() + 30
    while not gone(victim_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(victim_pid)
    assert nodes(p)[victim_node.node_id]["status"] == "NotReady"


def test_edge_only_deployment_waits_for_an_edge_node(platform: RunningPlatform,
                                                     cluster: Ray) -> None:
    p = platform
    wait_nodes(p, 3)
    for node in list(cluster.edges):
        cluster.remove(node)
    deadline = time.monotonic() + 20
    while any(n["status"] == "Ready" and n["tier"] == "edge" for n in nodes(p).values()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    deploy_edge(p, replicas=1)
    deadline = time.monotonic() + 20
    while True:
        d = p.api("GET", "/deployments/echo").json()
        if d["status"]["phase"] == "Unschedulable":
            break
        assert time.monotonic() < deadline, d["status"]
        time.sleep(0.2)
    assert d["status"]["message"].startswith("Unschedulable: no ready edge node with 0.5 CPU")
    cluster.add_edge()
    ready = p.wait_ready("echo", 1, timeout=60)
    assert nodes(p)[next(iter(cluster.edge_ids()))]["name"] == ready[0]["node"]


def test_control_plane_kill9_readopts_actors(platform: RunningPlatform,
                                             cluster: Ray) -> None:
    p = platform
    wait_nodes(p, 3)
    deploy_edge(p)
    before = {r["id"]: r["pid"] for r in p.wait_ready("echo", 2)}
    p.kill9()
    p.start()
    deadline = time.monotonic() + 30                # the new one leads once the lease ends
    while not p.api("GET", "/status").json()["leader"]:
        assert time.monotonic() < deadline, "the restarted control plane never led"
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while p.read_log().count("adopted replica") < 2:
        assert time.monotonic() < deadline, p.read_log()[-3000:]
        time.sleep(0.2)
    time.sleep(1.0)                                 # a few ticks of the new controller
    after = {r["id"]: r["pid"] for r in p.wait_ready("echo", 2)}
    assert after == before                          # same actors, no duplicate
    ours = [n for n in ray_named_actors(cluster.cluster.address, RAY_ENV) if n.startswith("lep-")]
    assert len(ours) == 2, ours
    r = httpx.post(f"{p.url}/run/echo/echo", headers=p.headers, json={"text": "x"})
    assert r.status_code == 200


def test_a_killed_replica_actor_is_replaced_with_no_failed_request(
        platform: RunningPlatform, cluster: Ray) -> None:
    """kill -9 of one replica's Ray actor process under load: its HTTP runner dies with it
    (PR_SET_PDEATHSIG), the gateway retries around it, and a new actor takes its place."""
    p = platform
    wait_nodes(p, 3)
    deploy_edge(p)
    ready = p.wait_ready("echo", 2)
    victim = ready[0]
    # the runner's nearest Ray ancestor is its actor (a sandbox may stand between them)
    actors = [a for a in psutil.Process(victim["pid"]).parents()
              if a.name().startswith("ray::") or "ray::" in " ".join(a.cmdline())]
    assert actors, "the runner runs under its actor"
    actor_pid = actors[0].pid
    killed_at: list[float] = []

    async def during(i: int) -> None:
        if i == 100:
            os.kill(actor_pid, signal.SIGKILL)
            killed_at.append(time.monotonic())
        await asyncio.sleep(0.005)

    result = asyncio.run(p.load("echo", "echo", 600, concurrency=4, during=during))
    assert result.failed == []
    assert result.ok == 600
    again = p.wait_ready("echo", 2, timeout=30, exclude_pids={victim["pid"]})
    replaced = time.monotonic() - killed_at[0]
    restarted = {r["id"]: r for r in again}.get(victim["id"])
    if restarted is not None:               # restarted in place, as a local replica is
        assert restarted["pid"] != victim["pid"]
        assert restarted["restarts"] >= 1, restarted
    deadline = time.monotonic() + 30
    while not gone(victim["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(victim["pid"]), "the runner died with its actor"
    print(f"killed replica actor: replaced within {replaced:.1f}s of the kill, "
          f"{result.ok} requests, 0 failed")


def test_cordon_and_drain_move_replicas_without_failures(platform: RunningPlatform,
                                                         cluster: Ray) -> None:
    p = platform
    wait_nodes(p, 3)
    deploy_edge(p, replicas=1)
    [first] = p.wait_ready("echo", 1)
    other = next(n for n in nodes(p).values() if n["tier"] == "edge"
                 and n["status"] == "Ready" and n["name"] != first["node"])
    assert p.api("POST", f"/nodes/{other['name']}/cordon").status_code == 200
    assert p.api("PATCH", "/deployments/echo", json={"replicas": 2}).status_code == 200
    ready = p.wait_ready("echo", 2)
    assert {r["node"] for r in ready} == {first["node"]}      # cordoned: nothing new there
    assert p.api("POST", f"/nodes/{other['name']}/uncordon").status_code == 200

    drained: list[bool] = []

    async def during(i: int) -> None:
        if i == 50:
            r = await asyncio.to_thread(p.api, "POST", f"/nodes/{first['node']}/drain")
            drained.append(r.status_code == 200)
        await asyncio.sleep(0.01)

    result = asyncio.run(p.load("echo", "echo", 600, concurrency=4, during=during))
    assert drained == [True]
    assert result.failed == []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = [r for r in p.replicas("echo") if r["state"] == "ready"]
        if len(ready) == 2 and {r["node"] for r in ready} == {other["name"]}:
            break
        time.sleep(0.2)
    assert {r["node"] for r in ready} == {other["name"]}
    assert nodes(p)[next(n["id"] for n in nodes(p).values()
                         if n["name"] == first["node"])]["status"] == "Draining"
    assert p.api("POST", "/nodes/no-such-node/cordon").status_code == 404


def test_an_unreachable_ray_address_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTONIC_")}
    res = subprocess.run(
        [sys.executable, "-m", "leptonic", "up", "--data-dir", str(tmp_path / "data"),
         "--port", "0", "--runtime", "ray", "--ray-address", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, env={**env, **RAY_ENV}, check=False)
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in last


def test_ray_replica_logs_reach_deployment_logs(platform: RunningPlatform) -> None:
    p = platform
    wait_nodes(p, 3)
    deploy_edge(p, replicas=1)
    [replica] = p.wait_ready("echo", 1)
    deadline = time.monotonic() + 15
    while True:
        out = p.cli("deployment", "logs", "echo").stdout
        if "serving photon" in out:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert f"serving photon Echo (replica {replica['id']}) at {replica['url']}" in out


def _edge_names(p: RunningPlatform) -> list[str]:
    return sorted(n["name"] for n in nodes(p).values() if n["tier"] == "edge"
                  and n["status"] in ("Ready", "Standby"))


def test_energy_placement_fills_one_edge_node_before_the_next(platform: RunningPlatform,
                                                              cluster: Ray) -> None:
    p = platform
    wait_nodes(p, 3)
    r = p.api("POST", "/deployments", json={
        "name": "packed", "photon": "builtin:echo", "replicas": 3, "resources": {"cpu": 0.5},
        "placement": {"tier": "edge", "policy": "energy"}})
    assert r.status_code == 201, r.text
    ready = p.wait_ready("packed", 3)
    assert len({x["node"] for x in ready}) == 1, ready      # 1.5 of one node's 2 CPU


def test_consolidation_moves_a_replica_with_no_failed_request_and_reports_energy(
        cluster: Ray, tmp_path: Path) -> None:
    while len(cluster.edges) < 2:
        cluster.add_edge()
    env = {**RAY_ENV, "LEPTONIC_CONSOLIDATE_PERIOD_S": "1", "LEPTONIC_STANDBY_AFTER_S": "2",
           "LEPTONIC_METRICS_INTERVAL": "1s"}
    with running_platform(tmp_path / "data", env, ["--runtime", "ray", "--ray-address",
                                                  cluster.cluster.address]) as p:
        wait_nodes(p, 3)
        a, b = _edge_names(p)
        for name in (a, b):          # servers, not 2-core toys: emptying one saves 100 W
            r = p.api("PUT", f"/nodes/{name}/power", json={"idle_w": 100, "max_w": 200})
            assert r.status_code == 200, r.text
        # one replica on each edge node, by cordoning the other in turn
        assert p.api("POST", f"/nodes/{b}/cordon").status_code == 200
        r = p.api("POST", "/deployments", json={
            "name": "echo", "photon": "builtin:echo", "replicas": 1,
            "resources": {"cpu": 0.5}, "placement": {"tier": "edge", "policy": "energy"}})
        assert r.status_code == 201, r.text
        p.wait_ready("echo", 1)
        assert p.api("POST", f"/nodes/{b}/uncordon").status_code == 200
        assert p.api("POST", f"/nodes/{a}/cordon").status_code == 200
        assert p.api("PATCH", "/deployments/echo", json={"replicas": 2}).status_code == 200
        ready = p.wait_ready("echo", 2)
        assert sorted(x["node"] for x in ready) == [a, b]

        async def during(i: int) -> None:
            if i == 20:
                await asyncio.to_thread(p.api, "POST", f"/nodes/{a}/uncordon")
            await asyncio.sleep(0.02)

        result = asyncio.run(p.load("echo", "echo", 500, concurrency=2, during=during))
        assert result.failed == []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = [x for x in p.replicas("echo") if x["state"] == "ready"]
            states = {n["name"]: n["status"] for n in nodes(p).values()}
            if len(ready) == 2 and len({x["node"] for x in ready}) == 1 and \
                    "Standby" in (states[a], states[b]):
                break
            time.sleep(0.3)
        assert len({x["node"] for x in ready}) == 1, (ready, states)
        emptied = a if states[a] == "Standby" else b
        reasons = [e["reason"] for e in p.api("GET", "/events",
                                              params={"object": f"node/{emptied}"}).json()]
        assert "Consolidating" in reasons, reasons
        assert "NodeStandby" in reasons, reasons
        # energy figures: in /metrics and from the API
        deadline = time.monotonic() + 30          # accounted once per observe cycle
        while True:
            metrics = httpx.get(f"{p.url}/metrics", headers=p.headers).text
            if 'leptonic_deployment_energy_joules_total{deployment="echo"}' in metrics or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "leptonic_node_power_watts{" in metrics
        assert 'leptonic_deployment_energy_joules_total{deployment="echo"}' in metrics
        energy = p.api("GET", "/energy", params={"since": "1h"})
        assert energy.status_code == 200, energy.text


def test_a_ray_replica_is_isolated_from_the_platform(platform: RunningPlatform,
                                                     tmp_path: Path) -> None:
    """A hostile photon as a Ray replica reads nothing of the platform (admin token,
    secret key, database, the control plane's environment), writes nothing into the data
    dir, and has neither Ray's nor the platform's settings in its environment; as root it
    runs under a uid of its own."""
    p = platform
    wait_nodes(p, 3)
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "photons" / "hostile.py", folder / "app.py")
    p.cli("photon", "create", "--name", "hostile", "-m", "app.py:Hostile", "--path",
          str(folder))
    r = p.api("POST", "/deployments", json={
        "name": "hostile", "photon": "hostile", "replicas": 1,
        "placement": {"tier": "edge"}, "resources": {"cpu": 0.5}})
    assert r.status_code == 201, r.text
    [replica] = p.wait_ready("hostile", 1)
    data = p.data_dir
    reads = [str(data / "admin-token"), str(data / "secret-key"), str(data / "leptonic.db"),
             f"/proc/{p.proc.pid}/environ"]
    writes = [str(data / "pwned")]
    got = httpx.post(f"{p.url}/run/hostile/probe", headers=p.headers, timeout=30,
                     json={"read": reads, "write": writes})
    assert got.status_code == 200, got.text
    seen = got.json()
    for path in reads + writes:
        assert seen[path].startswith("denied"), (path, seen[path])
    assert p.token not in got.text
    assert not (data / "pwned").exists()
    env = seen["env"].split()
    assert not [k for k in env if k.startswith("RAY_")          # but the loopback switch
                and k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"], env
    assert not [k for k in env if k.startswith("LEPTONIC_")
                and k not in ("LEPTONIC_REPLICA_ID", "LEPTONIC_DEPLOYMENT")], env
    if shutil.which("bwrap"):                 # its own pid namespace: no Ray, no platform
        assert str(p.proc.pid) not in seen["pids"].split()
    if os.geteuid() == 0:
        assert seen["uid"] != "0"
    assert psutil.Process(replica["pid"]).cmdline()[2] == "leptonic.photon.runner"


def test_a_ray_replica_over_its_memory_limit_is_oomkilled(platform: RunningPlatform,
                                                          tmp_path: Path) -> None:
    p = platform
    wait_nodes(p, 3)
    folder = tmp_path / "hog"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "photons" / "hostile.py", folder / "app.py")
    p.cli("photon", "create", "--name", "hog", "-m", "app.py:Hostile", "--path", str(folder))
    p.cli("deployment", "create", "--name", "hog", "--photon", "hog", "--tier", "edge",
          "--cpu", "0.5", "--memory-limit", "300Mi")
    p.wait_ready("hog", 1)
    r = httpx.post(f"{p.url}/run/hog/hog", headers=p.headers, timeout=60,
                   json={"mb_per_step": 20, "steps": 60})
    assert r.status_code >= 500            # the replica died under it
    deadline = time.monotonic() + 30
    events = ""
    while time.monotonic() < deadline:
        events = p.cli("deployment", "events", "hog", "--output", "json").stdout
        if "OOMKilled" in events:
            break
        time.sleep(0.3)
    assert "OOMKilled" in events
    assert "300 MiB" in events
