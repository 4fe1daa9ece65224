"""Samples from counters, percentiles from histograms, rollups, and the retention bound."""

from __future__ import annotations

import pytest

from leptonic.config.observe import ObserveSettings, Tier
from leptonic.core.analysis import histogram_quantile
from leptonic.observe.series import (
    GatewayCounts,
    ReplicaStat,
    Sampler,
    choose_resolution,
    rollup,
    window_value,
)
from leptonic.observe.service import compact
from leptonic.store.observe import ObserveStore

INF = float("inf")


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (INF, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2 + 0.3 * 0.9)
    assert histogram_quantile(0.99, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.99, [(0.1, 1.0), (INF, 10.0)]) == 0.1   # past the last bound


def counts(ok: float, errors: float, fast: float, slow: float) -> GatewayCounts:
    return GatewayCounts(codes={"200": ok, "503": errors},
                         buckets=[(0.01, fast), (1.0, fast + slow), (INF, fast + slow)])


def test_sampler_turns_counters_into_rates_over_the_interval() -> None:
    s = Sampler()
    reps = [ReplicaStat("echo", "r1", True, 0, cpu_seconds=1.0, rss_bytes=2**20),
            ReplicaStat("echo", "r2", False, 2, cpu_seconds=None, rss_bytes=None)]
    first = s.deployment_sample(100.0, "echo", 2, 2, counts(100, 0, 100, 0), reps)
    assert first["requests_per_s"] is None, "no rates before a second sample"
    assert (first["replicas_ready"], first["replicas_desired"]) == (1.0, 2.0)
    assert first["memory_mb"] == 1.0
    reps[0] = ReplicaStat("echo", "r1", True, 0, cpu_seconds=1.5, rss_bytes=2**20)
    second = s.deployment_sample(110.0, "echo", 2, 2, counts(190, 10, 150, 50), reps)
    assert second["requests_per_s"] == pytest.approx(10.0)
    assert second["errors_per_s"] == pytest.approx(1.0)
    assert second["error_rate"] == pytest.approx(0.1)
    assert second["cpu_percent"] == pytest.approx(5.0)
    assert second["p50_latency_ms"] == pytest.approx(10.0)
    assert second["p99_latency_ms"] is not None
    assert 10.0 < second["p99_latency_ms"] <= 1000.0
    # a gateway restart resets its counters: the new values count from zero
    third = s.deployment_sample(120.0, "echo", 2, 2, counts(20, 0, 20, 0), reps)
    assert third["requests_per_s"] == pytest.approx(2.0)
    idle = s.deployment_sample(130.0, "echo", 2, 2, counts(20, 0, 20, 0), reps)
    assert idle["requests_per_s"] == 0.0
    assert idle["error_rate"] is None, "no traffic is no data, not 0% errors"
    assert idle["p99_latency_ms"] is None


def test_rollup_combines_each_metric_its_own_way() -> None:
    rows = [(0.0, {"requests_per_s": 1.0, "p99_latency_ms": 10.0, "restarts": 1.0}),
            (30.0, {"requests_per_s": 3.0, "p99_latency_ms": 50.0, "restarts": 2.0}),
            (59.0, {"requests_per_s": None, "p99_latency_ms": None, "restarts": 2.0}),
            (60.0, {"requests_per_s": 5.0, "p99_latency_ms": None, "restarts": 3.0})]
    assert rollup(rows, 60) == [
        (0.0, {"p99_latency_ms": 50.0, "requests_per_s": 2.0, "restarts": 2.0}),
        (60.0, {"p99_latency_ms": None, "requests_per_s": 5.0, "restarts": 3.0})]


@pytest.mark.parametrize(("func", "value"), [
    ("avg", 2.5), ("max", 4.0), ("min", 1.0)])
def test_window_functions(func: str, value: float) -> None:
    points = [(0.0, 1.0), (1.0, 2.0), (2.0, None), (3.0, 3.0), (4.0, 4.0)]
    assert window_value(func, points) == pytest.approx(value)


def test_increase_counts_through_a_counter_reset() -> None:
    # 1 -> 2 (+1), reset to 1 (+1), 1 -> 4 (+3)
    assert window_value("increase", [(0, 1.0), (1, 2.0), (2, 1.0), (3, 4.0)]) == 5.0
    assert window_value("increase", [(0, None)]) is None


def test_resolution_follows_the_span() -> None:
    s = ObserveSettings()
    assert choose_resolution(s, 3600) == 0
    assert choose_resolution(s, 6 * 3600) == 60
    assert choose_resolution(s, 3 * 86400) == 600
    assert choose_resolution(s, 30 * 86400) == 600


def test_the_store_stays_bounded_while_history_stays_covered(ostore: ObserveStore) -> None:
    """Ten simulated days of samples every 2 minutes, compacted every 10 minutes: the rows
    of a series never exceed the bound the settings imply, and the coarse tier still
    reaches back to its retention."""
    s = ObserveSettings(interval_s=120, raw_retention_s=3600,
                        tiers=(Tier(600, 6 * 3600), Tier(3600, 2 * 86400)))
    bound = s.max_points_per_series
    assert bound == (30 + 2) + (36 + 2) + (48 + 2)
    start = 1_800_000_000.0
    most = 0
    now = start
    for i in range(10 * 86400 // 120):
        now = start + i * 120
        ostore.add_samples(now, {"deployment/echo": {"requests_per_s": float(i % 7),
                                                     "p99_latency_ms": 5.0}})
        if i % 5 == 0:
            compact(ostore, s, now)
            most = max(most, ostore.count_samples("deployment/echo"))
    assert most <= bound
    assert 0.9 * bound <= most, "every tier really holds data"
    coarse = ostore.samples("deployment/echo", 3600, 0, now)
    assert coarse[0][0] >= now - 2 * 86400 - 3600
    assert coarse[0][0] <= now - 2 * 86400 + 3 * 3600
    assert all(d["p99_latency_ms"] == 5.0 for _, d in coarse)
    last_compaction = now - (now - start) % 600
    assert ostore.samples("deployment/echo", 0, 0, now)[0][0] >= last_compaction - 3600
