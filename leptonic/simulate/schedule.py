"""The replay clock: pod arrivals and departures of a trace through ``core.scheduler``.

Event-driven, on the trace's own time (seconds): a pod arrives at its creation time and is
placed by :meth:`Cluster.decide` under one policy, then bound; it leaves its duration
later (deletion minus scheduled time in the trace; no deletion: it runs to the end of the
trace). A pod that fits nowhere waits in a FIFO queue; the queue is retried, head first,
when a departure frees capacity, and only for pods that could fit on a node that freed
something (every other node has only lost capacity since the pod last failed), so the work
per event stays bounded however long the queue grows.

A node with nothing placed goes to standby after ``standby_after_s`` (the same for every
policy) and draws its ``standby_w``; placing work on a standby node wakes it: the work
starts ``wake_s`` later (counted in its wait) and the node draws its idle power meanwhile.
Power is piecewise constant between events, so energy is the exact integral of the
cluster's power; active nodes and GPU fragmentation are time-weighted means over the
trace, and a fixed grid of samples feeds the plot.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from leptonic.core.power import NodePower
from leptonic.core.scheduler import Binding, Cluster, NodeSpec, Policy, Request
from leptonic.simulate.traces import TraceNode, TracePod

#: the idle time after which an empty node goes to standby, unless told otherwise
STANDBY_AFTER_S = 300.0
#: points of the time series kept for the plot
SAMPLES = 500
_EPS = 1e-9
_J_PER_KWH = 3.6e6

# event kinds, in the order they are handled at one instant: capacity is freed before
# anyone waits for it, and a node about to get work is not put to sleep first
_DEPART, _WOKEN, _ARRIVE, _STANDBY = range(4)


@dataclass(frozen=True)
class Arrival:
    """A unit of work of a trace: when it comes, how long it runs (None: to the end)."""

    at_s: float
    request: Request
    duration_s: float | None = None


def node_specs(nodes: Iterable[TraceNode]) -> list[NodeSpec]:
    """A trace's nodes as the scheduler sees them (datacenter tier, default power)."""
    return [NodeSpec(name=n.name, cpu=n.cpu, memory_mb=n.memory_mib, gpus=n.gpus,
                     gpu_model=n.gpu_model) for n in nodes]


def arrivals(pods: Iterable[TracePod], limit: int | None = None) -> list[Arrival]:
    """A trace's pods as arrivals in time order (the first ``limit`` of them)."""
    out = sorted((Arrival(p.creation_s,
                          Request(owner=p.name, cpu=p.cpu, memory_mb=p.memory_mib,
                                  gpu=p.gpu, gpu_models=p.gpu_models),
                          p.duration_s) for p in pods), key=lambda a: a.at_s)
    return out if limit is None else out[:limit]


@dataclass
class Series:
    """The cluster on a fixed time grid: active nodes, power, pods waiting."""

    t_s: list[float] = field(default_factory=list)
    active_nodes: list[int] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)


