"""Predictive autoscaling end to end (issue 12): a real ``leptonic up`` sampling every
second, two deployments of the same photon with the same autoscaling spec, one
``reactive`` and one ``predictive``, and the same bounded periodic load on both at once (a
square wave in requests in flight, five periods of 40 s, loopback only).

Once the forecaster has seen two periods (it needs two to find one), the predictive
deployment's desired replicas reach the high level at the start of each high phase, as
the forecast says it comes; the reactive one's only after the high phase began, by about
its upscale delay. The lead and lag of every period are printed so they can be quoted.

The forecast looks only a rate point ahead, so "before the peak" is "by the time the high
phase begins" here; the margins are wide (predictive up to LATE_S into the high phase,
reactive not before 60% of its upscale delay, half that delay between the two) because
the machine is small and shared; no exact timing is asserted.

The predictive deployment is created so, before it has any series: its forecaster takes
the platform's sampling interval (1 s), not a default."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningPlatform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INTERVAL_S = 1.0                   # the observe loop's sampling: one rate point a second
PERIOD_S = 40.0                    # the load's true period: 20 s low, then 20 s high
PERIODS = 5
LEARNED_FROM = 2                   # periods counted from 0: the forecast is judged from the 3rd
LOW, HIGH = 2, 8                   # requests in flight (closed-loop clients) per phase
SERVICE_MS = 200                   # each request sleeps this long in the replica
TARGET = 2                         # requests in flight per replica
HIGH_REPLICAS = math.ceil(HIGH / TARGET)
UPSCALE_DELAY_S = 6.0
DOWNSCALE_DELAY_S = 4.0
LOOK_BACK_S = 2.0
# the forecast looks one rate point (and a new replica's start) ahead, and is read again
# every second: predictive reaches the high level as the high phase begins, give or take
# a point; this late at most
LATE_S = 1.5
POLL_S = 0.25
SCALED = re.compile(r"scaled from (\d+) to (\d+) replica")

SLOW = '''\
import asyncio

from leptonic import Photon, handler


class Slow(Photon):
    @handler
    async def work(self, ms: int = 200) -> dict:
        await asyncio.sleep(ms / 1000)
        return {"ok": True}
'''


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    with running_platform(tmp_path / "data", {"LEPTONIC_METRICS_INTERVAL": f"{INTERVAL_S:g}s"}
                          ) as p:
        yield p


@dataclass
class Point:
    at: float                        # seconds since the load began (test's monotonic clock)
    desired: int
    ready: int
    autoscale: dict[str, Any]


@dataclass
class Timeline:
    points: list[Point] = field(default_factory=list)

    def rise(self, start: float, end: float) -> float | None:
        """When desired replicas, having been below the high level in ``[start, end)``,
        first reached it again there (None: they never dipped, or never rose)."""
        dipped = False
        for pt in self.points:
            if not start <= pt.at < end:
                continue
            if pt.desired < HIGH_REPLICAS:
                dipped = True
            elif dipped:
                return pt.at
        return None

    def lowest(self, start: float, end: float) -> int | None:
        inside = [pt.desired for pt in self.points if start <= pt.at < end]
        return min(inside) if inside else None

    def changes(self) -> str:
        out, seen = [], None
        for pt in self.points:
            if (pt.desired, pt.ready) != seen:
                seen = (pt.desired, pt.ready)
                out.append(f"{pt.at:.1f}:{pt.desired}/{pt.ready}")
        return " ".join(out)

    def last_before(self, t: float) -> Point | None:
        before = [pt for pt in self.points if pt.at <= t]
        return before[-1] if before else None


@dataclass
class Period:
    n: int                           # 1..PERIODS
    rise: float                      # when its high phase began
    predictive_at: float | None      # when each reached the high level again
    reactive_at: float | None
    predictive_low: int | None       # fewest desired replicas in the low phase
    reactive_low: int | None
    state: dict[str, Any]            # predictive's autoscaler state just before the rise

    def describe(self) -> str:
        tp, tr, st = self.predictive_at, self.reactive_at, self.state
        lead = "never" if tp is None else f"{self.rise - tp:+.1f}s"
        lag = "never" if tr is None else f"{tr - self.rise:+.1f}s"
        return (f"period {self.n}: high phase at {self.rise:g}s; predictive lead {lead} "
                f"(low {self.predictive_low}), reactive lag {lag} (low {self.reactive_low}); "
                f"forecast just before: period {st.get('forecast_period_s')}s, error "
                f"{st.get('forecast_error')}, upper {st.get('forecast_upper')} req/s; "
                f"why: {st.get('why')}")


def in_flight_wanted(t: float) -> int:
    """The square wave: LOW for the first half of each period, HIGH for the second."""
    return LOW if t % PERIOD_S < PERIOD_S / 2 else HIGH


async def square_wave(p: RunningPlatform, name: str, began: float, failed: list[str],
                      answered: list[int]) -> None:
    """HIGH closed-loop clients, client i busy while i < in_flight_wanted(t); stops by
    itself after PERIODS periods."""
    end = began + PERIODS * PERIOD_S
    url = f"{p.url}/run/{name}/work"

    async def client(i: int, http: httpx.AsyncClient) -> None:
        while (now := time.monotonic()) < end:
            t = now - began
            if i >= in_flight_wanted(t):        # idle until the phase changes
                await asyncio.sleep(min(0.05, end - now))
                continue
            try:
                r = await http.post(url, json={"ms": SERVICE_MS})
            except httpx.HTTPError as exc:
                failed.append(f"{name} at {t:.1f}s: {type(exc).__name__}: {exc}")
                continue
            if r.status_code != 200:
                failed.append(f"{name} at {t:.1f}s: HTTP {r.status_code}: {r.text[:200]}")
            else:
                answered[0] += 1

    limits = httpx.Limits(max_connections=HIGH + 2, max_keepalive_connections=HIGH + 2)
    async with httpx.AsyncClient(headers=p.headers, timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(HIGH)))


async def record(p: RunningPlatform, names: list[str], began: float,
                 timelines: dict[str, Timeline]) -> None:
    """Every POLL_S until the load ends: each deployment's desired and ready replicas and
    its autoscaler state, against the load's clock."""
    end = began + PERIODS * PERIOD_S
    async with httpx.AsyncClient(headers=p.headers, timeout=10) as http:
        while time.monotonic() < end:
            for name in names:
                try:
                    r = await http.get(f"{p.url}/api/v1/deployments/{name}")
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    st = r.json()["status"]
                    timelines[name].points.append(Point(
                        time.monotonic() - began, st["desired_replicas"],
                        st["ready_replicas"], st.get("autoscale") or {}))
            await asyncio.sleep(POLL_S)


