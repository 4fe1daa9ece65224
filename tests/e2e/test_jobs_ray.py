"""Jobs on the Ray runtime, on a real multi-node Ray cluster (one machine, loopback only).

One ``ray.cluster_utils.Cluster`` per module: a head labelled ``tier=datacenter`` and one
worker labelled ``tier=edge``, both on 127.0.0.1. The task SDK example as users write it,
an ``edge`` task landing on the edge node, an index that fails once and is retried, a
deadline, kill -9 of a running attempt's command (retried), and kill -9 of the control
plane mid-job (the job completes, each index done once); nothing of leptonic is left on
the cluster after each platform stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.harness import RunningPlatform, ray_named_actors, running_platform
from tests.e2e.test_jobs import SDK_EXAMPLE, _user_pids, attempts, wait_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "labels": {"tier": "datacenter"}, "node_ip_address": "127.0.0.1"})
    c.edge = c.add_node(num_cpus=2, labels={"tier": "edge"}, node_ip_address="127.0.0.1")
    try:
        yield c
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def platform(cluster: Any, tmp_path: Path) -> Iterator[RunningPlatform]:
    with running_platform(tmp_path / "data", RAY_ENV, ["--runtime", "ray", "--ray-address",
                                                      cluster.address]) as p:
        wait_nodes(p, 2)
        yield p
    # nothing of this platform may be left on the cluster: no replica, no attempt
    left = [n for n in ray_named_actors(cluster.address, RAY_ENV) if n.startswith("lep-")]
    assert left == [], left


def wait_nodes(p: RunningPlatform, want: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {n["id"]: n for n in p.api("GET", "/nodes").json() if n["status"] == "Ready"}
        if len(found) >= want:
            assert {n["address"] for n in found.values()} == {"127.0.0.1"}
            return found
        time.sleep(0.2)
    raise TimeoutError(f"not {want} ready nodes: {p.api('GET', '/nodes').text}")


def test_the_sdk_example_runs_as_written_on_ray(platform: RunningPlatform,
                                                tmp_path: Path) -> None:
    out = tmp_path / "output"
    script = tmp_path / "example.py"
    script.write_text(SDK_EXAMPLE.replace("API_TOKEN", platform.token)
                      .replace("@OUTPUT@", str(out)))
    env = {**platform.env(), "LEPTONIC_URL": platform.url}
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr + platform.read_log()[-3000:]
    assert r.stdout.strip() == "computed"
    assert out.read_text() == "computed\n"
    (job,) = platform.api("GET", "/jobs").json()
    (a,) = attempts(platform, job["name"])
    assert a["state"] == "succeeded"
    nodes = {n["name"]: n for n in platform.api("GET", "/nodes").json()}
    assert nodes[a["node"]]["tier"] == "datacenter"
    # its log was shipped home like a replica's
    assert "exited with code 0" in platform.cli("job", "logs", job["name"]).stdout


def test_an_edge_task_lands_on_the_edge_node(platform: RunningPlatform, cluster: Any) -> None:
    env = {**platform.env(), "LEPTONIC_URL": platform.url, "LEPTONIC_TOKEN": platform.token}
    code = ("from lepton_ai import LeptonAI\n"
            "r = LeptonAI().execute_task({'type': 'edge', 'scale': 'small', "
            "'command': 'echo at the edge'})\n"
            "print(r['id'])\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    name = r.stdout.strip().splitlines()[-1]
    (a,) = attempts(platform, name)
    node = {n["name"]: n for n in platform.api("GET", "/nodes").json()}[a["node"]]
    assert node["tier"] == "edge"
    assert node["id"] == cluster.edge.node_id


def test_an_index_failing_once_is_retried_on_ray(platform: RunningPlatform,
                                                 tmp_path: Path) -> None:
    p = platform
    p.cli("job", "create", "--name", "idx", "--completions", "3", "--parallelism", "3",
          "--backoff", "0.2", "--cpu", "0.5", "--command",
          'if [ "$JOB_COMPLETION_INDEX" = 1 ] && [ "$LEPTONIC_ATTEMPT" = 1 ]; then '
          'echo failing once; exit 3; fi; echo $JOB_COMPLETION_INDEX > '
          '$LEPTONIC_OUTPUT_DIR/i.txt')
    job = wait_job(p, "idx")
    assert job["status"]["phase"] == "Succeeded", job["status"]
    assert sorted((a["index"], a["number"], a["state"]) for a in attempts(p, "idx")) == [
        (0, 1, "succeeded"), (1, 1, "failed"), (1, 2, "succeeded"), (2, 1, "succeeded")]
    assert "failing once" in p.cli("job", "logs", "idx", "--index", "1", "--attempt",
                                   "1").stdout
    p.cli("job", "output", "idx", "--dest", str(tmp_path / "o"))
    assert sorted((tmp_path / "o" / str(i) / "i.txt").read_text() for i in range(3)) == \
        ["0\n", "1\n", "2\n"]


def test_a_deadline_ends_the_job_and_its_command_on_ray(platform: RunningPlatform) -> None:
    p = platform
    p.cli("job", "create", "--name", "slow", "--deadline", "2", "--cpu", "0.5",
          "--command", "sleep 37")
    job = wait_job(p, "slow", timeout=30)
    assert (job["status"]["phase"], job["status"]["reason"]) == ("Failed",
                                                                 "DeadlineExceeded")
    deadline = time.monotonic() + 15        # the actor's command is killed with it
    while [ps for ps in psutil.process_iter(["cmdline"])
           if ps.info["cmdline"] == ["sleep", "37"]]:
        assert time.monotonic() < deadline, "the command outlived its deadline"
        time.sleep(0.2)


def test_kill_9_of_an_attempt_is_retried_on_ray(platform: RunningPlatform) -> None:
    p = platform
    p.cli("job", "create", "--name", "k", "--backoff", "0.2", "--cpu", "0.5", "--command",
          'if [ "$LEPTONIC_ATTEMPT" = 1 ]; then sleep 43; fi; echo ok')
    deadline = time.monotonic() + 60
    while not (pids := _user_pids("43")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids, p.read_log()[-3000:]
    os.kill(pids[0], signal.SIGKILL)
    job = wait_job(p, "k")
    assert job["status"]["phase"] == "Succeeded", job["status"]
    states = [(a["number"], a["state"], a["reason"]) for a in attempts(p, "k")]
    assert [st[:2] for st in states] == [(1, "failed"), (2, "succeeded")], states


def test_kill_9_of_the_control_plane_mid_job_on_ray(platform: RunningPlatform) -> None:
    p = platform
    p.cli("job", "create", "--name", "long", "--completions", "3", "--parallelism", "1",
          "--cpu", "0.5", "--command",
          "sleep 2; echo $JOB_COMPLETION_INDEX > $LEPTONIC_OUTPUT_DIR/o")
    deadline = time.monotonic() + 60
    while not [a for a in attempts(p, "long") if a["state"] == "running" and a["pid"]]:
        assert time.monotonic() < deadline, p.read_log()[-3000:]
        time.sleep(0.05)
    p.kill9()
    time.sleep(1.0)
    p.start()
    job = wait_job(p, "long", timeout=120)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    tries = attempts(p, "long")
    # each index done once: the running attempt's actor was adopted, not run again
    assert sorted((a["index"], a["state"]) for a in tries) == [
        (0, "succeeded"), (1, "succeeded"), (2, "succeeded")], tries
    assert "adopted attempt" in p.read_log()
