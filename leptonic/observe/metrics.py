"""The control plane's aggregated ``/metrics``: what the replicas, their processes and the
nodes report, relabelled per deployment and replica, beside the gateway's and the
controller's own series (which live in the same registry).

The sampler scrapes every ready replica's ``/metrics`` once per interval and hands a
:class:`Snapshot` to :class:`PlatformCollector`; a Prometheus scrape of the control plane
only reads that snapshot, so it never waits on a replica.

Label cardinality is bounded (docs/OBSERVABILITY.md lists every series):
``deployment`` ≤ the deployments (names are validated slugs), ``replica`` ≤ 64 per
deployment and only replicas that exist now, ``handler`` ≤ :data:`MAX_HANDLERS` per
replica (a photon's declared handlers), ``code`` ≤ the HTTP status codes, ``node`` ≤ the
nodes, ``rule``/``target`` ≤ the alert rules times their targets. Series of a replica that
is gone disappear with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import httpx
import psutil
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from leptonic.core.models import Deployment, Node, Replica, ReplicaState
from leptonic.observe.series import ReplicaStat

log = logging.getLogger(__name__)

REPLICA_PREFIX = "leptonic_photon_"     # the runner's series; nothing else is re-exported
MAX_HANDLERS = 32                       # handler label values kept per replica
MAX_SERIES_PER_REPLICA = 2000           # a replica exporting more is cut off (and counted)


@dataclass
class ReplicaScrape:
    deployment: str
    replica: str
    families: list[Metric] = field(default_factory=list)
    ok: bool = False


@dataclass(frozen=True)
class NodeStat:
    name: str
    up: bool
    heartbeat_age_s: float
    cpu_percent: float | None = None
    memory_percent: float | None = None
    memory_used_bytes: float | None = None
    load1: float | None = None


@dataclass
class Snapshot:
    """Everything the collector exposes, as of ``at``."""

    at: float = 0.0
    scrapes: list[ReplicaScrape] = field(default_factory=list)
    replicas: list[ReplicaStat] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    nodes: list[NodeStat] = field(default_factory=list)
    alerts: list[tuple[str, str, str]] = field(default_factory=list)   # rule, target, state


def relabel(scrape: ReplicaScrape) -> list[Metric]:
    """The replica's ``leptonic_photon_*`` families with ``deployment`` and ``replica``
    labels added; ``_created`` samples and handlers past :data:`MAX_HANDLERS` dropped."""
    out: list[Metric] = []
    handlers: set[str] = set()
    kept = 0
    for fam in scrape.families:
        if not fam.name.startswith(REPLICA_PREFIX) or fam.name.endswith("_created"):
            continue
        new = Metric(fam.name, fam.documentation, fam.type, fam.unit)
        for s in fam.samples:
            if s.name.endswith("_created") or kept >= MAX_SERIES_PER_REPLICA:
                continue
            handler = s.labels.get("handler")
            if handler is not None and handler not in handlers:
                if len(handlers) >= MAX_HANDLERS:
                    continue
                handlers.add(handler)
            labels = {"deployment": scrape.deployment, "replica": scrape.replica, **s.labels}
            new.samples.append(Sample(s.name, labels, s.value, None, None))
            kept += 1
        if new.samples:
            out.append(new)
    return out


def queue_depth(scrape: ReplicaScrape) -> float:
    """Requests waiting in the replica's batch queues (its ``queue_depth`` gauges)."""
    total = 0.0
    for fam in scrape.families:
        if fam.name == "leptonic_photon_batch_queue_depth":
            total += sum(s.value for s in fam.samples)
    return total


