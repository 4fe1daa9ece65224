"""Jobs on a real ``leptonic up`` (local runtime, isolated attempts): the task SDK example
as users write it, an index that fails once and is retried, a deadline, kill -9 of an
attempt (retried) and of the control plane mid-job (the job completes, each index once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.harness import RunningPlatform, running_platform


def wait_job(p: RunningPlatform, name: str, phases: tuple[str, ...] = ("Succeeded", "Failed"),
             timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = p.api("GET", f"/jobs/{name}")
        if r.status_code == 200 and r.json()["status"]["phase"] in phases:
            return dict(r.json())
        time.sleep(0.1)
    raise AssertionError(f"job {name} not {phases}: {p.api('GET', f'/api/v1/jobs/{name}').text}")


def attempts(p: RunningPlatform, name: str) -> list[dict[str, Any]]:
    return list(p.api("GET", f"/jobs/{name}/attempts").json())


SDK_EXAMPLE = '''
from lepton_ai import LeptonAI
lepton = LeptonAI("API_TOKEN")
task = {"type": "computation", "scale": "large", "output": "@OUTPUT@",
        "command": "echo computed > $LEPTONIC_OUTPUT_DIR/result.txt"}
result = lepton.execute_task(task)
with open(result["output"]) as f:
    print(f.read())
'''


def test_the_sdk_example_runs_as_written(platform: RunningPlatform, tmp_path: Path) -> None:
    out = tmp_path / "output"
    script = tmp_path / "example.py"
    script.write_text(SDK_EXAMPLE.replace("API_TOKEN", platform.token)
                      .replace("@OUTPUT@", str(out)))
    env = {**platform.env(), "LEPTONIC_URL": platform.url}
    started = time.monotonic()
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "computed"
    assert out.read_text() == "computed\n"
    assert time.monotonic() - started < 30
    jobs = platform.api("GET", "/jobs").json()
    assert len(jobs) == 1, [(j["name"], j["spec"]["command"]) for j in jobs]
    job = jobs[0]
    assert job["spec"]["scale"] == "large"
    assert job["status"]["phase"] == "Succeeded"
    # an output that cannot be written: said before anything is submitted
    bad = tmp_path / "bad.py"
    bad.write_text(SDK_EXAMPLE.replace("API_TOKEN", platform.token)
                   .replace("@OUTPUT@", "/nonexistent/dir/out"))
    r = subprocess.run([sys.executable, str(bad)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "cannot be written" in r.stderr
    assert len(platform.api("GET", "/jobs").json()) == 1


def test_the_job_template_runs_as_made(platform: RunningPlatform, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "words"
    platform.cli("init", "words", "--template", "job", "--dir", str(folder))
    done = json.loads(platform.cli("job", "create", "--name", "words", "--path", str(folder),
                                   "--command", "python job.py", "--completions", "2",
                                   "--wait", "-o", "json").stdout)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    platform.cli("job", "output", "words", "--dest", str(tmp_path / "out"))
    counts = [json.loads(f.read_text()) for f in sorted((tmp_path / "out").rglob("*.json"))]
    assert len(counts) == 2                          # one file per index
    assert sum(c.get("index", 0) for c in counts) == 3    # "index" 3 times in input.txt


def test_indexed_retry_deadline_and_a_failed_task(platform: RunningPlatform,
                                                  tmp_path: Path) -> None:
    p = platform
    # index 1 fails on its first attempt, then succeeds
    p.cli("job", "create", "--name", "idx", "--completions", "3", "--parallelism", "3",
          "--backoff", "0.2", "--command",
          'if [ "$JOB_COMPLETION_INDEX" = 1 ] && [ "$LEPTONIC_ATTEMPT" = 1 ]; then '
          'echo failing once; exit 3; fi; echo $JOB_COMPLETION_INDEX > '
          '$LEPTONIC_OUTPUT_DIR/i.txt')
    p.cli("job", "create", "--name", "slow", "--deadline", "1", "--command", "sleep 30")
    job = wait_job(p, "idx")
    assert job["status"]["phase"] == "Succeeded", job["status"]
    tries = attempts(p, "idx")
    assert sorted((a["index"], a["number"], a["state"]) for a in tries) == [
        (0, 1, "succeeded"), (1, 1, "failed"), (1, 2, "succeeded"), (2, 1, "succeeded")]
    assert "failing once" in p.cli("job", "logs", "idx", "--index", "1", "--attempt",
                                   "1").stdout
    p.cli("job", "output", "idx", "--dest", str(tmp_path / "o"))
    assert sorted((tmp_path / "o" / str(i) / "i.txt").read_text() for i in range(3)) == \
        ["0\n", "1\n", "2\n"]
    slow = wait_job(p, "slow", timeout=20)
    assert (slow["status"]["phase"], slow["status"]["reason"]) == ("Failed",
                                                                   "DeadlineExceeded")
    assert not [ps for ps in psutil.process_iter(["cmdline"])
                if ps.info["cmdline"] == ["sleep", "30"]]
    # a failing task raises with the reason and its last log lines
    env = {**p.env(), "LEPTONIC_URL": p.url, "LEPTONIC_TOKEN": p.token}
    code = ("from lepton_ai import LeptonAI, JobFailed\n"
            "try:\n"
            "    LeptonAI().execute_task({'command': 'echo no luck; exit 2', "
            "'max_retries': 0})\n"
            "except JobFailed as e:\n"
            "    print(e.reason); print(e.detail)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.startswith("BackoffLimitExceeded"), r.stdout + r.stderr
    assert "no luck" in r.stdout


def _user_pids(marker: str) -> list[int]:
    """The attempt's own shell (the user code), found by its command line."""
    return [ps.pid for ps in psutil.process_iter(["cmdline"])
            if (cmd := ps.info["cmdline"] or [])[:2] == ["/bin/sh", "-c"]
            and f"sleep {marker}" in cmd[2]]


def test_kill_9_of_an_attempt_is_retried(platform: RunningPlatform) -> None:
    p = platform
    p.cli("job", "create", "--name", "k", "--backoff", "0.2", "--command",
          'if [ "$LEPTONIC_ATTEMPT" = 1 ]; then sleep 41; fi; echo ok')
    deadline = time.monotonic() + 30
    while not (pids := _user_pids("41")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids
    os.kill(pids[0], signal.SIGKILL)
    job = wait_job(p, "k")
    assert job["status"]["phase"] == "Succeeded"
    states = [(a["number"], a["state"], a["reason"]) for a in attempts(p, "k")]
    assert [st[:2] for st in states] == [(1, "failed"), (2, "succeeded")], states


def test_kill_9_of_the_control_plane_mid_job(tmp_path: Path) -> None:
    with running_platform(tmp_path / "data") as p:
        p.cli("job", "create", "--name", "long", "--completions", "3", "--parallelism", "1",
              "--command", "sleep 1.5; echo $JOB_COMPLETION_INDEX > $LEPTONIC_OUTPUT_DIR/o")
        deadline = time.monotonic() + 30
        while not [a for a in attempts(p, "long") if a["state"] == "running" and a["pid"]]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        p.kill9()
        time.sleep(2.0)             # the running attempt ends while nobody watches
        p.start()
        job = wait_job(p, "long", timeout=60)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        tries = attempts(p, "long")
        # each index done once: one attempt each, no retries, nothing lost
        assert sorted((a["index"], a["state"]) for a in tries) == [
            (0, "succeeded"), (1, "succeeded"), (2, "succeeded")], tries
        assert "attempt(s) adopted" in p.read_log()
