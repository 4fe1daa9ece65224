"""Built-in time series: turn cumulative counters into per-interval samples, downsample
them into coarser tiers, and pick the tier a query reads.

A *series* is one object (``deployment/echo``, ``node/local``); each sample holds every
metric of that object at one time as a dict, so a chart of five metrics is one read. The
sampler keeps the previous counter values in memory: rates and percentiles are computed
over the interval between two samples (the first sample after a start has no rates).
Everything here is pure; ``leptonic.store.observe`` reads and writes the rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leptonic.config.observe import ObserveSettings
from leptonic.core.analysis import histogram_quantile

Sample = dict[str, float | None]

#: how a metric is combined when points are downsampled (default: the mean)
ROLLUP: dict[str, str] = {
    "p50_latency_ms": "max", "p90_latency_ms": "max", "p99_latency_ms": "max",
    "restarts": "last", "replicas_desired": "last", "node_up": "min",
    "queue_depth": "max", "in_flight": "max",
    "energy_joules": "last", "node_energy_joules": "last",     # running totals
}
#: the metrics the dashboard's deployment charts draw, in order
CHART_METRICS = ("requests_per_s", "errors_per_s", "error_rate", "p50_latency_ms",
                 "p90_latency_ms", "p99_latency_ms", "replicas_ready", "replicas_desired")


@dataclass
class GatewayCounts:
    """Cumulative gateway counters of one deployment at one time."""

    codes: dict[str, float] = field(default_factory=dict)          # status code -> count
    buckets: list[tuple[float, float]] = field(default_factory=list)   # (le, cumulative)
    in_flight: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.codes.values())

    @property
    def errors(self) -> float:
        return sum(v for c, v in self.codes.items() if c.startswith("5"))


@dataclass(frozen=True)
class ReplicaStat:
    """What the sampler saw of one replica (process stats and its scraped gauges)."""

    deployment: str
    replica: str
    ready: bool
    restarts: int = 0
    cpu_seconds: float | None = None
    rss_bytes: float | None = None
    queue_depth: float = 0.0


def read_gateway(families: Iterable[Any]) -> dict[str, GatewayCounts]:
    """Cumulative counts per deployment from the gateway's collected metric families."""
    out: dict[str, GatewayCounts] = {}
    for family in families:
        for s in family.samples:
            dep = s.labels.get("deployment")
            if dep is None:
                continue
            counts = out.setdefault(dep, GatewayCounts())
            if s.name == "leptonic_gateway_requests_total":
                counts.codes[s.labels["code"]] = s.value
            elif s.name == "leptonic_gateway_upstream_latency_seconds_bucket":
                counts.buckets.append((float(s.labels["le"]), s.value))
            elif s.name == "leptonic_gateway_in_flight_requests":
                counts.in_flight = s.value
    for counts in out.values():
        counts.buckets.sort()
    return out


def _delta(cur: float, prev: float) -> float:
    return cur if cur < prev else cur - prev     # a reset counter starts again from 0


