"""Placement of work on nodes: filter the nodes that fit, then score those left.

Pure: a cluster snapshot and a request in, a node (or the reasons none fits) out. The
controller uses it live for replicas; ``leptonic simulate schedule`` replays public traces
through the very same :class:`Cluster`, so what is measured offline is what runs.

**Filter** (every refused node gets its reason; the reasons make the ``Unschedulable``
message a user reads): node state (not ready, cordoned, draining), tier, node selector,
GPU model, CPU, memory and GPUs. A GPU request below 1 is a share of *one* GPU (the
Alibaba trace's ``gpu_milli``, GPU sharing); 1 or more asks for that many whole GPUs.

**Score** (lower is better; ties go to the node first by name, so the same snapshot always
gives the same answer):

- ``spread``: Kubernetes' LeastAllocated, after the replicas of the same owner are spread
  over nodes (fewest first).
- ``pack``: Kubernetes' MostAllocated: fill the fullest node that still fits.
- ``ray-hybrid``: Ray's default hybrid policy (``hybrid_scheduling_policy.h``): a node
  whose critical utilisation (its most used resource, before this work) is below 50%
  scores as empty, so nodes fill in a fixed order (packing) until half full; past that the
  least utilised node wins (spreading). (Ray packs first and spreads after, whatever a
  summary may say the other way round.)
- ``energy``: the marginal watts of the work on that node from its power model (a GPU
  share on its best-fitting GPU), plus, for a node in standby, the watts of keeping it
  awake and the energy of waking it, plus a fragmentation penalty: the growth of the
  node's GPU fragmentation (FGD, Weng et al., USENIX ATC '23: the GPU capacity the typical
  workload could no longer use) priced at what a stranded GPU draws. So it packs, but not
  onto the GPU a whole-GPU task would need.

The cluster is held as numpy arrays over nodes, so a decision is a handful of vector
operations whatever the node count. The energy score (and the fragmentation after a
placement) is kept per request shape and node version, so a decision scores again only the
nodes that changed since that shape was last placed: a few in plain Python, many with
numpy, both with the same operations in the same order, so the same floats and the same
ties. A changed GPU node first gets only its marginal watts, a lower bound of its score;
the stranding penalty is added only while the node's bound is the least (lazy evaluation,
exact: the penalty is never negative). Fragmentation is also remembered by node state,
which recurs: the same few node kinds take the same few shapes.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from leptonic.core.models import (
    DEFAULT_PLACEMENT,
    Node,
    NodeState,
    PlacementPolicy,
    PlacementSpec,
    Resources,
    Tier,
)
from leptonic.core.power import NodePower, node_power

#: resource keys, as in ``Node.capacity``/``Node.allocated``, with how a user names them
RESOURCE_KEYS = (("cpu", "CPU"), ("memory_mb", "MiB of memory"), ("gpu", "GPU"))
_EPS = 1e-9
#: Ray's ``scheduler_spread_threshold``
HYBRID_THRESHOLD = 0.5
#: the energy of waking a node is spread over this long a stay (J -> W)
WAKE_HORIZON_S = 3600.0
#: how many typical task shapes the fragmentation measure weighs (the commonest ones)
WORKLOAD_SHAPES = 16
#: how hard the energy policy guards the cores and memory a GPU node's GPUs need (x the
#: GPU watts per stranded GPU); 3 measured best on the trace's fill reading of multigpu50,
#: and 0 to 10 move energy by under 0.5% on the timed samples (docs)
RESERVE_WEIGHT = 3.0
#: node states whose fragmentation is remembered (then forgotten all at once)
FRAG_MEMO = 100_000
#: request shapes whose per-node what-ifs are kept (then forgotten all at once)
SHAPES_KEPT = 256
#: up to this many nodes changed since a shape was last scored are rescored one by one in
#: plain Python (cheaper than numpy's per-call cost), more at once with numpy
ONE_BY_ONE = 8
_INF = float("inf")


Policy = PlacementPolicy


DEFAULT_POLICY = DEFAULT_PLACEMENT


@dataclass(frozen=True)
class NodeSpec:
    """A node as the scheduler sees it."""

    name: str
    cpu: float                        # cores
    memory_mb: float
    gpus: int = 0
    gpu_model: str | None = None
    tier: str = "datacenter"
    labels: Mapping[str, str] = field(default_factory=dict)
    power: NodePower | None = None    # None: NodePower.default(cpu, gpus, gpu_model)


@dataclass(frozen=True)
class Request:
    """One unit of work (a replica, a job attempt, a trace's pod) to place."""

    owner: str                        # deployment or job: replicas of one owner spread
    cpu: float = 0.0
    memory_mb: float = 0.0
    gpu: float = 0.0                  # < 1: a share of one GPU; >= 1: whole GPUs
    gpu_models: tuple[str, ...] = ()  # allowed GPU models; empty: any
    tier: Tier = Tier.ANY
    node_selector: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, owner: str, resources: Resources | None = None,
           placement: PlacementSpec | None = None) -> Request:
        res = resources or Resources()
        where = placement or PlacementSpec()
        return cls(owner, res.cpu, float(res.memory_mb), res.gpu,
                   tuple(where.gpu_models), where.tier, dict(where.node_selector))

    def shape(self) -> tuple[float, float, float]:
        return (self.cpu, self.memory_mb, self.gpu)


@dataclass(frozen=True)
class Placement:
    """Where the work goes, or (``node`` None) why it cannot go anywhere."""

    node: str | None
    reason: str = ""
    refused: Mapping[str, str] = field(default_factory=dict)   # node name -> why not
    waking: bool = False              # the chosen node is in standby and must wake
    score: float = 0.0


@dataclass(frozen=True)
class Binding:
    """Work bound to a node: what to give back on release (GPU index -> share)."""

    node: str
    request: Request
    gpu_shares: tuple[tuple[int, float], ...] = ()


