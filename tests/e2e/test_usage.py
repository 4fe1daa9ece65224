"""Metering end to end: a real ``leptonic up``, real replica processes. Each replica's
metered seconds match its process's lifetime within a second, over a run with a replica
``kill -9`` (its restart is a run of its own) and a control-plane ``kill -9`` and restart
(the replicas outlive it; the time it was down is metered, and none of it twice)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil

from tests.e2e.harness import RunningPlatform, running_platform

ENV = {"LEPTONIC_METRICS_INTERVAL": "0.5"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _run(r: dict[str, object]) -> str:
    return f"{r['id']}#{r['restarts']}"


def _started(pid: int) -> float:
    """When the process started, to 10 ms: psutil's create_time adds the kernel's boot
    time in whole seconds (``btime``), up to a second early; boot time from
    ``/proc/uptime`` (10 ms) is not."""
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/{pid}/stat").read_text()
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + start_ticks / ticks


def _wait_gone(pids: dict[int, str], truth: dict[str, list[float]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                gone = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                gone = True
            if gone:
                truth[pids.pop(pid)][1] = time.time()
        time.sleep(0.02)
    assert not pids, f"replica processes still alive: {pids}"


def _wait(p: RunningPlatform, predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():       # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s\n{p.read_log()[-3000:]}")


async def test_replica_seconds_match_process_lifetimes_across_kills_and_a_restart(
        tmp_path: Path) -> None:
    with running_platform(tmp_path / "data", ENV) as p:
        p.cli("deployment", "create", "--name", "m", "--photon", "builtin:echo",
              "--replicas", "2", "--label", "team=search")
        ready = p.wait_ready("m", 2)
        truth = {_run(r): [_started(r["pid"]), 0.0] for r in ready}
        res = await p.load("m", "echo", 60, concurrency=4)
        assert res.failed == []
        await asyncio.sleep(1.5)

        victim = ready[0]
        os.kill(victim["pid"], signal.SIGKILL)
        truth[_run(victim)][1] = time.time()
        again = p.wait_ready("m", 2, exclude_pids={victim["pid"]}, timeout=60)
        back = next(r for r in again if r["id"] == victim["id"])
        assert back["restarts"] == victim["restarts"] + 1
        truth[_run(back)] = [_started(back["pid"]), 0.0]
        await asyncio.sleep(1.5)

        p.kill9()                          # the replicas run on with nobody watching
        await asyncio.sleep(2.0)
        p.start()
        live = p.wait_ready("m", 2, timeout=30)
        assert {r["pid"] for r in live} == {ready[1]["pid"], back["pid"]}, "re-adopted"
        await asyncio.sleep(1.5)

        pids = {r["pid"]: _run(r) for r in live}
        p.cli("deployment", "delete", "m")
        _wait_gone(pids, truth, timeout=60)
        _wait(p, lambda: (lambda runs: len(runs) == 3 and all(r["closed"] for r in runs))(
            p.api("GET", "/usage/runs", params={"owner": "m"}).json()))

        runs = {r["run"]: r for r in p.api("GET", "/usage/runs",
                                           params={"owner": "m"}).json()}
        assert set(runs) == set(truth)
        for run, (start, end) in truth.items():
            lived = end - start
            metered = runs[run]["seconds"]
            assert abs(metered - lived) <= 1.0, (run, metered, lived)
        # the report adds the same runs up, with the traffic and the label
        report = p.api("GET", "/usage", params={"since": "1h", "by": "label:team"}).json()
        search = next(i for i in report["items"] if i["key"] == "search")
        assert abs(search["replica_seconds"] - sum(r["seconds"] for r in runs.values())) \
            < 1e-6
        assert search["requests"] >= 60
        assert search["cost"] > 0
        shown = p.cli("usage", "runs", "m")
        assert all(run in shown.stdout for run in truth)
        p.cli("budget", "create", "--scope", "label:team=search", "--monthly", "10")
        await asyncio.to_thread(_usage_page_in_a_browser, p)


def _usage_page_in_a_browser(p: RunningPlatform) -> None:
    """The usage page in headless Chromium: the cost chart drawn, the row and the budget."""
    from tests.e2e.sysdeps import dashboard_page

    with dashboard_page(p.url, p.token, "/ui/usage?since=24h") as page:
        page.locator("#chart-cost[data-points]").wait_for()
        assert int(page.locator("#chart-cost").get_attribute("data-points") or 0) >= 1
        row = page.locator("#usage-items tr[data-key=m] td").last
        assert row.inner_text().strip().startswith("$")
        assert page.locator("#budgets tr[data-budget=label-team-search]").count() == 1
        page.click("a.button:has-text('by user')")
        page.wait_for_url("**by=user**")
        assert page.locator("#usage-items tr[data-key='token:admin']").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-usage.png"), full_page=True)


def test_a_job_attempt_is_metered_from_its_start_to_its_end(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "work.sh").write_text("sleep 1.5\n")
    with running_platform(tmp_path / "data", ENV) as p:
        p.cli("job", "create", "--name", "j", "--command", "sh work.sh", "--path", str(code),
              "--cpu", "0.5", "--label", "team=ml", "--wait", "--timeout", "120")
        [attempt] = p.api("GET", "/jobs/j/attempts").json()
        _wait(p, lambda: any(r["closed"] for r in p.api("GET", "/usage/runs",
                                                         params={"owner": "j"}).json()))
        [run] = p.api("GET", "/usage/runs", params={"owner": "j"}).json()
        assert (run["run"], run["kind"], run["owner_kind"]) == (attempt["id"], "attempt", "job")
        lived = attempt["finished_at"] - attempt["started_at"]
        assert lived >= 1.5
        assert abs(run["seconds"] - lived) < 1e-6          # closed at its finished_at
        report = p.api("GET", "/usage", params={"since": "1h", "by": "job"}).json()
        [item] = report["items"]
        assert item["job"] == "j"
        assert item["cpu_seconds"] >= 0.5 * lived - 1e-6
        by_team = p.api("GET", "/usage", params={"since": "1h", "by": "label:team"}).json()
        assert [i["key"] for i in by_team["items"]] == ["ml"]
