"""Live energy accounting: watts and joules per node and per deployment.

Every observability cycle each node's power is worked out from its power model
(``core.power.node_power``: its override or the defaults) at its allocation-based
utilisation (what leptonic's replicas hold of its CPUs and GPUs, as the scheduler sees it),
or, for the node the control plane runs on, measured from the CPU packages' RAPL energy
counters where the machine exposes them. A node in standby draws its standby watts.

A node's power is split over the replicas it holds as Kepler does: the part above idle
(the *dynamic* power) by each replica's share of the CPU requested on the node (the GPUs'
dynamic power by the share of GPUs requested); when no replica requests any, evenly.
The idle power stays the node's own: it is drawn whether anything runs there or not.

Watts are integrated into joules with the trapezoid rule between two cycles; a gap longer
than ``max_gap_s`` (the control plane was down) is not integrated, since nothing watched
the nodes meanwhile. The running totals are written to the store at most every
``flush_s`` so a restart goes on from them. What this computes is served three ways: the
``leptonic_*_power_watts`` / ``*_energy_joules_total`` series of ``/metrics``, the built-in
time series (``node_power_watts``, ``node_energy_joules``, ``power_watts``,
``energy_joules``) and ``GET /api/v1/energy``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from leptonic.core.models import Node, Replica, ReplicaState
from leptonic.core.power import NodePower, PowerModelError, node_power

if TYPE_CHECKING:
    from leptonic.store.store import Store

log = logging.getLogger(__name__)

RAPL_ROOT = Path("/sys/class/powercap")
#: a top-level RAPL zone (``intel-rapl:0``); sub-zones (``intel-rapl:0:0``, the cores) are
#: inside their package's count, and ``intel-rapl-mmio:0`` is the same package again
_ZONE = re.compile(r"^intel-rapl:\d+$")
#: replica states that hold their resources on their node (as the node phase counts them)
HOLDING = frozenset({ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DRAINING})
STANDBY = "Standby"
JOULES_PER_KWH = 3.6e6


# -- RAPL ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str               # "package-0", "psys"
    max_range_uj: int       # the counter wraps to 0 past this


def rapl_zones(root: Path = RAPL_ROOT) -> list[RaplZone]:
    """The zones whose sum is the machine's measured power, without counting any twice:
    ``psys`` alone where there is one (it covers the packages), else every package. Empty
    where there is no RAPL or its counters cannot be read (root-only since Linux 5.10)."""
    zones = []
    try:
        paths = sorted(p for p in root.iterdir() if _ZONE.match(p.name))
    except OSError:
        return []
    for path in paths:
        try:
            name = (path / "name").read_text().strip()
            max_range = int((path / "max_energy_range_uj").read_text().strip())
            int((path / "energy_uj").read_text().strip())      # readable by us?
        except (OSError, ValueError):
            continue
        zones.append(RaplZone(path, name, max_range))
    psys = [z for z in zones if z.name == "psys"]
    return psys or [z for z in zones if z.name.startswith("package")]


def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Microjoules between two readings of one counter, across one wraparound."""
    return after - before if after >= before else after + max_range_uj - before


