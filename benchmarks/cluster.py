"""The Ray runtime against the local one, and how fast it heals and starts.

One run starts a Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
labelled ``tier=datacenter`` and two edge nodes, loopback only) and two platforms: one
``leptonic up`` on the local runtime and one with ``--runtime ray`` on that cluster. It
measures, in the same run:

* **throughput**: gateway -> one local replica vs gateway -> one Ray replica (on an edge
  node), JSON echo at fixed concurrency; the two are measured alternately, ``--runs``
  windows each, and the ratio of medians is reported (target >= 0.9);
* **node lost**: a one-replica edge deployment's node is removed hard
  (``remove_node(allow_graceful=False)``); seconds until a replacement answers its
  readiness on another edge node (``--failovers`` times; target <= 5 s; Ray alone sees a
  node die after ~15 s);
* **create -> first answer** on the Ray runtime (``--creates`` times; target <= 3 s).

Servers (Ray, both platforms, replicas) run on core 0, the load generator on core 1.

    python benchmarks/cluster.py --runs 5 --duration 8 --failovers 5 --creates 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import _loop_runner, free_port  # noqa: E402
from benchmarks.loadgen import run_load  # noqa: E402

SERVER_CPU, LOAD_CPU = 0, 1
BODY = b'{"text": "hello, leptonic"}'
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


class Platform:
    """One ``leptonic up`` in a temp data dir, pinned to the server core."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        self.port = free_port()
        self.data = tmp / f"data-{self.port}"
        self.log = (tmp / f"up-{self.port}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTONIC_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "leptonic", "up", "--data-dir", str(self.data), "--port",
             str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT,
            env={**env, **RAY_ENV}, start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"leptonic up {args} exited; see {self.log.name}")
            try:
                if (self.data / "admin-token").exists() and \
                        httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        token = (self.data / "admin-token").read_text().strip()
        self.headers = {"authorization": f"Bearer {token}"}
        self.api = httpx.Client(base_url=f"{self.url}/api/v1", headers=self.headers,
                                timeout=60)

    def deploy(self, name: str, **spec: Any) -> None:
        r = self.api.post("/deployments", json={"name": name, "photon": "builtin:echo",
                                                "replicas": 1, **spec})
        r.raise_for_status()

    def wait_ready(self, name: str, exclude_nodes: set[str] = frozenset(),  # type: ignore[assignment]
                   timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reps = self.api.get(f"/deployments/{name}/replicas").json()
            ready = [r for r in reps if r["state"] == "ready"
                     and r["node"] not in exclude_nodes]
            if ready:
                return dict(ready[0])
            time.sleep(0.02)
        raise TimeoutError(f"{name} not ready in {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        self.log.close()


def throughput(local: Platform, ray: Platform, args: argparse.Namespace) -> dict[str, Any]:
    local.deploy("echo")
    ray.deploy("echo", placement={"tier": "edge"}, resources={"cpu": 0.5})
    local.wait_ready("echo")
    ray.wait_ready("echo")
    loop_run = _loop_runner()
    out: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    for p in (local, ray):
        loop_run(run_load(f"{p.url}/run/echo/echo", BODY, args.concurrency,
                          duration_s=args.warmup, headers=p.headers))
    for i in range(args.runs):
        for name, p in (("local", local), ("ray", ray))[:: 1 if i % 2 == 0 else -1]:
            r = loop_run(run_load(f"{p.url}/run/echo/echo", BODY, args.concurrency,
                                  duration_s=args.duration, headers=p.headers))
            out[name].append({"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                              "errors": r.errors})
            print(f"  {name}: {r.rps:.0f} req/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms "
                  f"errors {r.errors}", file=sys.stderr)
    return out


def failovers(ray: Platform, cluster: Any, n: int) -> list[float]:
    """Remove the node of a one-replica edge deployment hard; time to a replacement that
    is ready on another node."""
    ray.deploy("fo", placement={"tier": "edge"}, resources={"cpu": 0.5})
    times = []
    for _ in range(n):
        first = ray.wait_ready("fo")
        node_id = next(x["id"] for x in ray.api.get("/nodes").json()
                       if x["name"] == first["node"])
        victim = next(w for w in cluster.worker_nodes if w.node_id == node_id)
        t0 = time.monotonic()
        cluster.remove_node(victim, allow_graceful=False)
        ray.wait_ready("fo", exclude_nodes={first["node"]})
        times.append(time.monotonic() - t0)
        print(f"  node lost -> replacement ready: {times[-1]:.2f} s", file=sys.stderr)
        cluster.add_node(num_cpus=2, labels={"tier": "edge"}, node_ip_address="127.0.0.1")
        time.sleep(1.0)
    return times


def creates(ray: Platform, n: int) -> list[float]:
    """``POST /deployments`` -> the first 200 through the gateway, on the Ray runtime."""
    times = []
    for i in range(n):
        name = f"cold-{i}"
        t0 = time.monotonic()
        ray.deploy(name, placement={"tier": "edge"}, resources={"cpu": 0.25})
        while True:
            try:
                r = httpx.post(f"{ray.url}/run/{name}/echo", headers=ray.headers,
                               json={"text": "x"}, timeout=30)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        times.append(time.monotonic() - t0)
        print(f"  create -> first answer: {times[-1]:.2f} s", file=sys.stderr)
        ray.api.delete(f"/deployments/{name}")
        time.sleep(1.0)
    return times


def report_throughput(tp: dict[str, list[dict[str, float]]]) -> None:
    med = {k: statistics.median(x["rps"] for x in v) for k, v in tp.items()}
    for kind in ("local", "ray"):
        runs = tp[kind]
        p50 = statistics.median(x["p50_ms"] for x in runs)
        p99 = statistics.median(x["p99_ms"] for x in runs)
        print(f"gateway -> {kind} replica: {med[kind]:.0f} req/s (p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms)")
    paired = [r["rps"] / x["rps"] for x, r in zip(tp["local"], tp["ray"], strict=True)]
    print(f"ray / local: {med['ray'] / med['local']:.3f} by the medians, "
          f"{statistics.median(paired):.3f} by the median of the {len(paired)} paired windows "
          f"(target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--creates", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.update(RAY_ENV)
    os.sched_setaffinity(0, {SERVER_CPU})        # Ray's processes inherit the server core
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "labels": {"tier": "datacenter"}, "node_ip_address": "127.0.0.1"})
    for _ in range(2):
        cluster.add_node(num_cpus=2, labels={"tier": "edge"}, node_ip_address="127.0.0.1")
    os.sched_setaffinity(0, {LOAD_CPU})          # the load generator: the other core
    tmp = Path(tempfile.mkdtemp(prefix="leptonic-cluster-bench-"))
    platforms: list[Platform] = []
    try:
        local = Platform([], tmp)
        platforms.append(local)
        ray = Platform(["--runtime", "ray", "--ray-address", cluster.address], tmp)
        platforms.append(ray)
        results: dict[str, Any] = {
            "throughput": throughput(local, ray, args) if args.runs else {}}
        local.stop()
        platforms.remove(local)
        results["create_s"] = creates(ray, args.creates)
        results["failover_s"] = failovers(ray, cluster, args.failovers)
    finally:
        for p in platforms:
            p.stop()
        cluster.shutdown()
    if results["throughput"]:
        report_throughput(results["throughput"])
    if results["failover_s"]:
        fo = results["failover_s"]
        print(f"node lost -> replacement ready: median {statistics.median(fo):.2f} s of "
              f"{len(fo)} (target <= 5 s)")
    if results["create_s"]:
        print(f"create -> first answer: median {statistics.median(results['create_s']):.2f}"
              f" s of {len(results['create_s'])} (target <= 3 s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