def _take(row: list[float], gpu: float) -> tuple[tuple[int, float], ...]:
    """Take ``gpu`` from a node's free-per-GPU ``row``, in place (a few GPUs: plain Python
    beats numpy's per-call cost): a share from the best-fitting GPU (the least free that
    fits, the first of equals), whole GPUs from the first whole ones; the shares taken."""
    if gpu <= 0:
        return ()
    if gpu < 1:
        best = -1
        for j, free in enumerate(row):
            if free >= gpu - _EPS and (best < 0 or free < row[best]):
                best = j
        if best < 0:
            return ()
        row[best] = max(row[best] - gpu, 0.0)
        return ((best, gpu),)
    left, taken = round(gpu), []
    for j, free in enumerate(row):
        if left and free >= 1 - _EPS:
            row[j] = 0.0
            taken.append((j, 1.0))
            left -= 1
    return tuple(taken)


def _list_after(row: list[float], gpu: float) -> list[float]:
    """``row`` after :func:`_take` (a what-if on a copy the caller made)."""
    _take(row, gpu)
    return row


def _rows_after(rows: np.ndarray, gpu: float) -> np.ndarray:
    """:func:`_take` for many nodes' rows at once (the rows after, not the shares)."""
    out = rows.copy()
    if gpu <= 0:
        return out
    if gpu < 1:
        fit = np.where(out >= gpu - _EPS, out, _INF)
        j = np.argmin(fit, axis=1)
        at = np.arange(len(out))
        ok = np.isfinite(fit[at, j])
        out[at[ok], j[ok]] = np.maximum(out[at[ok], j[ok]] - gpu, 0.0)
        return out
    full = out >= 1 - _EPS
    out[full & (np.cumsum(full, axis=1) <= round(gpu))] = 0.0
    return out