class PlatformCollector(Collector):
    """Serves the latest :class:`Snapshot` to ``/metrics``."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        merged: dict[str, Metric] = {}
        for scrape in snap.scrapes:
            for fam in relabel(scrape):
                into = merged.get(fam.name)
                if into is None:
                    merged[fam.name] = fam
                elif into.type == fam.type:
                    into.samples.extend(fam.samples)
        yield from merged.values()

        up = GaugeMetricFamily("leptonic_replica_up",
                               "1 when the replica's /metrics answered the last scrape",
                               labels=["deployment", "replica"])
        for scrape in snap.scrapes:
            up.add_metric([scrape.deployment, scrape.replica], 1.0 if scrape.ok else 0.0)
        yield up

        ready = GaugeMetricFamily("leptonic_replica_ready", "1 when the replica is ready",
                                  labels=["deployment", "replica"])
        restarts = GaugeMetricFamily("leptonic_replica_restarts",
                                     "Times this replica slot was restarted",
                                     labels=["deployment", "replica"])
        cpu = Metric("leptonic_replica_cpu_seconds", "CPU time used by the replica's process",
                     "counter")
        rss = GaugeMetricFamily("leptonic_replica_memory_rss_bytes",
                                "Resident memory of the replica's process",
                                labels=["deployment", "replica"])
        for r in snap.replicas:
            key = [r.deployment, r.replica]
            ready.add_metric(key, 1.0 if r.ready else 0.0)
            restarts.add_metric(key, float(r.restarts))
            if r.cpu_seconds is not None:
                cpu.samples.append(Sample("leptonic_replica_cpu_seconds_total",
                                          {"deployment": r.deployment, "replica": r.replica},
                                          r.cpu_seconds, None, None))
            if r.rss_bytes is not None:
                rss.add_metric(key, r.rss_bytes)
        yield from (ready, restarts, cpu, rss)

        desired = GaugeMetricFamily("leptonic_deployment_replicas_desired",
                                    "Replicas the deployment aims for (the autoscaler's count when "
                                    "it autoscales)",
                                    labels=["deployment"])
        dready = GaugeMetricFamily("leptonic_deployment_replicas_ready",
                                   "Ready replicas of the deployment", labels=["deployment"])
        drestarts = GaugeMetricFamily("leptonic_deployment_restarts",
                                      "Replica restarts since the deployment was created",
                                      labels=["deployment"])
        for d in snap.deployments:
            desired.add_metric([d.name], float(d.desired_replicas))
            dready.add_metric([d.name], float(d.status.ready_replicas))
            drestarts.add_metric([d.name], float(d.status.restarts))
        yield from (desired, dready, drestarts)

        nup = GaugeMetricFamily("leptonic_node_up", "1 while the node sends heartbeats",
                                labels=["node"])
        age = GaugeMetricFamily("leptonic_node_heartbeat_age_seconds",
                                "Seconds since the node's last heartbeat", labels=["node"])
        ncpu = GaugeMetricFamily("leptonic_node_cpu_utilisation",
                                 "CPU utilisation of the node (0..1)", labels=["node"])
        nmem = GaugeMetricFamily("leptonic_node_memory_utilisation",
                                 "Memory utilisation of the node (0..1)", labels=["node"])
        nused = GaugeMetricFamily("leptonic_node_memory_used_bytes",
                                  "Memory in use on the node", labels=["node"])
        nload = GaugeMetricFamily("leptonic_node_load1", "1-minute load average of the node",
                                  labels=["node"])
        for n in snap.nodes:
            nup.add_metric([n.name], 1.0 if n.up else 0.0)
            age.add_metric([n.name], n.heartbeat_age_s)
            if n.cpu_percent is not None:
                ncpu.add_metric([n.name], n.cpu_percent / 100.0)
            if n.memory_percent is not None:
                nmem.add_metric([n.name], n.memory_percent / 100.0)
            if n.memory_used_bytes is not None:
                nused.add_metric([n.name], n.memory_used_bytes)
            if n.load1 is not None:
                nload.add_metric([n.name], n.load1)
        yield from (nup, age, ncpu, nmem, nused, nload)

        firing = GaugeMetricFamily("leptonic_alert_firing",
                                   "1 while the alert rule fires for the target",
                                   labels=["rule", "target"])
        for rule, target, state in snap.alerts:
            firing.add_metric([rule, target], 1.0 if state == "firing" else 0.0)
        yield firing

        stamp = GaugeMetricFamily("leptonic_observe_last_sample_timestamp_seconds",
                                  "When the control plane last sampled its metrics")
        stamp.add_metric([], snap.at)
        yield stamp


class ReplicaScraper:
    """Scrapes the replicas' ``/metrics`` concurrently, each bounded by a timeout."""

    def __init__(self, timeout_s: float, registry: CollectorRegistry | None = None) -> None:
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None
        self.errors = Counter("leptonic_observe_scrape_errors_total",
                              "Replica /metrics scrapes that failed", ["deployment"],
                              registry=registry)

    async def scrape(self, replicas: Iterable[Replica]) -> list[ReplicaScrape]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s)
        todo = [r for r in replicas if r.state is ReplicaState.READY and r.url]
        return list(await asyncio.gather(*(self._one(r) for r in todo)))

    async def _one(self, r: Replica) -> ReplicaScrape:
        out = ReplicaScrape(r.deployment, r.id)
        assert self._http is not None
        try:
            resp = await self._http.get(f"{r.url}/metrics")
            resp.raise_for_status()
            out.families = await asyncio.to_thread(
                lambda: list(text_string_to_metric_families(resp.text)))
            out.ok = True
        except (httpx.HTTPError, ValueError) as exc:
            self.errors.labels(r.deployment).inc()
            log.debug("scraping replica %s failed: %r", r.id, exc)
        return out

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class ProcessStats:
    """CPU seconds and resident memory of replica processes, by pid (psutil)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def read(self, pid: int | None) -> tuple[float | None, float | None]:
        if pid is None:
            return None, None
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                times = proc.cpu_times()
                rss = proc.memory_info().rss
        except psutil.Error:
            self._procs.pop(pid, None)
            return None, None
        return times.user + times.system, float(rss)

    def forget(self, live_pids: set[int]) -> None:
        for pid in set(self._procs) - live_pids:
            del self._procs[pid]


def node_stats(nodes: list[Node], local: str, now: float, down_after_s: float) -> list[NodeStat]:
    """Heartbeat-based up/down for every node, and psutil utilisation for this one."""
    out = []
    for n in nodes:
        age = max(0.0, now - n.heartbeat_at)
        stat = NodeStat(n.name, up=n.alive and age <= down_after_s, heartbeat_age_s=age)
        if n.name == local:
            mem = psutil.virtual_memory()
            load1 = None
            with contextlib.suppress(OSError, AttributeError):
                load1 = psutil.getloadavg()[0]
            stat = NodeStat(n.name, stat.up, age, psutil.cpu_percent(interval=None),
                            mem.percent, float(mem.total - mem.available), load1)
        out.append(stat)
    return out