class Sampler:
    """Keeps the previous cumulative values and turns the next ones into a sample."""

    def __init__(self) -> None:
        self._gateway: dict[str, tuple[float, GatewayCounts]] = {}
        self._cpu: dict[str, tuple[float, float]] = {}

    def deployment_sample(self, now: float, name: str, desired: int, restarts: int,
                          gateway: GatewayCounts | None,
                          replicas: Sequence[ReplicaStat]) -> Sample:
        """One deployment's metrics (the names of ``core.alerts.DEPLOYMENT_METRICS``)."""
        sample: Sample = {
            "replicas_desired": float(desired),
            "replicas_ready": float(sum(1 for r in replicas if r.ready)),
            "restarts": float(restarts),
            "queue_depth": float(sum(r.queue_depth for r in replicas)),
            "in_flight": gateway.in_flight if gateway else 0.0,
            "memory_mb": None, "cpu_percent": None,
            "requests_per_s": None, "errors_per_s": None, "error_rate": None,
            "p50_latency_ms": None, "p90_latency_ms": None, "p99_latency_ms": None,
        }
        rss = [r.rss_bytes for r in replicas if r.rss_bytes is not None]
        if rss:
            sample["memory_mb"] = sum(rss) / 2**20
        cpu = 0.0
        seen_cpu = False
        for r in replicas:
            if r.cpu_seconds is None:
                continue
            prev = self._cpu.get(r.replica)
            self._cpu[r.replica] = (now, r.cpu_seconds)
            if prev is not None and now > prev[0]:
                cpu += 100.0 * max(0.0, r.cpu_seconds - prev[1]) / (now - prev[0])
                seen_cpu = True
        if seen_cpu:
            sample["cpu_percent"] = cpu
        cur = gateway or GatewayCounts()
        prev_gw = self._gateway.get(name)
        self._gateway[name] = (now, cur)
        if prev_gw is None or now <= prev_gw[0]:
            return sample
        dt = now - prev_gw[0]
        before = prev_gw[1]
        total = _delta(cur.total, before.total)
        errors = _delta(cur.errors, before.errors)
        sample["requests_per_s"] = total / dt
        sample["errors_per_s"] = errors / dt
        sample["error_rate"] = errors / total if total else None
        prev_buckets = dict(before.buckets)
        delta = [(le, _delta(c, prev_buckets.get(le, 0.0))) for le, c in cur.buckets]
        for q, key in ((0.5, "p50_latency_ms"), (0.9, "p90_latency_ms"),
                       (0.99, "p99_latency_ms")):
            v = histogram_quantile(q, delta)
            sample[key] = None if v is None else v * 1000.0
        return sample

    def forget(self, live_deployments: set[str], live_replicas: set[str]) -> None:
        for name in set(self._gateway) - live_deployments:
            del self._gateway[name]
        for rid in set(self._cpu) - live_replicas:
            del self._cpu[rid]


def rollup(rows: Iterable[tuple[float, dict[str, Any]]], resolution: int
           ) -> list[tuple[float, dict[str, float | None]]]:
    """Downsample ``(ts, sample)`` rows into buckets of ``resolution`` seconds, each metric
    combined as :data:`ROLLUP` says (mean by default; missing values are skipped)."""
    buckets: dict[float, list[tuple[float, dict[str, Any]]]] = {}
    for ts, data in rows:
        buckets.setdefault(math.floor(ts / resolution) * resolution, []).append((ts, data))
    out = []
    for start in sorted(buckets):
        points = sorted(buckets[start], key=lambda p: p[0])
        keys = {k for _, d in points for k in d}
        merged: dict[str, float | None] = {}
        for key in sorted(keys):
            values = [d[key] for _, d in points if d.get(key) is not None]
            if not values:
                merged[key] = None
                continue
            how = ROLLUP.get(key, "avg")
            if how == "max":
                merged[key] = max(values)
            elif how == "min":
                merged[key] = min(values)
            elif how == "last":
                merged[key] = values[-1]
            else:
                merged[key] = sum(values) / len(values)
        out.append((float(start), merged))
    return out


def choose_resolution(settings: ObserveSettings, span_s: float) -> int:
    """The finest tier that still holds ``span_s`` seconds of history (0 = raw)."""
    if span_s <= settings.raw_retention_s:
        return 0
    for tier in settings.tiers:
        if span_s <= tier.retention_s:
            return tier.resolution_s
    return settings.tiers[-1].resolution_s if settings.tiers else 0


def window_value(func: str, points: Sequence[tuple[float, float | None]]) -> float | None:
    """``avg``/``max``/``min``/``increase`` of a metric's ``(ts, value)`` points."""
    values = [v for _, v in points if v is not None]
    if not values:
        return None
    if func == "avg":
        return sum(values) / len(values)
    if func == "max":
        return max(values)
    if func == "min":
        return min(values)
    if func == "increase":
        inc = 0.0
        for a, b in itertools.pairwise(values):
            inc += b - a if b >= a else b      # a counter that went down restarted
        return inc
    raise ValueError(f"unknown function {func!r}")
