"""One view of traffic across control planes.

Every control plane serves ``/run`` through its own gateway, but only the leader scales,
judges canaries, drains replicas and samples the series. So each follower publishes what
its gateway counted, about once a second, to the store (``gateway_traffic``: requests in
flight per replica, held requests, arrivals, answers and latency buckets per replica
template, and the Prometheus counters per deployment), and the leader's ``ClusterTraffic``
adds them to its own gateway's: the autoscaler, the canary analysis, the drain, the
built-in series and metering read the sum over every live gateway.

Counters are summed so that the sum only grows: a follower first seen counts from then
on (what it served before this leader watched is not replayed as a burst), a follower that
restarted (its counters fell) goes on from where it was, and one that is gone keeps what
it had counted. Gauges (in flight, held now) come only from followers that published in
the last ``fresh_s`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from leptonic.core.analysis import N_BUCKETS, TrafficCounters
from leptonic.observe.series import GatewayCounts, read_gateway

#: a follower that has not published for this long counts as gone (its gauges drop out)
FRESH_S = 10.0


def snapshot(gateway: Any) -> dict[str, Any]:
    """What a follower publishes: its gateway's counters, and its Prometheus counters per
    deployment (codes, latency buckets with ``le`` as text, in flight)."""
    series = read_gateway(gateway.metrics.collect())
    data: dict[str, Any] = gateway.counters()
    data["series"] = {dep: {"codes": dict(c.codes),
                            "buckets": [[str(le), n] for le, n in c.buckets],
                            "in_flight": c.in_flight} for dep, c in series.items()}
    return data


@dataclass
class _Holder:
    """One other gateway: the last counters it published, and what makes their sums grow
    only (``base`` per counter)."""

    updated_at: float = 0.0
    base: dict[tuple[Any, ...], float] = field(default_factory=dict)
    last: dict[tuple[Any, ...], float] = field(default_factory=dict)
    gauges: dict[str, Any] = field(default_factory=dict)

    def put(self, key: tuple[Any, ...], value: float, first: bool) -> None:
        last = self.last.get(key)
        if last is None:
            self.base[key] = -value if first else 0.0      # first seen: count from now
        elif value < last:
            self.base[key] += last                         # it restarted: go on from there
        self.last[key] = value

    def values(self) -> Iterable[tuple[tuple[Any, ...], float]]:
        for key, value in self.last.items():
            yield key, self.base[key] + value


class ClusterTraffic:
    """The controller's ``Traffic`` over the local gateway and the followers' (see the
    module docstring); with no follower it answers exactly as the local gateway."""

    def __init__(self, local: Any, fresh_s: float = FRESH_S) -> None:
        self.local = local
        self.fresh_s = fresh_s
        self._holders: dict[str, _Holder] = {}
        self._outstanding: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._arrived: dict[str, float] = {}
        self._held: dict[str, float] = {}
        self._traffic: dict[str, dict[str, TrafficCounters]] = {}
        self._series: dict[str, GatewayCounts] = {}

    # -- what the followers published --------------------------------------------------
    def update(self, rows: Iterable[tuple[str, float, Mapping[str, Any]]], now: float) -> None:
        """Take in the published rows ``(holder, updated_at, data)`` of the other gateways."""
        for holder, at, data in rows:
            h = self._holders.get(holder)
            first = h is None
            if h is None:
                h = self._holders[holder] = _Holder()
            if at <= h.updated_at:
                continue
            h.updated_at = at
            for dep, n in data.get("arrived", {}).items():
                h.put(("arrived", dep), float(n), first)
            for dep, n in data.get("held", {}).items():
                h.put(("held", dep), float(n), first)
            for dep, groups in data.get("traffic", {}).items():
                for group, (requests, errors, buckets) in groups.items():
                    h.put(("t", dep, group, "r"), float(requests), first)
                    h.put(("t", dep, group, "e"), float(errors), first)
                    for i, n in enumerate(buckets):
                        h.put(("t", dep, group, i), float(n), first)
            for dep, s in data.get("series", {}).items():
                for code, n in s.get("codes", {}).items():
                    h.put(("code", dep, code), float(n), first)
                for le, n in s.get("buckets", []):
                    h.put(("le", dep, le), float(n), first)
            h.gauges = {"outstanding": data.get("outstanding", {}),
                        "waiting": data.get("waiting", {}),
                        "in_flight": {dep: float(s.get("in_flight", 0.0))
                                      for dep, s in data.get("series", {}).items()}}
        self._sum(now)

    def _sum(self, now: float) -> None:
        outstanding: dict[str, int] = {}
        waiting: dict[str, int] = {}
        in_flight: dict[str, float] = {}
        arrived: dict[str, float] = {}
        held: dict[str, float] = {}
        parts: dict[tuple[str, str], list[float]] = {}
        series: dict[str, GatewayCounts] = {}
        buckets: dict[str, dict[float, float]] = {}
        for h in self._holders.values():
            if now - h.updated_at <= self.fresh_s:
                for rid, n in h.gauges.get("outstanding", {}).items():
                    outstanding[rid] = outstanding.get(rid, 0) + int(n)
                for dep, n in h.gauges.get("waiting", {}).items():
                    waiting[dep] = waiting.get(dep, 0) + int(n)
                for dep, n in h.gauges.get("in_flight", {}).items():
                    in_flight[dep] = in_flight.get(dep, 0.0) + n
            for key, value in h.values():
                kind = key[0]
                if kind == "arrived":
                    arrived[key[1]] = arrived.get(key[1], 0.0) + value
                elif kind == "held":
                    held[key[1]] = held.get(key[1], 0.0) + value
                elif kind == "t":
                    cell = parts.setdefault((key[1], key[2]), [0.0] * (N_BUCKETS + 2))
                    slot = 0 if key[3] == "r" else 1 if key[3] == "e" else 2 + int(key[3])
                    if slot < len(cell):
                        cell[slot] += value
                elif kind == "code":
                    c = series.setdefault(key[1], GatewayCounts())
                    c.codes[key[2]] = c.codes.get(key[2], 0.0) + value
                elif kind == "le":
                    b = buckets.setdefault(key[1], {})
                    b[float(key[2])] = b.get(float(key[2]), 0.0) + value
        for dep, b in buckets.items():
            series.setdefault(dep, GatewayCounts()).buckets = sorted(b.items())
        for dep, n in in_flight.items():
            series.setdefault(dep, GatewayCounts()).in_flight = n
        traffic: dict[str, dict[str, TrafficCounters]] = {}
        for (dep, group), cell in parts.items():
            traffic.setdefault(dep, {})[group] = TrafficCounters(
                int(cell[0]), int(cell[1]), tuple(int(v) for v in cell[2:]))
        self._outstanding, self._waiting = outstanding, waiting
        self._arrived, self._held, self._traffic, self._series = arrived, held, traffic, series

    # -- the Traffic protocol (controller/context.py) ----------------------------------
    @property
    def outstanding(self) -> Mapping[str, int]:
        local: Mapping[str, int] = self.local.outstanding
        if not self._outstanding:
            return local
        merged = dict(local)
        for rid, n in self._outstanding.items():
            merged[rid] = merged.get(rid, 0) + n
        return merged

    def waiting(self, deployment: str) -> int:
        return int(self.local.waiting(deployment)) + self._waiting.get(deployment, 0)

    def arrived(self, deployment: str) -> int:
        return int(self.local.arrived(deployment)) + int(self._arrived.get(deployment, 0.0))

    def held_total(self, deployment: str) -> int:
        return int(self.local.held_total(deployment)) + int(self._held.get(deployment, 0.0))

    def traffic(self, deployment: str) -> dict[str, TrafficCounters]:
        mine: dict[str, TrafficCounters] = self.local.traffic(deployment)
        theirs = self._traffic.get(deployment)
        if not theirs:
            return mine
        out = dict(mine)
        for group, t in theirs.items():
            out[group] = add(out[group], t) if group in out else t
        return out

    # -- the series ------------------------------------------------------------------------
    def merge_series(self, into: dict[str, GatewayCounts]) -> dict[str, GatewayCounts]:
        """The local gateway's counts per deployment (``read_gateway``) plus the others'."""
        for dep, r in self._series.items():
            c = into.setdefault(dep, GatewayCounts())
            for code, n in r.codes.items():
                c.codes[code] = c.codes.get(code, 0.0) + n
            if r.buckets:
                b = dict(c.buckets)
                for le, n in r.buckets:
                    b[le] = b.get(le, 0.0) + n
                c.buckets = sorted(b.items())
            c.in_flight += r.in_flight
        return into

    @property
    def followers(self) -> int:
        """Other gateways seen (live or gone)."""
        return len(self._holders)


def add(a: TrafficCounters, b: TrafficCounters) -> TrafficCounters:
    """The sum of two gateways' counters of one replica template."""
    x = a.buckets or (0,) * N_BUCKETS
    y = b.buckets or (0,) * N_BUCKETS
    return TrafficCounters(a.requests + b.requests, a.errors + b.errors,
                           tuple(p + q for p, q in zip(x, y, strict=True)))