@dataclass
class Result:
    """What one replay measured."""

    policy: str
    nodes: int
    pods: int
    placed: int
    unscheduled: int               # never placed by the end of the trace
    max_wait_s: float              # over the pods placed, wake-up included
    mean_wait_s: float
    energy_kwh: float
    mean_active_nodes: float       # time-weighted, waking nodes included
    gpu_fragmentation: float       # FGD, in GPUs, time-weighted mean
    wakes: int
    decisions: int                 # calls to decide
    scheduler_s: float             # wall time inside decide and bind
    wall_s: float
    horizon_s: float               # simulated time
    standby_after_s: float | None
    series: Series = field(default_factory=Series, repr=False)

    def to_dict(self, *, series: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not series:
            del out["series"]
        return out


@dataclass
class _Pod:
    arrival: Arrival
    shape: tuple[Any, ...]


class _Replay:
    """One policy's replay; :func:`replay` is the way in."""

    def __init__(self, nodes: Sequence[NodeSpec], work: Sequence[Arrival], policy: Policy,
                 standby_after_s: float | None, samples: int, until_s: float | None) -> None:
        self.policy = Policy(policy)
        self.work = work
        self.cluster = Cluster(nodes, workload=[a.request for a in work])
        self.names = [n.name for n in nodes]
        self.spec = {n.name: n for n in nodes}
        self.power = {n.name: n.power or NodePower.default(n.cpu, n.gpus, n.gpu_model)
                      for n in nodes}
        self.slot = {n.name: i for i, n in enumerate(nodes)}
        self.standby_after_s = standby_after_s
        # what is free, per node, as the simulator's own ledger: it tells which queued
        # pods a freed node could take without asking the scheduler
        self.free_cpu = {n.name: n.cpu for n in nodes}
        self.free_mem = {n.name: n.memory_mb for n in nodes}
        self.gpu_used = {n.name: [0.0] * n.gpus for n in nodes}
        self.generation = dict.fromkeys(self.names, 0)   # invalidates standby timers
        self.waking: dict[str, float] = {}                 # node -> when it is awake
        self.node_w = np.array([self.cluster.power_w(n) for n in self.names])

        self.t0 = min(work[0].at_s, 0.0) if work else 0.0   # trace time 0, or earlier
        ends = [a.at_s + (a.duration_s or 0.0) for a in work]
        self.end = until_s if until_s is not None else max(ends, default=self.t0)
        self.grid_dt = (self.end - self.t0) / max(samples - 1, 1)
        self.next_sample = self.t0
        self.series = Series()

        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.queue: deque[_Pod] = deque()
        self.arrived = 0
        self.placed = 0
        self.waits: list[float] = []
        self.wakes = 0
        self.decisions = 0
        self.scheduler_s = 0.0
        self.t = self.t0
        self.energy_j = 0.0
        self.active_area = 0.0
        self.frag_area = 0.0
        self.power_now = float(self.node_w.sum())
        self.active_now = self.cluster.active_nodes()
        self.frag_now = self.cluster.gpu_fragmentation()

    # -- the clock --------------------------------------------------------------------------
    def push(self, at: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, payload))

    def run(self) -> None:
        for a in self.work:
            self.push(a.at_s, _ARRIVE, _Pod(a, _shape(a.request)))
        if self.standby_after_s is not None:
            for name in self.names:
                self.push(self.t0 + self.standby_after_s, _STANDBY, (name, 0))
        while self.events and self.events[0][0] <= self.end:
            now = self.events[0][0]
            self.advance(now)
            freed: set[str] = set()
            while self.events and self.events[0][0] == now:
                _, kind, _, payload = heapq.heappop(self.events)
                if kind != _DEPART and freed:
                    self.retry(freed, now)      # the queue before anyone arriving now
                    freed = set()
                if kind == _DEPART:
                    freed.add(self.depart(payload, now))
                elif kind == _WOKEN:
                    self.woken(payload)
                elif kind == _ARRIVE:
                    self.arrived += 1
                    if not self.place(payload, now):
                        self.queue.append(payload)
                else:
                    self.sleep(*payload)
            if freed:
                self.retry(freed, now)
            self.measure()
        self.advance(self.end)
        self.sample_until(self.end, inclusive=True)

    def advance(self, now: float) -> None:
        """Integrate the state held since the last event up to ``now``."""
        self.sample_until(now)
        dt = now - self.t
        if dt > 0:
            self.energy_j += self.power_now * dt
            self.active_area += self.active_now * dt
            self.frag_area += self.frag_now * dt
            self.t = now

    def sample_until(self, now: float, inclusive: bool = False) -> None:
        s = self.series
        while self.next_sample < now or (inclusive and self.next_sample <= now + _EPS):
            s.t_s.append(round(self.next_sample, 3))
            s.active_nodes.append(self.active_now)
            s.power_w.append(round(self.power_now, 3))
            s.waiting.append(len(self.queue))
            if self.grid_dt <= 0:
                break
            self.next_sample += self.grid_dt

    def measure(self) -> None:
        self.power_now = float(self.node_w.sum())
        self.active_now = self.cluster.active_nodes()
        self.frag_now = self.cluster.gpu_fragmentation()

    def refresh(self, node: str) -> None:
        """The node's power now (idle while it wakes up, whatever is bound on it)."""
        watts = (self.power[node].idle_w() if node in self.waking
                 else self.cluster.power_w(node))
        self.node_w[self.slot[node]] = watts

    # -- events -----------------------------------------------------------------------------
    def place(self, pod: _Pod, now: float) -> bool:
        request = pod.arrival.request
        started = time.perf_counter()
        self.decisions += 1
        # a pod that fits nowhere is the common case of a long queue: ask which nodes fit
        # first, as a refused decide also writes every node's reason
        if not len(self.cluster.fits(request)):
            self.scheduler_s += time.perf_counter() - started
            return False
        placement = self.cluster.decide(request, self.policy, now=now)
        if placement.node is None:
            self.scheduler_s += time.perf_counter() - started
            return False
        node = placement.node
        binding = self.cluster.bind(node, request)
        self.scheduler_s += time.perf_counter() - started
        if placement.waking:
            self.wakes += 1
            self.waking[node] = now + self.power[node].wake_s
            self.push(self.waking[node], _WOKEN, node)
        begin = max(now, self.waking.get(node, now))
        self.generation[node] += 1
        self.take(binding, +1.0)
        self.refresh(node)
        self.placed += 1
        self.waits.append(begin - pod.arrival.at_s)
        if pod.arrival.duration_s is not None:
            self.push(begin + pod.arrival.duration_s, _DEPART, binding)
        return True

    def depart(self, binding: Binding, now: float) -> str:
        node = binding.node
        self.cluster.release(binding)
        self.take(binding, -1.0)
        self.refresh(node)
        if self.standby_after_s is not None and self.cluster.is_empty(node):
            self.generation[node] += 1
            self.push(now + self.standby_after_s, _STANDBY, (node, self.generation[node]))
        return node

    def woken(self, node: str) -> None:
        self.waking.pop(node, None)
        self.refresh(node)

    def sleep(self, node: str, generation: int) -> None:
        if generation != self.generation[node] or node in self.waking \
                or not self.cluster.is_empty(node):
            return
        self.cluster.set_standby(node, True)
        self.refresh(node)

    def retry(self, freed: set[str], now: float) -> None:
        """Retry the queue head first, only for pods a freed node might take now."""
        if not self.queue:
            return
        failed: set[tuple[Any, ...]] = set()     # shapes that found no node in this pass
        kept: deque[_Pod] = deque()
        for pod in self.queue:
            if pod.shape in failed or not any(self.might_fit(pod.arrival.request, n)
                                              for n in freed):
                kept.append(pod)
            elif not self.place(pod, now):
                failed.add(pod.shape)
                kept.append(pod)
        self.queue = kept

    # -- the ledger ---------------------------------------------------------------------------
    def take(self, binding: Binding, sign: float) -> None:
        node, request = binding.node, binding.request
        self.free_cpu[node] -= sign * request.cpu
        self.free_mem[node] -= sign * request.memory_mb
        used = self.gpu_used[node]
        for j, share in binding.gpu_shares:
            used[j] += sign * share

    def might_fit(self, request: Request, node: str) -> bool:
        """Whether ``node`` has room for ``request`` (capacity and GPU model only; the
        scheduler has the last word)."""
        if request.cpu > self.free_cpu[node] + _EPS or \
                request.memory_mb > self.free_mem[node] + _EPS:
            return False
        if request.gpu <= 0:
            return True
        spec = self.spec[node]
        if request.gpu_models and (spec.gpu_model or "").upper() not in {
                m.upper() for m in request.gpu_models}:
            return False
        used = self.gpu_used[node]
        if request.gpu < 1:
            return any(1.0 - u >= request.gpu - _EPS for u in used)
        return sum(1 for u in used if u <= _EPS) >= request.gpu - _EPS

    def result(self, wall_s: float) -> Result:
        span = self.end - self.t0

        def mean(area: float, now: float) -> float:
            return area / span if span > 0 else float(now)

        return Result(
            policy=str(self.policy), nodes=len(self.names), pods=self.arrived,
            placed=self.placed, unscheduled=len(self.queue),
            max_wait_s=round(max(self.waits, default=0.0), 3),
            mean_wait_s=round(sum(self.waits) / len(self.waits), 3) if self.waits else 0.0,
            energy_kwh=round(self.energy_j / _J_PER_KWH, 6),
            mean_active_nodes=round(mean(self.active_area, self.active_now), 3),
            gpu_fragmentation=round(mean(self.frag_area, self.frag_now), 3),
            wakes=self.wakes, decisions=self.decisions,
            scheduler_s=round(self.scheduler_s, 4), wall_s=round(wall_s, 4),
            horizon_s=round(span, 3), standby_after_s=self.standby_after_s,
            series=self.series)


