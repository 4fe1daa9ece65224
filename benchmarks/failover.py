"""How fast leptonic heals and starts: kill -9 of a replica under load, and cold starts.

Against one ``leptonic up`` (pinned to core 0 with its replicas; this process on core 1)
serving ``builtin:echo`` with 2 replicas and a constant load of idempotent calls
(``--concurrency`` clients, one request after another), each run:

* kills one replica with SIGKILL (one that has not failed lately, so each run is a first
  failure and not a crash loop's growing backoff) and measures
  (a) the time until the gateway's route table no longer has it (polled every 5 ms through
      ``GET /api/v1/deployments/echo/routes``), and how many requests the gateway sent to
      the dead replica meanwhile and retried on the other one (``leptonic_gateway_retries``),
  (b) the time until a replacement is ready (the slot's new process passed its readiness
      probe), and
  (c) the requests that failed from the kill until the replacement was ready;
* creates a deployment of ``builtin:echo`` and measures the time from ``POST
  /deployments`` to the first successful answer (the client retries every 10 ms), and
* calls a deployment scaled to zero (``min_replicas 0``) once: the gateway holds the
  request while a replica starts, and the time to its answer is the cold start a caller
  sees.

With ``--peer-python`` (a venv with ``ray[serve]``) it also times Ray Serve's first answer
on the same machine: from ``serve.run`` of the same JSON echo, and from process start.

    python benchmarks/failover.py [--runs 5] [--concurrency 8] [--peer-python /tmp/peers/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.gateway import LOAD_CPU, Context  # noqa: E402
from benchmarks.loadgen import pin_to_cpu  # noqa: E402


@dataclass
class Run:
    out_of_routes_ms: float
    replacement_ready_ms: float
    failed: int
    retried: int
    requests: int
    create_to_answer_ms: float
    scale_from_zero_ms: float


@dataclass
class Load:
    """Idempotent echo calls at fixed concurrency; every outcome with its time."""

    url: str
    headers: dict[str, str]
    concurrency: int
    outcomes: list[tuple[float, bool]] = field(default_factory=list)   # (end time, ok)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(headers=self.headers, timeout=30, limits=limits) as c:
            await asyncio.gather(*(self._client(c) for _ in range(self.concurrency)))

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                r = await client.post(self.url, json={"text": "hello, leptonic"})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            self.outcomes.append((time.monotonic(), ok))

    def stop(self) -> None:
        self._stop.set()


def retries(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("leptonic_gateway_retries_total{"))


async def poll(fn: Any, within: float, what: str, interval: float = 0.005) -> float:
    """Await ``fn()`` (sync) turning true; the monotonic time it did."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(fn):
            return time.monotonic()
        await asyncio.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


async def one_run(ctx: Context, base: str, i: int, concurrency: int) -> Run:
    api = ctx.api
    load = Load(f"{base}/run/echo/echo", ctx.headers, concurrency)
    task = asyncio.create_task(load.run())
    await asyncio.sleep(2.0)                                 # steady load first

    def settled() -> dict[str, Any] | None:
        # a replica with no recent failure: killing a slot again within its stability
        # period (10 s) would measure the crash-loop backoff, not one failure
        return next((r for r in api.get("/deployments/echo/replicas").json()
                     if r["state"] == "ready" and r["failures"] == 0), None)

    await poll(lambda: settled() is not None, 60, "a settled replica", interval=0.2)
    victim = settled()
    assert victim is not None
    before = await asyncio.to_thread(retries, base)
    killed = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)

    def routed_without() -> bool:
        ids = {r["id"] for r in api.get("/deployments/echo/routes").json()["replicas"]}
        return victim["id"] not in ids

    def replaced() -> bool:
        return any(r["id"] == victim["id"] and r["state"] == "ready"
                   and r["pid"] not in (None, victim["pid"])
                   for r in api.get("/deployments/echo/replicas").json())

    gone = await poll(routed_without, 30, "the dead replica to leave the routes")
    ready = await poll(replaced, 60, "a replacement")
    after = await asyncio.to_thread(retries, base)
    await asyncio.sleep(0.5)
    load.stop()
    await task
    window = [ok for t, ok in load.outcomes if killed <= t <= ready + 0.05]

    # cold start: create -> first answer; and a request to a deployment at zero
    name = f"cold-{i}"
    created = time.monotonic()
    api.post("/deployments", json={"name": name, "photon": "builtin:echo", "replicas": 1}
             ).raise_for_status()
    async with httpx.AsyncClient(headers=ctx.headers, timeout=30) as client:
        while True:
            r = await client.post(f"{base}/run/{name}/echo", json={"text": "first"})
            if r.status_code == 200:
                break
            await asyncio.sleep(0.01)
        first = time.monotonic()
        api.delete(f"/deployments/{name}")
        zero = f"zero-{i}"
        api.post("/deployments", json={
            "name": zero, "photon": "builtin:echo",
            "autoscaling": {"min_replicas": 0, "max_replicas": 1,
                            "scale_to_zero_after_s": 0.5, "look_back_s": 0.5}}
        ).raise_for_status()
        await poll(lambda: api.get(f"/deployments/{zero}").json()["status"]["phase"]
                   == "Stopped", 60, "scale to zero", interval=0.1)
        called = time.monotonic()
        r = await client.post(f"{base}/run/{zero}/echo", json={"text": "wake"})
        woke = time.monotonic()
        assert r.status_code == 200, r.text
        api.delete(f"/deployments/{zero}")
    await poll(lambda: {d["name"] for d in api.get("/deployments").json()} == {"echo"}, 60,
               "the cold deployments to go", interval=0.1)
    return Run(out_of_routes_ms=(gone - killed) * 1000, replacement_ready_ms=(ready - killed)
               * 1000, failed=sum(not ok for ok in window), retried=int(after - before),
               requests=len(window), create_to_answer_ms=(first - created) * 1000,
               scale_from_zero_ms=(woke - called) * 1000)


