"""Batch jobs: submit -> attempt running, and 1,000 tiny indexed completions.

One run starts a Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
labelled ``tier=datacenter`` with Ray's dashboard, so Ray Jobs can be used, and one edge
node; loopback only) and two platforms: ``leptonic up`` on the local runtime and one with
``--runtime ray`` on that cluster. It measures, in the same run:

* **submit -> attempt running** (``--submits`` times each, the three alternating): the
  ``POST /api/v1/jobs`` of a one-index job until its attempt's process runs (the attempt
  has a pid), on the local runtime (target <= 1 s) and on Ray (target <= 2 s), beside Ray
  Jobs' ``JobSubmissionClient.submit_job`` until ``get_job_status`` says RUNNING;
* **1,000 tiny indexed completions at parallelism 8** (``--completions``): a job whose
  command is ``true``, 0.1 CPU per attempt, from create to Succeeded, on both runtimes,
  beside plain Ray tasks (0.1 CPU each, on the datacenter node, at most 8 in flight) that
  each run the same ``/bin/sh -c true`` from a driver of their own.

    python benchmarks/jobs.py --submits 5 --completions 1000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cluster import RAY_ENV, Platform  # noqa: E402

TINY = "true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_job(p: Platform, body: dict[str, Any]) -> None:
    r = p.api.post("/jobs", data={"job": json.dumps(body)},
                   files={"_": ("", b"", "application/octet-stream")})
    r.raise_for_status()


def submit_to_running(p: Platform, name: str) -> float:
    started = time.perf_counter()
    create_job(p, {"name": name, "command": "sleep 0.5", "resources": {"cpu": 0.1}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tries = p.api.get(f"/jobs/{name}/attempts").json()
        if any(a["pid"] or a["state"] == "succeeded" for a in tries):
            return time.perf_counter() - started
        time.sleep(0.005)
    raise TimeoutError(f"job {name} has no running attempt after 60 s")


def wait_done(p: Platform, name: str, timeout: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = p.api.get(f"/jobs/{name}").json()
        if job["status"]["phase"] in ("Succeeded", "Failed"):
            return dict(job)
        time.sleep(0.05)
    raise TimeoutError(f"job {name} not done after {timeout} s")


def ray_jobs_to_running(client: Any) -> float:
    from ray.job_submission import JobStatus

    started = time.perf_counter()
    sid = client.submit_job(entrypoint="sleep 0.5")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get_job_status(sid)
        if status in (JobStatus.RUNNING, JobStatus.SUCCEEDED):
            return time.perf_counter() - started
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            raise RuntimeError(f"Ray job {sid}: {status}")
        time.sleep(0.005)
    raise TimeoutError(f"Ray job {sid} not running after 60 s")


def indexed(p: Platform, name: str, n: int) -> float:
    started = time.perf_counter()
    create_job(p, {"name": name, "command": TINY, "completions": n, "parallelism": 8,
                   "max_retries": 0, "resources": {"cpu": 0.1}})
    job = wait_done(p, name)
    took = time.perf_counter() - started
    if job["status"]["phase"] != "Succeeded":
        raise RuntimeError(f"job {name}: {job['status']}")
    return n / took


RAY_TASKS = """
import subprocess, sys, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], log_to_driver=False)
head = next(n["NodeID"] for n in ray.nodes()
            if n["Alive"] and (n.get("Labels") or {}).get("tier") == "datacenter")

@ray.remote(num_cpus=0.1, max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False))
def tiny(i):
    return subprocess.run(["/bin/sh", "-c", "true"], check=True).returncode

ray.get([tiny.remote(i) for i in range(8)])     # workers started, as a platform's are
n = int(sys.argv[2])
started = time.perf_counter()
pending, done = [], 0
for i in range(n):
    if len(pending) >= 8:
        ready, pending = ray.wait(pending, num_returns=1)
        done += len(ray.get(ready))
    pending.append(tiny.remote(i))
done += len(ray.get(pending))
assert done == n
print(n / (time.perf_counter() - started))
"""


def ray_tasks(address: str, n: int) -> float:
    r = subprocess.run([sys.executable, "-c", RAY_TASKS, address, str(n)],
                       capture_output=True, text=True, timeout=1800,
                       env={**os.environ, **RAY_ENV}, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=5)
    parser.add_argument("--completions", type=int, default=1000)
    parser.add_argument("--ray-completions", type=int, default=None,
                        help="completions of the job on the Ray runtime (default: the same)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.update(RAY_ENV)
    import ray
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobSubmissionClient

    dash = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "labels": {"tier": "datacenter"}, "node_ip_address": "127.0.0.1",
        "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dash})
    cluster.add_node(num_cpus=2, labels={"tier": "edge"}, node_ip_address="127.0.0.1")
    tmp = Path(tempfile.mkdtemp(prefix="leptonic-jobs-bench-"))
    platforms: list[Platform] = []
    results: dict[str, Any] = {"ray": ray.__version__, "submit_s": {}, "per_s": {}}
    try:
        client = None
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        local = Platform([], tmp)
        platforms.append(local)
        onray = Platform(["--runtime", "ray", "--ray-address", cluster.address], tmp)
        platforms.append(onray)
        # a first job and a first Ray job warm each up (imports, Ray's job agent, workers)
        submit_to_running(local, "warm")
        submit_to_running(onray, "warm")
        ray_jobs_to_running(client)
        sub: dict[str, list[float]] = {"local": [], "ray": [], "ray_jobs": []}
        for i in range(args.submits):
            sub["local"].append(submit_to_running(local, f"s{i}"))
            sub["ray"].append(submit_to_running(onray, f"s{i}"))
            sub["ray_jobs"].append(ray_jobs_to_running(client))
        results["submit_s"] = sub
        n = args.completions
        if n:
            rn = args.ray_completions or n
            results["per_s"] = {"local": indexed(local, "many", n),
                                "ray": indexed(onray, "many", rn),
                                "ray_tasks": ray_tasks(cluster.address, n)}
            results["completions"] = {"local": n, "ray": rn, "ray_tasks": n}
    finally:
        for p in platforms:
            p.stop()
        cluster.shutdown()  # type: ignore[no-untyped-call]
    sub = results["submit_s"]
    print(f"Ray {results['ray']}; submit -> running, {args.submits} runs each (seconds):")
    for k, xs in sub.items():
        print(f"  {k:9s} median {median(xs):.3f}  ({' '.join(f'{x:.3f}' for x in xs)})")
    if sub:
        print(f"  leptonic on Ray / Ray Jobs: {median(sub['ray']) / median(sub['ray_jobs']):.2f}"
              f"; local / Ray Jobs: {median(sub['local']) / median(sub['ray_jobs']):.2f}")
    if results["per_s"]:
        ps = results["per_s"]
        print("tiny completions at parallelism 8 (per second):")
        for k, v in ps.items():
            print(f"  {k:9s} {v:.1f}/s of {results['completions'][k]} "
                  f"({v / ps['ray_tasks']:.2f} of plain Ray tasks)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