def _shape(request: Request) -> tuple[Any, ...]:
    """What decides whether a request fits: equal shapes fit (or not) alike."""
    return (request.cpu, request.memory_mb, request.gpu, request.gpu_models, request.tier,
            tuple(sorted(request.node_selector.items())))


def replay(nodes: Sequence[NodeSpec], work: Sequence[Arrival], policy: Policy | str, *,
           standby_after_s: float | None = STANDBY_AFTER_S, samples: int = SAMPLES,
           until_s: float | None = None) -> Result:
    """Replay ``work`` (in arrival order) on ``nodes`` under ``policy``.

    ``standby_after_s`` None: nodes never go to standby. ``until_s``: when the replay
    stops (default: the last arrival or departure of the trace).
    """
    if standby_after_s is not None and not (standby_after_s >= 0 and
                                            math.isfinite(standby_after_s)):
        raise ValueError(f"standby after {standby_after_s} s: must be 0 or more seconds")
    started = time.perf_counter()
    run = _Replay(nodes, sorted(work, key=lambda a: a.at_s), Policy(policy),
                  standby_after_s, max(samples, 2), until_s)
    run.run()
    return run.result(time.perf_counter() - started)


def compare(nodes: Sequence[NodeSpec], work: Sequence[Arrival],
            policies: Iterable[Policy | str], **options: Any) -> list[Result]:
    """:func:`replay` under each policy, each on a fresh cluster."""
    return [replay(nodes, work, policy, **options) for policy in policies]
