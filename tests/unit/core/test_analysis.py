"""Canary analysis: counters, windows, percentiles and the early-failing checks."""

from __future__ import annotations

import pytest

from leptonic.core.analysis import (
    LATENCY_BOUNDS_MS,
    N_BUCKETS,
    TrafficCounters,
    analyse,
    bucket_of,
    describe,
    verdict,
)
from leptonic.core.models import AnalysisSpec

SPEC = AnalysisSpec()      # >= 99% success, p99 <= 500 ms, 100 requests to pass


def traffic(ok_ms: dict[float, int], errors: int = 0) -> TrafficCounters:
    buckets = [0] * N_BUCKETS
    n = 0
    for ms, count in ok_ms.items():
        buckets[bucket_of(ms)] += count
        n += count
    # errors here are answers that never came (no latency), as for a dead replica
    return TrafficCounters(requests=n + errors, errors=errors, buckets=tuple(buckets))


def test_buckets_put_thresholds_on_bounds() -> None:
    assert bucket_of(0.2) == 0
    assert LATENCY_BOUNDS_MS[bucket_of(500)] == 500          # inclusive upper bound
    assert LATENCY_BOUNDS_MS[bucket_of(500.1)] == 600
    assert bucket_of(10**6) == N_BUCKETS - 1


def test_window_is_a_difference_and_survives_a_reset() -> None:
    base = traffic({5: 10}, errors=1)
    later = traffic({5: 30, 700: 2}, errors=3)
    window = later.since(base)
    assert (window.requests, window.errors, window.slower_than(500)) == (24, 2, 2)
    assert base.since(later) == base, "a counter that went down was reset: count from 0"


def test_quantile_interpolates_inside_the_bucket() -> None:
    t = traffic({4: 99, 700: 1})
    assert t.quantile_ms(0.5) == pytest.approx(3.5, abs=0.6)
    assert 600 < (t.quantile_ms(0.999) or 0) <= 800
    assert TrafficCounters().quantile_ms(0.99) is None


CASES = [
    # name, canary, expected (success-rate, latency-p99)
    ("no traffic is undecided", TrafficCounters(), (None, None)),
    ("few good requests are undecided", traffic({5: 40}), (None, None)),
    ("enough good requests pass", traffic({5: 100}), (True, True)),
    ("one error in the first few is still undecided", traffic({5: 9}, errors=1), (None, None)),
    ("two errors fail at once: 99% of 100 can no longer be reached",
     traffic({5: 8}, errors=2), (False, None)),
    ("1% errors over a full window pass", traffic({5: 199}, errors=2), (True, True)),
    ("1.5% errors over a full window fail", traffic({5: 197}, errors=3), (False, True)),
    ("slow answers fail the latency check early", traffic({5: 20, 900: 2}), (None, False)),
    ("answers at exactly the threshold are not slow", traffic({500: 150}), (True, True)),
]


@pytest.mark.parametrize(("canary", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_checks(canary: TrafficCounters, expected: tuple[bool | None, bool | None]) -> None:
    rate, latency = analyse(SPEC, canary, traffic({5: 500}))
    assert (rate.name, latency.name) == ("success-rate", "latency-p99")
    assert (rate.passed, latency.passed) == expected


def test_figures_and_description_name_both_sets() -> None:
    canary = traffic({5: 8}, errors=2)
    checks = analyse(SPEC, canary, traffic({5: 400}, errors=0))
    rate = checks[0]
    assert rate.value == 80.0
    assert rate.stable == 100.0
    assert rate.threshold == 99.0
    assert verdict(checks) is False
    text = describe(rate)
    assert "success-rate failed" in text
    assert "80%" in text
    assert "10 requests" in text
    assert ">= 99%" in text
    assert "stable 100%" in text
