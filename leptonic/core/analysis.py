"""Rollout analysis: traffic counters of a replica set and the checks a canary must pass.

The gateway counts, per deployment and replica template, the requests it proxied, those
answered 5xx (or not answered at all), and a latency histogram (time to response headers).
Counters only grow; the analysis of a window is the difference of two snapshots.

Both checks are "at most 1% bad": a success rate of at least 99% means at most 1% of
answers failed, a p99 of at most 500 ms means at most 1% of answers took longer. Judged
that way a check can *fail early*: once more bad answers were seen than the whole window
(``min_requests``) may hold, no number of good answers can save it, so a canary that fails
one request in five is rolled back after a handful of requests instead of a hundred.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from leptonic.core.models import AnalysisSpec, CheckResult

#: Upper bounds (ms) of the latency buckets; common thresholds fall on a bound exactly.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200, 250, 300, 400,
    500, 600, 800, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 15000,
    20000, 30000, 60000,
)
N_BUCKETS = len(LATENCY_BOUNDS_MS) + 1      # the last one counts everything slower
_EPS = 1e-9


def bucket_of(latency_ms: float) -> int:
    """Index of the bucket a latency falls in (bounds are inclusive upper bounds)."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


@dataclass(frozen=True)
class TrafficCounters:
    """Cumulative traffic of one replica set as the gateway saw it."""

    requests: int = 0
    errors: int = 0                  # 5xx answers and requests no replica answered
    buckets: tuple[int, ...] = ()    # per LATENCY_BOUNDS_MS bucket, then the overflow

    def since(self, base: TrafficCounters) -> TrafficCounters:
        """The traffic after snapshot ``base``; a reset counter (restart) counts from 0."""
        if self.requests < base.requests or self.errors < base.errors:
            return self
        mine = self.buckets or (0,) * N_BUCKETS
        theirs = base.buckets or (0,) * N_BUCKETS
        return TrafficCounters(self.requests - base.requests, self.errors - base.errors,
                               tuple(max(0, a - b) for a, b in zip(mine, theirs, strict=True)))

    @property
    def success_rate(self) -> float | None:
        return None if not self.requests else 1.0 - self.errors / self.requests

    def slower_than(self, threshold_ms: float) -> int:
        """Answers that took longer than ``threshold_ms`` (exact when it is a bucket bound,
        otherwise only buckets wholly above it count)."""
        if not self.buckets:
            return 0
        first = bisect.bisect_left(LATENCY_BOUNDS_MS, threshold_ms - _EPS)
        if first < len(LATENCY_BOUNDS_MS) and LATENCY_BOUNDS_MS[first] <= threshold_ms + _EPS:
            first += 1          # threshold is this bucket's upper bound: the next is slower
        return sum(self.buckets[first:])

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated linearly inside its bucket; None without
        samples. The same function the alerts and the dashboard read these buckets with."""
        if not self.buckets:
            return None
        return histogram_quantile(q, cumulative_ms(self.buckets))


def cumulative_ms(buckets: Sequence[int]) -> list[tuple[float, float]]:
    """Per-bucket counts (``LATENCY_BOUNDS_MS``, then the overflow) as cumulative
    ``(le, count)`` pairs, ``le`` in ms and the last one infinite (Prometheus' shape)."""
    out: list[tuple[float, float]] = []
    seen = 0
    for le, n in zip((*LATENCY_BOUNDS_MS, math.inf), buckets, strict=True):
        seen += n
        out.append((float(le), float(seen)))
    return out


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(le, count)`` buckets, interpolated linearly
    inside the bucket it falls in (as Prometheus' ``histogram_quantile``); None if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank - _EPS:
            if math.isinf(le):
                return prev_le         # beyond the last finite bucket: its bound
            if count == prev_count:
                return le
            share = max(0.0, min(1.0, (rank - prev_count) / (count - prev_count)))
            return prev_le + (le - prev_le) * share
        prev_le, prev_count = le, count
    return prev_le


def _bad_share_check(bad: int, n: int, max_share: float, min_requests: int) -> bool | None:
    """True/False once decided, None while there are too few requests to tell."""
    if bad > max_share * max(n, min_requests) + _EPS:
        return False            # even a full window of good answers could not make up
    if n >= min_requests:
        return True
    return None


def _pct(rate: float | None) -> float | None:
    return None if rate is None else round(100.0 * rate, 2)


def analyse(spec: AnalysisSpec, canary: TrafficCounters, stable: TrafficCounters
            ) -> list[CheckResult]:
    """Judge the canary's window against the thresholds; the stable set's figures ride
    along so a reader can compare the two."""
    rate_ok = _bad_share_check(canary.errors, canary.requests, 1.0 - spec.min_success_rate,
                               spec.min_requests)
    slow = canary.slower_than(spec.max_p99_ms)
    latency_ok = _bad_share_check(slow, sum(canary.buckets), 0.01, spec.min_requests)
    p99 = canary.quantile_ms(0.99)
    stable_p99 = stable.quantile_ms(0.99)
    return [
        CheckResult(name="success-rate", value=_pct(canary.success_rate),
                    stable=_pct(stable.success_rate),
                    threshold=round(100.0 * spec.min_success_rate, 2), unit="%",
                    requests=canary.requests, stable_requests=stable.requests,
                    passed=rate_ok,
                    detail=f"{canary.errors} of {canary.requests} requests failed"),
        CheckResult(name="latency-p99", value=None if p99 is None else round(p99, 1),
                    stable=None if stable_p99 is None else round(stable_p99, 1),
                    threshold=spec.max_p99_ms, unit="ms", requests=canary.requests,
                    stable_requests=stable.requests, passed=latency_ok,
                    detail=f"{slow} of {canary.requests} requests slower than "
                           f"{spec.max_p99_ms:g} ms"),
    ]


def verdict(checks: list[CheckResult]) -> bool | None:
    """False if any check failed, True if all passed, None while any is undecided."""
    if any(c.passed is False for c in checks):
        return False
    if checks and all(c.passed for c in checks):
        return True
    return None


def describe(check: CheckResult) -> str:
    """One line a person can act on: the check, the canary's figure, the threshold, the
    stable set's figure."""
    def fig(v: float | None) -> str:
        return "n/a" if v is None else f"{v:g}{check.unit}"

    op = ">=" if check.name == "success-rate" else "<="
    verb = {True: "passed", False: "failed", None: "pending"}[check.passed]
    return (f"{check.name} {verb}: canary {fig(check.value)} over {check.requests} requests "
            f"(needs {op} {fig(check.threshold)}), stable {fig(check.stable)} over "
            f"{check.stable_requests}")