class RaplMeter:
    """Mean watts of the RAPL zones between two reads (the first read has none)."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.root = root
        self._zones: list[RaplZone] | None = None
        self._last: tuple[float, dict[Path, int]] | None = None

    @property
    def zones(self) -> list[RaplZone]:
        if self._zones is None:
            self._zones = rapl_zones(self.root)
            if self._zones:
                log.info("measuring this node's power from RAPL (%s)",
                         ", ".join(z.name for z in self._zones))
        return self._zones

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def read(self, now: float) -> float | None:
        """Watts since the previous read, or None (first read, no RAPL, unreadable)."""
        if not self.zones:
            return None
        try:
            values = {z.path: int((z.path / "energy_uj").read_text().strip())
                      for z in self.zones}
        except (OSError, ValueError) as exc:
            log.warning("RAPL cannot be read any more (%s); using the power model", exc)
            self._zones, self._last = [], None
            return None
        last, self._last = self._last, (now, values)
        if last is None or now <= last[0]:
            return None
        uj = sum(rapl_delta_uj(last[1][z.path], values[z.path], z.max_range_uj)
                 for z in self.zones)
        return uj / 1e6 / (now - last[0])


# -- one node's power, and its split over replicas (pure) ----------------------------------

@dataclass(frozen=True)
class NodeDraw:
    """What a node draws now, in two parts (CPU and GPUs), each with its idle share."""

    node: str
    cpu_w: float
    cpu_idle_w: float
    gpu_w: float = 0.0
    gpu_idle_w: float = 0.0
    source: str = "model"          # "model" | "override" | "rapl"
    standby: bool = False

    @property
    def watts(self) -> float:
        return self.cpu_w + self.gpu_w

    @property
    def idle_w(self) -> float:
        return self.cpu_idle_w + self.gpu_idle_w


@dataclass(frozen=True)
class Holder:
    """A replica on a node: its deployment and what it requests there."""

    deployment: str
    cpu: float = 0.0
    gpu: float = 0.0


def utilisation(node: Node) -> tuple[float, list[float]]:
    """Allocation-based utilisation: the share of the node's CPUs, and of each GPU (filled
    in order: 2.5 of 4 GPUs is 1, 1, 0.5, 0), that replicas hold."""
    cores = node.capacity.get("cpu", 0.0)
    cpu = node.allocated.get("cpu", 0.0) / cores if cores > 0 else 0.0
    held = node.allocated.get("gpu", 0.0)
    gpus = [min(1.0, max(0.0, held - i)) for i in range(int(node.capacity.get("gpu", 0.0)))]
    return min(max(cpu, 0.0), 1.0), gpus


def node_draw(node: Node, power: NodePower, measured_w: float | None = None) -> NodeDraw:
    """The node's power now: its standby watts in standby, else its model at its
    utilisation, with the CPU part replaced by ``measured_w`` (RAPL) where given. RAPL
    counts the CPU packages only, so the GPUs stay modelled."""
    if node.standby or node.status == STANDBY:
        return NodeDraw(node.name, power.standby_w, power.standby_w, source=power.source,
                        standby=True)
    cpu_util, gpu_utils = utilisation(node)
    gpu_w = gpu_idle = 0.0
    if power.gpu is not None:
        gpu_w = sum(power.gpu.watts(u) for u in gpu_utils[: power.gpus])
        gpu_w += power.gpu.idle_w * max(0, power.gpus - len(gpu_utils))
        gpu_idle = power.gpu.idle_w * power.gpus
    if measured_w is not None:
        return NodeDraw(node.name, measured_w, min(power.cpu.idle_w, measured_w), gpu_w,
                        gpu_idle, "rapl")
    return NodeDraw(node.name, power.cpu.watts(cpu_util), power.cpu.idle_w, gpu_w, gpu_idle,
                    power.source)


def attribute(draw: NodeDraw, holders: Sequence[Holder]) -> dict[str, float]:
    """Watts per deployment of ``draw``'s dynamic power, split by the replicas' CPU
    requests (and the GPUs' by their GPU requests); evenly where none requests any. The
    idle power is not attributed: the node draws it anyway."""
    out = {h.deployment: 0.0 for h in holders}
    if not holders or draw.standby:
        return out
    for dynamic, key in ((draw.cpu_w - draw.cpu_idle_w, "cpu"),
                         (draw.gpu_w - draw.gpu_idle_w, "gpu")):
        if dynamic <= 0:
            continue
        asked = [max(0.0, float(getattr(h, key))) for h in holders]
        total = sum(asked)
        for h, a in zip(holders, asked, strict=True):
            out[h.deployment] += dynamic * (a / total if total > 0 else 1.0 / len(holders))
    return out


def holders_by_node(replicas: Iterable[Replica]) -> dict[str, list[Holder]]:
    out: dict[str, list[Holder]] = {}
    for r in replicas:
        if r.state in HOLDING:
            res = r.resources
            out.setdefault(r.node, []).append(
                Holder(r.deployment, res.cpu if res else 0.0, res.gpu if res else 0.0))
    return out


# -- integration -----------------------------------------------------------------------------

Key = tuple[str, str]          # ("node", "dc-1") | ("deployment", "echo")


@dataclass
class Integrator:
    """Joules per key from watts seen at successive times (trapezoid rule; gaps longer
    than ``max_gap_s`` are skipped; a key not seen this time keeps its total and starts
    afresh when it comes back)."""

    totals: dict[Key, float] = field(default_factory=dict)
    max_gap_s: float = 60.0
    _last: dict[Key, tuple[float, float]] = field(default_factory=dict)

    def advance(self, now: float, watts: Mapping[Key, float]) -> None:
        for key, w in watts.items():
            prev = self._last.get(key)
            self.totals.setdefault(key, 0.0)
            if prev is not None and 0 < now - prev[0] <= self.max_gap_s:
                self.totals[key] += (prev[1] + w) / 2.0 * (now - prev[0])
            self._last[key] = (now, w)
        for key in set(self._last) - set(watts):
            del self._last[key]


# -- the accounting the observability cycle runs ---------------------------------------------

@dataclass(frozen=True)
class NodeEnergy:
    watts: float
    joules: float
    source: str
    idle_w: float
    standby: bool = False


@dataclass(frozen=True)
class EnergySnapshot:
    at: float = 0.0
    nodes: Mapping[str, NodeEnergy] = field(default_factory=dict)
    deployments: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # W, J


class Energy:
    """Runs the accounting each cycle and keeps its latest snapshot for ``/metrics``, the
    series and the API. ``store`` is the platform's (``None``: nothing is persisted)."""

    def __init__(self, store: Store | None = None, *, local_node: str | None = None,
                 rapl: RaplMeter | None = None, flush_s: float = 5.0,
                 max_gap_s: float = 60.0) -> None:
        from leptonic.store.energy import EnergyStore

        self.estore = EnergyStore(store) if store is not None else None
        self.local_node = local_node
        self.rapl = rapl if rapl is not None else RaplMeter()
        self.flush_s = flush_s
        self.integrator = Integrator(max_gap_s=max_gap_s)
        self.snapshot = EnergySnapshot()
        self._loaded = False
        self._flushed_at = 0.0
        self._lock = threading.Lock()
        self._bad_override: set[str] = set()

    def _power(self, node: Node) -> NodePower:
        try:
            return node_power(node)
        except PowerModelError as exc:
            if node.name not in self._bad_override:
                self._bad_override.add(node.name)
                log.warning("node %s: its power override is not usable (%s); using the "
                            "defaults", node.name, exc)
            return node_power(node.model_copy(update={"power": None}))

    def source_of(self, node: Node) -> str:
        """Where the node's watts come from now: ``rapl``, ``override`` or ``model``."""
        if node.name == self.local_node and self.rapl.available:
            return "rapl"
        return self._power(node).source      # as the node is now (an override just set)

    def tick(self, now: float, nodes: Sequence[Node], replicas: Sequence[Replica]
             ) -> dict[str, dict[str, float | None]]:
        """Account one cycle; the samples to add to the built-in series (sync: reads
        sysfs, and the store now and then)."""
        with self._lock:
            if not self._loaded and self.estore is not None:
                self.integrator.totals = self.estore.totals()
                self._loaded = True
            holders = holders_by_node(replicas)
            measured = None
            if self.local_node is not None and any(n.name == self.local_node for n in nodes):
                measured = self.rapl.read(now)
            draws: dict[str, NodeDraw] = {}
            dep_watts: dict[str, float] = {}
            for n in nodes:
                if not n.alive:
                    continue              # unknown: it may be off; nothing is invented
                draw = node_draw(n, self._power(n),
                                 measured if n.name == self.local_node else None)
                draws[n.name] = draw
                for dep, w in attribute(draw, holders.get(n.name, [])).items():
                    dep_watts[dep] = dep_watts.get(dep, 0.0) + w
            watts: dict[Key, float] = {("node", k): d.watts for k, d in draws.items()}
            watts.update({("deployment", k): w for k, w in dep_watts.items()})
            self.integrator.advance(now, watts)
            totals = self.integrator.totals
            self.snapshot = EnergySnapshot(
                now,
                {k: NodeEnergy(d.watts, totals[("node", k)], d.source, d.idle_w, d.standby)
                 for k, d in draws.items()},
                {k: (w, totals[("deployment", k)]) for k, w in dep_watts.items()})
            if self.estore is not None and now - self._flushed_at >= self.flush_s:
                self.flush(now)
        samples: dict[str, dict[str, float | None]] = {}
        for k, e in self.snapshot.nodes.items():
            samples[f"node/{k}"] = {"node_power_watts": e.watts,
                                    "node_energy_joules": e.joules}
        for k, (w, j) in self.snapshot.deployments.items():
            samples[f"deployment/{k}"] = {"power_watts": w, "energy_joules": j}
        return samples

    def flush(self, now: float) -> None:
        """Write the running totals to the store."""
        if self.estore is None:
            return
        self.estore.save(dict(self.integrator.totals), now)
        self._flushed_at = now

    def stop(self, now: float) -> None:
        """Flush, and forget what was seen: if this control plane leads again, another may
        have accounted meanwhile, so the next cycle starts from the store's totals."""
        with self._lock:
            self.flush(now)
            self._loaded = False
            self.integrator = Integrator(max_gap_s=self.integrator.max_gap_s)
            self.snapshot = EnergySnapshot()

    def totals(self) -> dict[Key, float]:
        """Every total accounted (the store's, where no cycle has run here yet)."""
        with self._lock:
            if not self._loaded and self.estore is not None:
                return self.estore.totals()
            return dict(self.integrator.totals)


class EnergyCollector(Collector):
    """Serves the latest :class:`EnergySnapshot` to ``/metrics``."""

    def __init__(self, energy: Energy) -> None:
        self.energy = energy

    def collect(self) -> Iterator[Metric]:
        snap = self.energy.snapshot
        nw = GaugeMetricFamily("leptonic_node_power_watts",
                               "Power the node draws now (its model at its allocated "
                               "utilisation, or RAPL)", labels=["node"])
        nj = CounterMetricFamily("leptonic_node_energy_joules",
                                 "Energy the node drew while the platform watched it",
                                 labels=["node"])
        src = GaugeMetricFamily("leptonic_node_power_source",
                                "1 for where the node's watts come from: rapl, override "
                                "or model", labels=["node", "source"])
        for name, e in sorted(snap.nodes.items()):
            nw.add_metric([name], e.watts)
            nj.add_metric([name], e.joules)
            src.add_metric([name, e.source], 1.0)
        dw = GaugeMetricFamily("leptonic_deployment_power_watts",
                               "Power of the nodes attributed to the deployment's replicas "
                               "(their CPU share of each node's dynamic power)",
                               labels=["deployment"])
        dj = CounterMetricFamily("leptonic_deployment_energy_joules",
                                 "Energy attributed to the deployment's replicas",
                                 labels=["deployment"])
        for name, (w, j) in sorted(snap.deployments.items()):
            dw.add_metric([name], w)
            dj.add_metric([name], j)
        yield from (nw, nj, src, dw, dj)


# -- windows (what ``GET /energy`` and ``leptonic energy`` report) ---------------------------

def counter_increase(values: Iterable[float | None]) -> float:
    """How much a running total rose over its points. The totals are persisted, so a fall
    is not a reset from 0 but a restart that lost the last few unflushed seconds: it
    counts as nothing, not as the whole total again."""
    inc = 0.0
    prev: float | None = None
    for v in values:
        if v is None:
            continue
        if prev is not None and v > prev:
            inc += v - prev
        prev = v
    return inc


def kwh(joules: float) -> float:
    return joules / JOULES_PER_KWH


def power_info(energy: Energy, node: Node) -> dict[str, Any]:
    """A node's power as ``GET /nodes/{name}/power`` shows it: the override stored, the
    model in use, where its watts come from and what it draws now."""
    seen = energy.snapshot.nodes.get(node.name)
    return {"node": node.name, "override": node.power, "source": energy.source_of(node),
            "watts": seen.watts if seen else None,
            "energy_kwh": kwh(seen.joules) if seen else None,
            "model": energy._power(node).to_dict()}


def report(observe: Any, since_s: float) -> dict[str, Any]:
    """kWh per node and per deployment over the last ``since_s`` seconds (from the running
    totals in the built-in series), with each node's watts and source now and everything's
    total since accounting began. ``observe`` is the platform's ``Observability``."""
    from leptonic.errors import LeptonicError

    energy: Energy = observe.energy
    until = observe.clock()
    snap = energy.snapshot

    def window(series: str, metric: str) -> float:
        try:
            res = observe.query(series, [metric], since_s, until)
        except LeptonicError:
            return 0.0
        return counter_increase(res.values.get(metric, []))

    # the windows first, the totals after: a cycle may add a point between the two reads,
    # and a total read before the series could then be less than the window within it
    node_list = observe.store.list_nodes()
    node_kwh = {n.name: kwh(window(f"node/{n.name}", "node_energy_joules")) for n in node_list}
    live = {d.name for d in observe.store.list_deployments() if not d.deleting}
    names = live | set(snap.deployments) | {k for kind, k in energy.totals()
                                            if kind == "deployment"}
    dep_kwh = {name: kwh(window(f"deployment/{name}", "energy_joules")) for name in names}
    totals = energy.totals()
    nodes = []
    for n in node_list:
        seen = snap.nodes.get(n.name)
        nodes.append({
            "node": n.name, "status": n.status, "source": energy.source_of(n),
            "watts": seen.watts if seen else None, "kwh": node_kwh[n.name],
            "total_kwh": kwh(totals.get(("node", n.name), 0.0))})
    deployments = []
    for name in sorted(names):
        used = dep_kwh[name]
        if name not in live and not used:
            continue                    # deleted before the window: not news
        seen_d = snap.deployments.get(name)
        deployments.append({
            "deployment": name, "watts": seen_d[0] if seen_d else None, "kwh": used,
            "total_kwh": kwh(totals.get(("deployment", name), 0.0))})
    return {"since_s": since_s, "from": until - since_s, "until": until,
            "kwh": sum(n["kwh"] for n in nodes),
            "watts": sum(n["watts"] or 0.0 for n in nodes),
            "nodes": nodes, "deployments": deployments}