class Cluster:
    """A mutable snapshot of nodes and what is bound on them."""

    def __init__(self, nodes: Sequence[NodeSpec], *, workload: Iterable[Request] = ()) -> None:
        specs = sorted(nodes, key=lambda n: n.name)
        self.specs = specs
        self.index = {n.name: i for i, n in enumerate(specs)}
        n = len(specs)
        self.cap_cpu = np.array([s.cpu for s in specs], dtype=float)
        self.cap_mem = np.array([s.memory_mb for s in specs], dtype=float)
        self.ngpu = np.array([s.gpus for s in specs], dtype=float)
        self.free_cpu = self.cap_cpu.copy()
        self.free_mem = self.cap_mem.copy()
        width = max([s.gpus for s in specs] + [1])
        self.gpu_free = np.full((n, width), -1.0)           # -1: no such GPU
        for i, s in enumerate(specs):
            self.gpu_free[i, : s.gpus] = 1.0
        self.inv_cpu = _inverse(self.cap_cpu)
        self.inv_mem = _inverse(self.cap_mem)
        self.inv_gpu = _inverse(self.ngpu)
        self.gpu_used = np.zeros(n)
        self.has_gpu = self.ngpu > 0
        self.full_free = self.ngpu.copy()                    # whole GPUs free
        self.max_share = np.where(self.ngpu > 0, 1.0, 0.0)   # largest free share on a GPU
        self.ready = np.ones(n, dtype=bool)                  # ready, not cordoned/draining
        self.why_not = [""] * n                              # the reason when not ready
        self.standby = np.zeros(n, dtype=bool)
        self.bound = np.zeros(n, dtype=int)                  # work items bound
        self.version = np.zeros(n, dtype=np.int64)
        self._owners: list[Counter[str]] = [Counter() for _ in range(n)]
        tiers = sorted({s.tier for s in specs})
        self._tier_mask = {t: np.array([s.tier == t for s in specs], dtype=bool) for t in tiers}
        self._models = np.array([(s.gpu_model or "").upper() for s in specs])
        self._mask_cache: dict[object, np.ndarray] = {}
        powers = [s.power or NodePower.default(s.cpu, s.gpus, s.gpu_model) for s in specs]
        self.powers = powers
        self.cpu_table = np.array([p.cpu.points for p in powers], dtype=float).reshape(n, 11)
        self.gpu_table = np.array([(p.gpu.points if p.gpu else (0.0,) * 11) for p in powers],
                                  dtype=float).reshape(n, 11)
        self.idle_w = np.array([p.idle_w() for p in powers], dtype=float)
        self.standby_w = np.array([p.standby_w for p in powers], dtype=float)
        self.wake_s = np.array([p.wake_s for p in powers], dtype=float)
        self.gpu_slope = self.gpu_table[:, -1] - self.gpu_table[:, 0]
        self.gpu_max_w = self.gpu_table[:, -1]               # what a stranded GPU could draw
        # keeping a standby node awake, plus the energy of waking it spread over an hour
        self.wake_w = self.idle_w - self.standby_w + self.idle_w * self.wake_s / WAKE_HORIZON_S
        self._zeros = np.zeros(n)
        self._row_base = np.arange(n) * 11
        self.cpu_w = _interp(self.cpu_table, np.zeros(n))    # CPU watts now, per node
        self._owner_counts: dict[str, np.ndarray] = {}
        # identical empty nodes score alike, so only the first of each kind is scored
        # (exact: ties go to the lowest name anyway); ``skip`` marks the others
        kinds: dict[tuple[object, ...], int] = {}
        self._kind = [kinds.setdefault(_kind_key(spec, powers[i]), len(kinds))
                      for i, spec in enumerate(specs)]
        self.skip = np.zeros(n, dtype=bool)
        self._members: dict[tuple[int, bool], list[int]] = {}
        self._class: list[tuple[int, bool] | None] = [None] * n
        for i in range(n):
            self._reclass(i)
        self.set_workload(workload)

    # -- the typical workload (fragmentation) --------------------------------------------
    def set_workload(self, workload: Iterable[Request]) -> None:
        """The task mix fragmentation is measured against: the commonest GPU shapes of
        ``workload`` with their frequencies (FGD's "target workload")."""
        counts = Counter((r.cpu, r.memory_mb, r.gpu) for r in workload if r.gpu > 0)
        if not counts:                                  # no GPU work known: whole GPUs
            counts = Counter({(0.0, 0.0, 1.0): 1})
        top = counts.most_common(WORKLOAD_SHAPES)
        total = sum(c for _, c in top)
        self._mix = [(c, m, g, k / total) for (c, m, g), k in top]
        self._mix_tests = [(c - _EPS, m - _EPS, g - _EPS, g < 1, w) for c, m, g, w in self._mix]
        cpu, mem, gpu, share, weight = (np.array(col) for col in zip(*self._mix_tests,
                                                                      strict=True))
        self._mix_cpu, self._mix_mem, self._mix_gpu, self._mix_weight = cpu, mem, gpu, weight
        self._mix_whole = ~share
        self._mix_below = np.where(share, gpu, 1 - _EPS)    # the mark of a usable GPU
        # what a GPU of the typical workload comes with: cores and MiB per whole GPU
        cpu_per_gpu = sum(w * c / g for c, m, g, w in self._mix)
        mem_per_gpu = sum(w * m / g for c, m, g, w in self._mix)
        # GPUs one core (one MiB) lets work; a workload that needs none is never short
        self._gpus_per_core = 1.0 / cpu_per_gpu if cpu_per_gpu > 0 else None
        self._gpus_per_mb = 1.0 / mem_per_gpu if mem_per_gpu > 0 else None

        self._frag_cache: dict[tuple[float, float, float], tuple[np.ndarray, ...]] = {}
        # the energy score of each node for a shape, but the waking term (which a node's
        # version does not cover), or a lower bound of it where the penalty was not yet
        # needed: computed again only where the node changed since
        self._score_cache: dict[tuple[float, float, float], tuple[np.ndarray, ...]] = {}
        # fragmentation by node state (free CPU, memory, GPUs), and after a shape by the
        # state before (keys of different lengths): the same few node kinds take the same
        # few shapes, so states recur (about half of the what-ifs on the trace)
        self._frag_memo: dict[tuple[float, ...], float] = {}
        self.frag = self._fragmentation(self.free_cpu, self.free_mem, self.gpu_free)
        self._dirty: set[int] = set()          # nodes whose ``frag`` is out of date

    def _fresh_frag(self) -> np.ndarray:
        for i in self._dirty:
            self.frag[i] = self._frag_one(float(self.free_cpu[i]), float(self.free_mem[i]),
                                          self.gpu_free[i].tolist())
        self._dirty.clear()
        return self.frag

    def _frag_one(self, free_cpu: float, free_mem: float, row: list[float]) -> float:
        """:meth:`_fragmentation` of one node, in plain Python (a few GPUs: cheaper than
        numpy's per-call cost), remembered by the node's state."""
        key = (free_cpu, free_mem, *row)
        known = self._frag_memo.get(key)
        if known is None:
            known = _remember(self._frag_memo, key, self._frag_of(free_cpu, free_mem, row))
        return known

    def _frag_of(self, free_cpu: float, free_mem: float, row: list[float]) -> float:
        have = sorted(g for g in row if g > 0)
        if not have:
            return 0.0
        sums = list(accumulate(have, initial=0.0))
        total = sums[-1]
        full = len(have) - bisect_left(have, 1 - _EPS)
        partial = sums[len(have) - full]
        best = have[-1]
        out = 0.0
        for c, m, g, share, weight in self._mix_tests:   # the mix, less _EPS
            if free_cpu < c or free_mem < m:
                out += weight * total
            elif share:
                out += weight * (sums[bisect_left(have, g)] if best >= g else total)
            else:
                out += weight * (partial if full >= g else total)
        return out

    def _fragmentation(self, free_cpu: np.ndarray, free_mem: np.ndarray, gpu: np.ndarray
                       ) -> np.ndarray:
        """FGD's expected fragmentation of each node (rows of ``gpu``, in GPUs): for each
        typical task, the free GPU capacity that task could not use there.

        :meth:`_frag_of` for many nodes at once, with the same sums in the same order (so
        the same floats: a tie between alike nodes goes by name whichever way each was
        scored), in a fixed number of array operations whatever the mix.
        """
        srt = np.sort(np.where(gpu > 0, gpu, 0.0), axis=1)   # no GPU, a full GPU: 0
        n, width = srt.shape
        sums = np.zeros((n, width + 1))
        np.cumsum(srt, axis=1, out=sums[:, 1:])
        total = sums[:, -1:]
        # a test task cannot use the GPUs with less free than it needs (a share), or the
        # GPUs not wholly free (whole GPUs): the sum of the GPUs below its mark
        below = (srt[:, :, None] < self._mix_below).sum(axis=1)
        lost = np.take_along_axis(sums, below, axis=1)
        full = width - (srt < 1 - _EPS).sum(axis=1, keepdims=True)
        short = ((free_cpu[:, None] < self._mix_cpu) | (free_mem[:, None] < self._mix_mem)
                 | (self._mix_whole & (full < self._mix_gpu)))
        lost = np.where(short, total, lost)
        out: np.ndarray = np.cumsum(lost * self._mix_weight, axis=1)[:, -1]
        return out

    def _frag_after(self, request: Request, idx: np.ndarray) -> np.ndarray:
        """Fragmentation of the nodes ``idx`` if ``request`` were bound there (cached per
        request shape; only nodes changed since are recomputed)."""
        values, versions = self._per_shape(self._frag_cache, request)
        stale = idx[versions[idx] != self.version[idx]]
        if len(stale) > ONE_BY_ONE:
            rows = _rows_after(self.gpu_free[stale], request.gpu)
            values[stale] = self._fragmentation(self.free_cpu[stale] - request.cpu,
                                                self.free_mem[stale] - request.memory_mb, rows)
            versions[stale] = self.version[stale]
        else:
            for i in stale.tolist():
                self._frag_after_one(request, i, values, versions)
        out: np.ndarray = values[idx]
        return out

    def _frag_after_one(self, request: Request, i: int, values: np.ndarray,
                        versions: np.ndarray) -> float:
        """One node's :meth:`_frag_after`, remembered by the node's state and the shape."""
        free_cpu, free_mem = float(self.free_cpu[i]), float(self.free_mem[i])
        row = self.gpu_free[i].tolist()
        key = (*request.shape(), free_cpu, free_mem, *row)
        out = self._frag_memo.get(key)
        if out is None:
            out = _remember(self._frag_memo, key, self._frag_one(
                free_cpu - request.cpu, free_mem - request.memory_mb,
                _list_after(row, request.gpu)))
        values[i] = out
        versions[i] = self.version[i]
        return out

    def _per_shape(self, cache: dict[tuple[float, float, float], tuple[np.ndarray, ...]],
                   request: Request, *, exact: bool = False) -> tuple[np.ndarray, ...]:
        """The arrays ``cache`` keeps for the request's shape: values, the node version
        each is of, and (``exact``) whether each is exact or a lower bound."""
        key = request.shape()
        cached = cache.get(key)
        if cached is None:
            if len(cache) >= SHAPES_KEPT:
                cache.clear()
            n = len(self.specs)
            cached = (np.zeros(n), np.full(n, -1, dtype=np.int64))
            cache[key] = cached = (*cached, np.zeros(n, dtype=bool)) if exact else cached
        return cached

    # -- node state ------------------------------------------------------------------------
    def _reclass(self, i: int) -> None:
        """Put node ``i`` in the class of identical empty ready nodes it now belongs to
        (or none), keeping ``skip`` true for every member but the first."""
        old = self._class[i]
        new = (self._kind[i], bool(self.standby[i])) \
            if self.ready[i] and not self.bound[i] else None
        if old == new:
            return
        self._class[i] = new
        self.skip[i] = False
        if old is not None:                 # members: sorted, the first is scored
            members = self._members[old]
            at = bisect_left(members, i)
            del members[at]
            if at == 0 and members:
                self.skip[members[0]] = False
        if new is not None:
            members = self._members.setdefault(new, [])
            insort(members, i)
            if members[0] != i:
                self.skip[i] = True
            elif len(members) > 1:
                self.skip[members[1]] = True

    def hold(self, i: int, ready: bool) -> None:
        """Take node ``i`` out of (or back into) placement for a moment, keeping its
        reason (what-if passes such as :func:`consolidation`)."""
        self.ready[i] = ready
        self._reclass(i)

    def set_ready(self, node: str, ready: bool, why: str = "not ready") -> None:
        i = self.index[node]
        self.ready[i] = ready
        self.why_not[i] = "" if ready else why
        self._reclass(i)

    def set_standby(self, node: str, standby: bool) -> None:
        i = self.index[node]
        self.standby[i] = standby
        self._reclass(i)

    def is_standby(self, node: str) -> bool:
        return bool(self.standby[self.index[node]])

    def is_empty(self, node: str) -> bool:
        return not self.bound[self.index[node]]

    def empty_nodes(self) -> list[str]:
        return [self.specs[i].name for i in np.flatnonzero(self.bound == 0)]

    def critical(self, i: int) -> float:
        """Node ``i``'s most used resource, as a share (Ray's critical utilisation)."""
        return float(max((self.cap_cpu[i] - self.free_cpu[i]) * self.inv_cpu[i],
                         (self.cap_mem[i] - self.free_mem[i]) * self.inv_mem[i],
                         self.gpu_used[i] * self.inv_gpu[i]))

    def owners(self, node: str) -> Counter[str]:
        return Counter(self._owners[self.index[node]])

    # -- deciding --------------------------------------------------------------------------
    def _static_mask(self, request: Request) -> np.ndarray:
        key = (request.tier,
               tuple(sorted(request.node_selector.items())) if request.node_selector else (),
               tuple(sorted(m.upper() for m in request.gpu_models)) if request.gpu_models
               else ())
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = np.ones(len(self.specs), dtype=bool)
            if request.tier is not Tier.ANY:
                mask &= self._tier_mask.get(request.tier.value,
                                            np.zeros(len(self.specs), dtype=bool))
            for k, v in request.node_selector.items():
                mask &= np.array([s.labels.get(k) == v for s in self.specs], dtype=bool)
            if request.gpu_models:
                mask &= np.isin(self._models, [m.upper() for m in request.gpu_models])
            self._mask_cache[key] = mask
        return mask

    def fit_mask(self, request: Request) -> np.ndarray:
        """Which nodes can take ``request`` now."""
        mask = self._static_mask(request) & self.ready
        if request.cpu:
            mask &= self.free_cpu >= request.cpu - _EPS
        if request.memory_mb:
            mask &= self.free_mem >= request.memory_mb - _EPS
        if request.gpu >= 1:
            mask &= self.full_free >= request.gpu - _EPS
        elif request.gpu > 0:
            mask &= self.max_share >= request.gpu - _EPS
        return mask

    def fits(self, request: Request) -> list[str]:
        """The names of the nodes that can take ``request`` now."""
        return [self.specs[i].name for i in np.flatnonzero(self.fit_mask(request))]

    def decide(self, request: Request, policy: Policy = DEFAULT_POLICY, *, now: float = 0.0,
               spread: Mapping[str, int] | None = None) -> Placement:
        """The node for ``request`` under ``policy``; ``spread`` counts the owner's work
        per node already (the cluster's own count when None). ``now`` is for policies
        that look at time; none of today's do."""
        mask = self.fit_mask(request)
        if not mask.any():
            refused = {s.name: self.refusal(i, request) or "" for i, s in enumerate(self.specs)}
            return Placement(None, self.unschedulable(request, refused), refused)
        if spread is None:              # an owner count given from outside may differ
            mask &= ~self.skip
        if policy is Policy.ENERGY:     # few candidates once alike empty nodes are one
            cand = np.flatnonzero(mask)
            i, score = self._energy_best(request, cand)
            return Placement(self.specs[i].name, waking=bool(self.standby[i]), score=score)
        scores = np.where(mask, self.scores(request, policy, mask, spread), _INF)
        i = int(np.argmin(scores))                   # the first minimum: the lowest name
        return Placement(self.specs[i].name, waking=bool(self.standby[i]),
                         score=float(scores[i]))

    def scores(self, request: Request, policy: Policy, mask: np.ndarray,
               spread: Mapping[str, int] | None = None) -> np.ndarray:
        """Every node's score under ``policy`` (lower is better; only nodes in ``mask``
        are meaningful)."""
        if policy is Policy.ENERGY:
            out = np.full(len(self.specs), _INF)
            cand = np.flatnonzero(mask)
            out[cand] = self._energy(request, cand)
            return out
        cpu_after = (self.cap_cpu - self.free_cpu + request.cpu) * self.inv_cpu
        mem_after = (self.cap_mem - self.free_mem + request.memory_mb) * self.inv_mem
        if policy is Policy.RAY_HYBRID:     # the node's utilisation now, as Ray scores it
            critical = np.maximum(np.maximum((self.cap_cpu - self.free_cpu) * self.inv_cpu,
                                             (self.cap_mem - self.free_mem) * self.inv_mem),
                                  self.gpu_used * self.inv_gpu)
            return np.where(critical < HYBRID_THRESHOLD, 0.0, critical)
        if request.gpu > 0:     # as Kubernetes' NodeResourcesFit: the resources asked for
            used = (cpu_after + mem_after + (self.gpu_used + request.gpu) * self.inv_gpu) / 3
        else:
            used = (cpu_after + mem_after) / 2.0
        score: np.ndarray = 1.0 - used if policy is Policy.PACK else \
            self._spread_counts(request.owner, spread) * 2.0 + used     # owner apart first
        return score

    def _spread_counts(self, owner: str, spread: Mapping[str, int] | None) -> np.ndarray:
        if spread is None:
            return self._owner_counts.get(owner, self._zeros)
        out = self._zeros.copy()
        for name, count in spread.items():
            if name in self.index:
                out[self.index[name]] = count
        return out

    def _energy(self, request: Request, cand: np.ndarray) -> np.ndarray:
        """The energy score of each node in ``cand``: marginal watts, waking, and the GPU
        capacity the placement would strand (the penalty), priced at what a GPU draws."""
        values, exact = self._bounds(request, cand)
        todo = cand[~exact[cand]]
        if len(todo) > ONE_BY_ONE:
            values[todo] = values[todo] + self._penalty_of(request, todo)
            exact[todo] = True
        elif len(todo):
            frag = self._per_shape(self._frag_cache, request)
            for i in todo.tolist():
                values[i] = float(values[i]) + self._penalty_one(request, i, frag)
                exact[i] = True
        return self._waking(cand, values[cand])

    def _energy_best(self, request: Request, cand: np.ndarray) -> tuple[int, float]:
        """The node of ``cand`` with the least energy score, and its score, as
        :meth:`_energy` would find them, computing the penalty (never negative: the
        watts are a lower bound) only of nodes whose bound comes first: the least value
        is taken while it is a bound, its penalty added, until the least is a score. The
        first of equal values wins (``cand`` ascends: the lowest name), as a bound that
        ties a score can only tie it once its penalty is added."""
        values, exact = self._bounds(request, cand)
        least = self._waking(cand, values[cand])
        frag = None
        while True:
            k = int(np.argmin(least))
            i = int(cand[k])
            if exact[i]:
                return i, float(least[k])
            if frag is None:
                frag = self._per_shape(self._frag_cache, request)
            score = values[i] = float(values[i]) + self._penalty_one(request, i, frag)
            exact[i] = True
            least[k] = score + float(self.wake_w[i]) if self.standby[i] else score

    def _waking(self, cand: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values`` plus, for nodes in standby, the watts of waking them."""
        asleep = self.standby[cand]
        out: np.ndarray = values + np.where(asleep, self.wake_w[cand], 0.0) \
            if asleep.any() else values
        return out

    def _bounds(self, request: Request, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shape's kept values (and whether each is the score, not a bound) with every
        node of ``cand`` changed since given its marginal watts again: the score of a
        node without GPUs, the lower bound of a GPU node's (its penalty to add)."""
        values, versions, exact = self._per_shape(self._score_cache, request, exact=True)
        stale = cand[versions[cand] != self.version[cand]]
        if len(stale) > ONE_BY_ONE:
            values[stale] = self._watts(request, stale)
            exact[stale] = ~self.has_gpu[stale]
            versions[stale] = self.version[stale]
        else:
            for i in stale.tolist():
                values[i] = self._watts_one(request, i)
                exact[i] = not self.has_gpu[i]
                versions[i] = self.version[i]
        return values, exact

    def _watts(self, request: Request, idx: np.ndarray) -> np.ndarray:
        """The marginal watts of ``request`` on each node of ``idx``: its CPU share on the
        node's CPU curve, and its GPUs (linear per GPU: W per GPU)."""
        cpu_after = (self.cap_cpu[idx] - self.free_cpu[idx] + request.cpu) * self.inv_cpu[idx]
        out: np.ndarray = _interp(self.cpu_table, cpu_after, self._row_base[idx]) - \
            self.cpu_w[idx]
        if request.gpu > 0:
            out += self.gpu_slope[idx] * request.gpu
        return out

    def _watts_one(self, request: Request, i: int) -> float:
        """:meth:`_watts` of one node in plain Python, the same operations in the same
        order (so the same float, whichever way a node is scored)."""
        cpu_after = (float(self.cap_cpu[i]) - float(self.free_cpu[i]) + request.cpu) * \
            float(self.inv_cpu[i])
        out = self.powers[i].cpu.watts(cpu_after) - float(self.cpu_w[i])
        if request.gpu > 0:
            out += float(self.gpu_slope[i]) * request.gpu
        return out

    def _penalty_of(self, request: Request, idx: np.ndarray) -> np.ndarray:
        """The stranding penalty of ``request`` on each GPU node of ``idx`` (watts): the
        growth of fragmentation and the reserve taken, priced at what a GPU draws."""
        grow = self._frag_after(request, idx) - self._fresh_frag()[idx]
        grow = np.maximum(grow, 0.0) + RESERVE_WEIGHT * self._reserve_taken(request, idx)
        out: np.ndarray = grow * self.gpu_max_w[idx]
        return out

    def _penalty_one(self, request: Request, i: int,
                     frag: tuple[np.ndarray, ...]) -> float:
        """:meth:`_penalty_of` of one node in plain Python, the same operations in the
        same order."""
        values, versions = frag     # the shape's fragmentation what-ifs
        after = float(values[i]) if versions[i] == self.version[i] else \
            self._frag_after_one(request, i, values, versions)
        if i in self._dirty:
            self._fresh_frag()
        grow = max(after - float(self.frag[i]), 0.0)
        grow += RESERVE_WEIGHT * self._reserve_taken_one(
            request, float(self.ngpu[i] - self.gpu_used[i]), float(self.free_cpu[i]),
            float(self.free_mem[i]))
        return grow * float(self.gpu_max_w[i])

    def _reserve_taken(self, request: Request, idx: np.ndarray) -> np.ndarray:
        """GPUs each node of ``idx`` would be left without the cores or memory to use (at
        what the typical GPU task needs per GPU) if ``request`` went there, less those
        already so: CPU-only work eats into what a GPU node's GPUs need, a little at a
        time, before the fragmentation measure sees a task no longer fit."""
        gpu = self.ngpu[idx] - self.gpu_used[idx]
        cpu, mem = self.free_cpu[idx], self.free_mem[idx]
        taken = self._short(gpu - request.gpu, cpu - request.cpu, mem - request.memory_mb)
        out: np.ndarray = np.maximum(taken - self._short(gpu, cpu, mem), 0.0)
        return out

    def _short(self, gpu: np.ndarray, cpu: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """Free GPUs the free cores or memory cannot feed (at the typical task's needs)."""
        out = np.zeros(len(gpu))
        if self._gpus_per_core is not None:
            out = np.maximum(out, gpu - cpu * self._gpus_per_core)
        if self._gpus_per_mb is not None:
            out = np.maximum(out, gpu - mem * self._gpus_per_mb)
        return out

    def _reserve_taken_one(self, request: Request, gpu: float, cpu: float, mem: float
                           ) -> float:
        """:meth:`_reserve_taken` of one node with ``gpu``, ``cpu`` and ``mem`` free (the
        same operations as :meth:`_short` twice, in plain Python)."""
        after, now = 0.0, 0.0
        per_core, per_mb = self._gpus_per_core, self._gpus_per_mb
        if per_core is not None:
            after = max(after, (gpu - request.gpu) - (cpu - request.cpu) * per_core)
            now = max(now, gpu - cpu * per_core)
        if per_mb is not None:
            after = max(after, (gpu - request.gpu) - (mem - request.memory_mb) * per_mb)
            now = max(now, gpu - mem * per_mb)
        return max(after - now, 0.0)

    # -- binding ---------------------------------------------------------------------------
    def bind(self, node: str, request: Request) -> Binding:
        """Account ``request`` on ``node`` (which must fit it, or the call is refused)."""
        i = self.index[node]
        row = self.gpu_free[i].tolist()
        shares = _take(row, request.gpu)
        if (request.gpu > 0 and not shares) or (request.gpu >= 1 and len(shares) < request.gpu):
            raise ValueError(f"node {node} has no GPU room for {request.gpu:g} GPU")
        known = self._frag_cache.get(request.shape())   # what decide computed for this
        after = float(known[0][i]) if known is not None and \
            known[1][i] == self.version[i] else None
        self.gpu_free[i] = row
        self.free_cpu[i] -= request.cpu
        self.free_mem[i] -= request.memory_mb
        self._owners[i][request.owner] += 1
        counts = self._owner_counts.get(request.owner)
        if counts is None:
            counts = self._owner_counts[request.owner] = np.zeros(len(self.specs))
        counts[i] += 1
        self.bound[i] += 1
        self.standby[i] = False
        self._changed(i)
        if after is not None:       # decide's what-if is what happened (same best fit)
            self.frag[i] = after
            self._dirty.discard(i)
        return Binding(node, request, shares)

    def release(self, binding: Binding) -> None:
        i = self.index[binding.node]
        for j, share in binding.gpu_shares:
            self.gpu_free[i, j] = min(self.gpu_free[i, j] + share, 1.0)
        self.free_cpu[i] = min(self.free_cpu[i] + binding.request.cpu, self.cap_cpu[i])
        self.free_mem[i] = min(self.free_mem[i] + binding.request.memory_mb, self.cap_mem[i])
        owner = binding.request.owner
        owners = self._owners[i]
        owners[owner] -= 1
        counts = self._owner_counts[owner]
        counts[i] -= 1
        if owners[owner] <= 0:
            del owners[owner]
            if not counts.any():
                del self._owner_counts[owner]
        self.bound[i] -= 1
        if not self.bound[i]:       # empty again: exactly as new (no rounding left over)
            self.free_cpu[i], self.free_mem[i] = self.cap_cpu[i], self.cap_mem[i]
            self.gpu_free[i, : int(self.ngpu[i])] = 1.0
        self._changed(i)

    def place(self, request: Request, policy: Policy = DEFAULT_POLICY, *, now: float = 0.0
              ) -> tuple[Placement, Binding | None]:
        """Decide and bind in one step."""
        placed = self.decide(request, policy, now=now)
        if placed.node is None:
            return placed, None
        return placed, self.bind(placed.node, request)

    def _changed(self, i: int) -> None:
        if self.has_gpu[i]:         # a few GPUs: plain Python beats numpy's per-call cost
            full, free, best = 0, 0.0, 0.0
            for g in self.gpu_free[i, : int(self.ngpu[i])].tolist():
                if g >= 1 - _EPS:
                    full += 1
                if g > 0:
                    free += g
                if g > best:
                    best = g
            self.full_free[i], self.max_share[i] = full, best
            self.gpu_used[i] = self.ngpu[i] - free
        cpu = (self.cap_cpu[i] - self.free_cpu[i]) * self.inv_cpu[i]
        self.cpu_w[i] = self.powers[i].cpu.watts(float(cpu))
        self.version[i] += 1
        self._dirty.add(i)
        self._reclass(i)

    # -- measures --------------------------------------------------------------------------
    def utilisation(self, node: str) -> tuple[float, list[float]]:
        """Allocated share of the node's CPU, and of each of its GPUs."""
        i = self.index[node]
        cpu = 1.0 - self.free_cpu[i] / self.cap_cpu[i] if self.cap_cpu[i] else 0.0
        gpus = [1.0 - float(f) for f in self.gpu_free[i, : int(self.ngpu[i])]]
        return float(cpu), gpus

    def power_w(self, node: str) -> float:
        i = self.index[node]
        if self.standby[i]:
            return float(self.standby_w[i])
        cpu, gpus = self.utilisation(node)
        return self.powers[i].watts(cpu, gpus)

    def powers_w(self) -> np.ndarray:
        """Every node's power now, vectorised (standby nodes at their standby draw)."""
        cpu = (self.cap_cpu - self.free_cpu) * self.inv_cpu
        out = _interp(self.cpu_table, cpu)
        if self.ngpu.any():
            util = np.where(self.gpu_free >= 0, 1.0 - self.gpu_free, np.nan)
            g = self.gpu_table
            for j in range(self.gpu_free.shape[1]):
                col = util[:, j]
                out = out + np.where(np.isnan(col), 0.0, _interp(g, np.nan_to_num(col)))
        return np.where(self.standby, self.standby_w, out)

    def total_power_w(self) -> float:
        return float(self.powers_w().sum())

    def active_nodes(self) -> int:
        return int((~self.standby).sum())

    def gpu_fragmentation(self) -> float:
        """FGD's expected fragmented GPU capacity over the cluster (in GPUs)."""
        return float(self._fresh_frag().sum())

    def gpu_free_total(self) -> float:
        return float(np.where(self.gpu_free > 0, self.gpu_free, 0.0).sum())

    # -- why not ---------------------------------------------------------------------------
    def refusal(self, i: int, request: Request) -> str | None:
        """Why node ``i`` cannot take ``request`` now, or None if it can."""
        spec = self.specs[i]
        if not self.ready[i]:
            return self.why_not[i] or "not ready"
        if request.tier is not Tier.ANY and spec.tier != request.tier.value:
            return f"a {spec.tier} node, not {request.tier.value}"
        for key, value in sorted(request.node_selector.items()):
            if spec.labels.get(key) != value:
                return f"no label {key}={value}"
        if request.gpu_models and (spec.gpu_model or "").upper() not in {
                m.upper() for m in request.gpu_models}:
            return f"GPU model {spec.gpu_model or 'none'}, not {'|'.join(request.gpu_models)}"
        for have, need, unit in ((self.free_cpu[i], request.cpu, "CPU"),
                                 (self.free_mem[i], request.memory_mb, "MiB of memory")):
            if need > have + _EPS:
                return f"{_fmt(max(float(have), 0.0))} {unit} free, {_fmt(need)} needed"
        if request.gpu >= 1 and self.full_free[i] < request.gpu - _EPS:
            return f"{_fmt(float(self.full_free[i]))} GPU free, {_fmt(request.gpu)} needed"
        if 0 < request.gpu < 1 and self.max_share[i] < request.gpu - _EPS:
            if not self.ngpu[i]:
                return f"0 GPU free, {_fmt(request.gpu)} needed"
            return (f"no GPU with {_fmt(request.gpu)} free (at most "
                    f"{_fmt(round(float(self.max_share[i]), 3))} on one GPU)")
        return None

    def unschedulable(self, request: Request, refused: Mapping[str, str]) -> str:
        return unschedulable_message(request, refused, bool(self.specs))


@dataclass(frozen=True)
class Consolidation:
    """Empty ``node`` by moving its work to ``moves`` (request -> node): saves
    ``saving_w`` once the node is in standby."""

    node: str
    moves: tuple[tuple[Request, str], ...]
    saving_w: float


#: a node is "nearly empty" when its most used resource is at most this share
NEARLY_EMPTY = 0.25
#: a move must save at least this much (W) to be worth its disruption
MIN_SAVING_W = 5.0


def consolidation(cluster: Cluster, movable: Mapping[str, Sequence[Request]], *,
                  nearly_empty: float = NEARLY_EMPTY, min_saving_w: float = MIN_SAVING_W
                  ) -> Consolidation | None:
    """The nearly empty node whose work (all of it in ``movable[node]``) fits on other
    nodes that hold work, chosen where the energy policy would put it, and saves the most watts
    once that node stands by; None when no move saves ``min_saving_w``. The cluster is
    left as it was."""
    best: Consolidation | None = None
    awake_ready = [i for i in range(len(cluster.specs))
                   if cluster.ready[i] and not cluster.standby[i]]
    for i in awake_ready:
        name = cluster.specs[i].name
        work = list(movable.get(name, ()))
        if not work or len(work) != cluster.bound[i] or cluster.critical(i) > nearly_empty:
            continue
        before = cluster.total_power_w()
        # only nodes that hold work already take it: never wake a node, nor fill an
        # empty one (that only moves the idle draw, and the next pass would move it back)
        asleep = [j for j in np.flatnonzero(cluster.standby | (cluster.bound == 0)).tolist()
                  if cluster.ready[j]]
        cluster.hold(i, False)
        for j in asleep:
            cluster.hold(j, False)
        tried: list[Binding] = []
        moves: list[tuple[Request, str]] = []
        try:
            for request in sorted(work, key=lambda r: (-r.gpu, -r.cpu, -r.memory_mb)):
                placed = cluster.decide(request, Policy.ENERGY)
                if placed.node is None:
                    break
                tried.append(cluster.bind(placed.node, request))
                moves.append((request, placed.node))
            else:
                # the node's whole draw goes to standby; the targets draw a little more
                extra = cluster.total_power_w() - before
                saving = cluster.power_w(name) - float(cluster.standby_w[i]) - extra
                if saving >= min_saving_w and (best is None or saving > best.saving_w):
                    best = Consolidation(name, tuple(moves), saving)
        finally:
            for b in tried:
                cluster.release(b)
            cluster.hold(i, True)
            for j in asleep:
                cluster.hold(j, True)
    return best


def _kind_key(spec: NodeSpec, power: NodePower) -> tuple[object, ...]:
    """What makes two empty nodes score alike under every policy."""
    return (spec.cpu, spec.memory_mb, spec.gpus, (spec.gpu_model or "").upper(), spec.tier,
            tuple(sorted(spec.labels.items())), power.cpu.points,
            power.gpu.points if power.gpu else None, power.standby_w, power.wake_s)


def _remember(memo: dict[tuple[float, ...], float], key: tuple[float, ...], value: float
              ) -> float:
    """``memo[key] = value``, forgetting everything first once the memo is full."""
    if len(memo) >= FRAG_MEMO:
        memo.clear()
    memo[key] = value
    return value


def _inverse(cap: np.ndarray) -> np.ndarray:
    """1/cap, and 0 where there is none (a share of nothing is 0)."""
    safe = np.where(cap > 0, cap, 1.0)
    return np.where(cap > 0, 1.0 / safe, 0.0)


def _interp(table: np.ndarray, util: np.ndarray, base: np.ndarray | None = None
            ) -> np.ndarray:
    """Row-wise interpolation of 11-point tables at utilisations in 0..1 (``base``: each
    row's offset in the flattened table, when the caller keeps it)."""
    u = np.clip(util, 0.0, 1.0) * 10.0
    low = np.minimum(u.astype(np.intp), 9)
    flat = table.reshape(-1)
    at = (np.arange(len(table)) * table.shape[1] if base is None else base) + low
    a = flat[at]
    out: np.ndarray = a + (flat[at + 1] - a) * (u - low)
    return out


# -- the platform's view: Node models in, one placement out --------------------------------

def node_spec(node: Node) -> NodeSpec:
    return NodeSpec(name=node.name, cpu=node.capacity.get("cpu", 0.0),
                    memory_mb=node.capacity.get("memory_mb", 0.0),
                    gpus=int(node.capacity.get("gpu", 0.0)), gpu_model=node.gpu_model,
                    tier=node.tier, labels=dict(node.labels), power=node_power(node))


def cluster_of(nodes: Sequence[Node], held: Iterable[tuple[str, Request]] = ()) -> Cluster:
    """A :class:`Cluster` of the platform's nodes with ``held`` (node, request) bound, in
    order (what runs now; work on a node that is gone or over capacity is counted as far
    as it fits)."""
    cluster = Cluster([node_spec(n) for n in nodes])
    for n in nodes:
        state = n.state()
        if state is NodeState.STANDBY:
            cluster.set_standby(n.name, True)
        elif state is not NodeState.READY:
            cluster.set_ready(n.name, False, _STATE_WHY[state])
    for name, request in held:
        if name not in cluster.index:
            continue
        try:
            cluster.bind(name, request)
        except ValueError:                    # more than fits (capacity shrank): count CPU
            cluster.bind(name, Request(request.owner, request.cpu, request.memory_mb))
    return cluster


_STATE_WHY = {NodeState.NOT_READY: "not ready", NodeState.CORDONED: "cordoned",
              NodeState.DRAINING: "draining"}


def place(nodes: Sequence[Node], request: Request, spread: Mapping[str, int] | None = None,
          policy: Policy = DEFAULT_POLICY, held: Iterable[tuple[str, Request]] | None = None,
          keep_out: Mapping[str, str] | None = None) -> Placement:
    """The node for one replica of ``request.owner`` among the platform's ``nodes``.
    ``spread`` counts that owner's replicas per node already; ``held`` is what runs there
    now (so GPU shares land as they do); None takes each node's ``allocated`` as one item.
    ``keep_out`` names nodes to leave alone this time, with why."""
    if held is None:
        held = [(n.name, Request("", n.allocated.get("cpu", 0.0),
                                 n.allocated.get("memory_mb", 0.0),
                                 _whole_or_share(n.allocated.get("gpu", 0.0))))
                for n in nodes if any(n.allocated.values())]
    cluster = cluster_of(nodes, held)
    for name, why in (keep_out or {}).items():       # e.g. a node being emptied
        if name in cluster.index:
            cluster.set_ready(name, False, why)
    return cluster.decide(request, policy, spread=spread or {})


def _whole_or_share(gpu: float) -> float:
    return float(round(gpu)) if gpu >= 1 else gpu


def refusal(node: Node, request: Request) -> str | None:
    """Why ``node`` cannot take the request, or None if it can."""
    cluster = cluster_of([node], [(node.name, Request("", node.allocated.get("cpu", 0.0),
                                                      node.allocated.get("memory_mb", 0.0),
                                                      _whole_or_share(
                                                          node.allocated.get("gpu", 0.0))))]
                         if any(node.allocated.values()) else [])
    return cluster.refusal(0, request)


def unschedulable_message(request: Request, refused: Mapping[str, str], any_nodes: bool
                          ) -> str:
    """``Unschedulable: no ready edge node with 2 CPU free`` and the count of each reason."""
    tier = request.tier
    what = "node" if tier is Tier.ANY else f"{tier.value} node"
    needs = [f"{_fmt(v)} {unit}" for v, unit in
             ((request.cpu, "CPU"), (request.memory_mb, "MiB of memory"), (request.gpu, "GPU"))
             if v]
    selector = ", ".join(f"{k}={v}" for k, v in sorted(request.node_selector.items()))
    head = f"Unschedulable: no ready {what}"
    if selector:
        head += f" labelled {selector}"
    if request.gpu_models:
        head += f" with a {'|'.join(request.gpu_models)} GPU"
    if needs:
        head += f" with {' and '.join(needs)} free"
    if not any_nodes:
        return head + " (there are no nodes)"
    counts = Counter(_kind(why) for why in refused.values())
    return head + " (" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")"


def unschedulable(nodes: Sequence[Node], request: Request, refused: Mapping[str, str]) -> str:
    return unschedulable_message(request, refused, bool(nodes))


def wants(resources: Resources) -> dict[str, float]:
    return {"cpu": resources.cpu, "memory_mb": float(resources.memory_mb),
            "gpu": resources.gpu}


def allocations(requests: Iterable[tuple[str, Resources]]) -> dict[str, dict[str, float]]:
    """Sum (node, resources) pairs of running replicas into allocated-per-node."""
    out: dict[str, dict[str, float]] = {}
    for node, res in requests:
        acc = out.setdefault(node, {"cpu": 0.0, "memory_mb": 0.0, "gpu": 0.0})
        for key, value in wants(res).items():
            acc[key] += value
    return out


def largest(nodes: Sequence[Node]) -> dict[str, float]:
    """The most any one node has of each resource (to refuse requests no node can meet)."""
    out = {key: 0.0 for key, _ in RESOURCE_KEYS}
    for node in nodes:
        for key, _ in RESOURCE_KEYS:
            out[key] = max(out[key], node.capacity.get(key, 0.0))
    return out


def too_large(nodes: Sequence[Node], resources: Resources) -> str | None:
    """Why no node of the cluster could ever hold one replica of ``resources``, if so."""
    if not nodes:
        return None
    big = largest(nodes)
    for key, unit in RESOURCE_KEYS:
        need = wants(resources)[key]
        if need > big[key] + _EPS:
            return (f"a replica asks for {_fmt(need)} {unit}, but the largest node has "
                    f"{_fmt(big[key])}")
    return None


def _kind(why: str) -> str:
    """A refusal, grouped: ``1 CPU free, 2 needed`` -> ``without enough CPU``."""
    if why.endswith("needed"):
        unit = why.split(" free,")[0].split(" ", 1)[1]
        return f"without enough {unit}"
    if why.startswith("no GPU with"):
        return "without a GPU share that fits"
    if why.startswith("GPU model"):
        return "with another GPU model"
    if why.startswith("a "):                     # "a datacenter node, not edge"
        return f"in tier {why.split()[1]}"
    return why


def _fmt(value: float) -> str:
    return f"{value:g}"