def deploy(p: RunningPlatform, name: str, policy: str) -> None:
    p.cli("deployment", "create", "--name", name, "--photon", "slow",
          "--autoscaling-policy", policy,
          "--min-replicas", "1", "--max-replicas", str(HIGH_REPLICAS + 1),
          "--target-concurrency", str(TARGET), "--upscale-delay", f"{UPSCALE_DELAY_S:g}",
          "--downscale-delay", f"{DOWNSCALE_DELAY_S:g}", "--look-back", f"{LOOK_BACK_S:g}",
          "--probe-period", "0.5", "--drain-timeout", "10", "--timeout", "60")


async def test_predictive_scales_up_before_the_peak_and_reactive_after_it(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    src = tmp_path / "slow"
    src.mkdir()
    (src / "app.py").write_text(SLOW)
    p.cli("photon", "create", "--name", "slow", "-m", "app.py:Slow", "--path", str(src))
    deploy(p, "reactive", "reactive")
    deploy(p, "predictive", "predictive")
    spec = p.api("GET", "/deployments/predictive").json()["spec"]["autoscaling"]
    assert spec["policy"] == "predictive"

    names = ["reactive", "predictive"]
    timelines = {n: Timeline() for n in names}
    failed: list[str] = []
    answered = [0]
    began, wall_began = time.monotonic(), time.time()
    await asyncio.gather(record(p, names, began, timelines),
                         *(square_wave(p, n, began, failed, answered) for n in names))
    wall = time.monotonic() - began

    # -- the figures -----------------------------------------------------------------------
    pred, reac = timelines["predictive"], timelines["reactive"]
    rows = []
    for k in range(PERIODS):
        start, rise, end = k * PERIOD_S, k * PERIOD_S + PERIOD_S / 2, (k + 1) * PERIOD_S
        before = pred.last_before(rise - 0.5)
        rows.append(Period(k + 1, rise, pred.rise(start, end), reac.rise(start, end),
                           pred.lowest(start, rise), reac.lowest(start, rise),
                           before.autoscale if before else {}))
    print(f"\n{answered[0]} answers, {len(failed)} failed in {wall:.0f}s; high level "
          f"{HIGH_REPLICAS} replicas; upscale delay {UPSCALE_DELAY_S:g}s")
    for row in rows:
        print(row.describe())
    for name, tl in timelines.items():
        print(f"{name} (s: desired/ready): {tl.changes()}")
    events = [e for e in p.api("GET", "/deployments/predictive/events",
                               params={"limit": 500}).json() if e["reason"] == "Scaled"]

    # -- the assertions --------------------------------------------------------------------
    assert len(failed) <= answered[0] // 100, failed[:5]
    learned = rows[LEARNED_FROM:]
    leads, lags = [], []
    for row in learned:
        n, rise, tp, tr = row.n, row.rise, row.predictive_at, row.reactive_at
        # both went down in the low phase, so each rise is a real one
        assert row.reactive_low is not None
        assert row.reactive_low < HIGH_REPLICAS, f"period {n}: reactive stayed high"
        assert row.predictive_low is not None
        assert row.predictive_low < HIGH_REPLICAS, \
            f"period {n}: predictive stayed at the high level through the low phase"
        assert tr is not None, f"period {n}: reactive never reached {HIGH_REPLICAS}"
        assert tp is not None, f"period {n}: predictive never reached {HIGH_REPLICAS}"
        assert tr - rise >= 0.6 * UPSCALE_DELAY_S, \
            f"period {n}: reactive reached {HIGH_REPLICAS} only {tr - rise:.1f}s in"
        assert tp <= rise + LATE_S, \
            f"period {n}: predictive late ({tp}s, the high phase at {rise:g}s): {row.state}"
        assert tr - tp >= UPSCALE_DELAY_S / 2, f"period {n}: predictive not ahead"
        leads.append(rise - tp)
        lags.append(tr - rise)
        # the forecast was in use, with the true period, as the high phase came
        assert row.state.get("forecast_rate") is not None, row.state
        assert row.state.get("forecast_period_s") == pytest.approx(PERIOD_S, rel=0.15), \
            row.state
        # and the scale-up that did it says so
        ups = [e["message"] for e in events
               if rise - 3 <= e["time"] - wall_began <= tp + 1
               and (m := SCALED.match(e["message"])) and int(m[2]) >= HIGH_REPLICAS]
        assert ups, f"period {n}: no Scaled event to {HIGH_REPLICAS}+ near {rise:g}s"
        assert all("forecast" in m for m in ups), ups
    print(f"learned periods: predictive lead {sum(leads) / len(leads):+.1f}s on average, "
          f"reactive lag {sum(lags) / len(lags):+.1f}s")