RAY_COLD = r"""
import json, socket, sys, time, urllib.request
t0 = time.monotonic()
import ray
from ray import serve
from starlette.requests import Request

@serve.deployment
class Echo:
    async def __call__(self, request: Request) -> dict:
        return {"text": (await request.json())["text"]}

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
ray.init(num_cpus=1, include_dashboard=False)
serve.start(http_options={"host": "127.0.0.1", "port": port})
t1 = time.monotonic()
serve.run(Echo.bind(), route_prefix="/echo", blocking=False)
while True:
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/echo", data=b'{"text": "hi"}',
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.01)
t2 = time.monotonic()
print(json.dumps({"deploy_to_answer_s": t2 - t1, "process_to_answer_s": t2 - t0}))
serve.shutdown(); ray.shutdown()
"""


def ray_cold_start(python: str) -> dict[str, float]:
    out = subprocess.run([python, "-c", RAY_COLD], capture_output=True, text=True,
                         timeout=600, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise RuntimeError(f"ray serve cold start failed: {out.stderr[-2000:]}")
    return dict(json.loads(line[-1]))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--peer-python", default=None,
                        help="python of a venv with ray[serve], to time its cold start too")
    parser.add_argument("--json", default=None, help="write the runs here")
    args = parser.parse_args()
    pin_to_cpu(LOAD_CPU)

    ctx = Context(handler_path="/echo")
    runs: list[Run] = []
    try:
        gateway_url = ctx.platform(replicas=2)
        base = gateway_url.rsplit("/run/", 1)[0]
        for i in range(args.runs):
            run = asyncio.run(one_run(ctx, base, i, args.concurrency))
            runs.append(run)
            print(f"run {i + 1}: {run}", file=sys.stderr)
    finally:
        ctx.stop()

    ray: list[dict[str, float]] = []
    if args.peer_python:
        for i in range(args.runs):
            ray.append(ray_cold_start(args.peer_python))
            print(f"ray serve {i + 1}: {ray[-1]}", file=sys.stderr)

    def col(name: str) -> float:
        return median([getattr(r, name) for r in runs])

    print(f"\n{args.runs} runs, medians; load: {args.concurrency} clients of idempotent "
          "echo calls\n")
    print("| figure | median | min | max | target |")
    print("|---|---:|---:|---:|---|")
    rows = [
        ("kill -9 -> dead replica out of the gateway's routes (ms)", "out_of_routes_ms", ""),
        ("kill -9 -> replacement ready (ms)", "replacement_ready_ms", "<= 5000"),
        ("requests failed from kill -9 to replacement ready", "failed", "0"),
        ("requests sent to the dead replica and retried elsewhere", "retried", ""),
        ("requests answered in that window", "requests", ""),
        ("deployment create -> first answer (ms)", "create_to_answer_ms", "<= 2000"),
        ("request to a deployment at zero -> answer (ms)", "scale_from_zero_ms", ""),
    ]
    for label, name, target in rows:
        values = [getattr(r, name) for r in runs]
        print(f"| {label} | {col(name):.0f} | {min(values):.0f} | {max(values):.0f} | "
              f"{target} |")
    if ray:
        for key, label in (("deploy_to_answer_s", "Ray Serve: serve.run -> first answer (ms)"),
                           ("process_to_answer_s", "Ray Serve: process start -> first answer "
                                                   "(ms)")):
            values = [r[key] * 1000 for r in ray]
            print(f"| {label} | {median(values):.0f} | {min(values):.0f} | "
                  f"{max(values):.0f} | |")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": [r.__dict__ for r in runs],
                                               "ray": ray}, indent=2))


if __name__ == "__main__":
    main()
