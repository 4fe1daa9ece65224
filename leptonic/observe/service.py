"""The platform's observability loops, in one object the platform starts and stops.

Every ``interval_s`` one *cycle* reads the world from the store, scrapes the ready
replicas' ``/metrics``, reads process and node stats, turns the gateway's counters into a
sample per deployment and node, stores it, evaluates the alert rules on it and refreshes
what ``/metrics`` serves. Beside it, the dispatcher delivers queued notifications and the
log keeper rotates replica logs. Each phase is guarded and timed
(``leptonic_observe_phase_seconds``) like the control loop's: a failure is logged and
counted, and the next cycle runs anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from leptonic.config.observe import ObserveSettings
from leptonic.controller.phases import run_guarded
from leptonic.core.alerts import DEPLOYMENT_METRICS, NODE_METRICS
from leptonic.core.models import Deployment, Node, Replica, ReplicaState, check_name
from leptonic.core.observe import SeriesResult
from leptonic.errors import InvalidInput, NotFound
from leptonic.observe.alerts import AlertEngine, Dispatcher
from leptonic.observe.energy import Energy, EnergyCollector
from leptonic.observe.logs import rotate_all
from leptonic.observe.metrics import (
    NodeStat,
    PlatformCollector,
    ProcessStats,
    ReplicaScrape,
    ReplicaScraper,
    Snapshot,
    node_stats,
    queue_depth,
)
from leptonic.observe.monitor import ModelMonitor, MonitorCollector
from leptonic.observe.notify import Notifier
from leptonic.observe.series import (
    ReplicaStat,
    Sample,
    Sampler,
    choose_resolution,
    read_gateway,
    rollup,
)
from leptonic.observe.usage import Meter
from leptonic.store.observe import ObserveStore
from leptonic.store.usage import UsageStore

if TYPE_CHECKING:
    from leptonic.config import DataDir, Settings
    from leptonic.observe.traffic import ClusterTraffic
    from leptonic.store.store import Store


class GatewayMetrics(Protocol):
    """The gateway's own Prometheus metrics (answers, latency, in flight), which the
    deployment series are read from: a collector's metric families."""

    def collect(self) -> Iterable[Any]: ...


class ObservedBackend(Protocol):
    """The runtime, as far as observability cares: its name (``local`` has a node of its
    own, whose processes and power it measures)."""

    @property
    def name(self) -> str: ...


class ObservedGateway(Protocol):
    @property
    def metrics(self) -> GatewayMetrics: ...


class ObservedPlatform(Protocol):
    """What observability uses of ``leptonic.platform.Platform``: its settings and data
    dir, the store, the Prometheus registry it adds collectors to, the runtime (is it
    local, which node), and the traffic: the local gateway's metrics and the sum over the
    control planes."""

    settings: Settings
    layout: DataDir
    store: Store
    registry: CollectorRegistry
    traffic: ClusterTraffic

    @property
    def backend(self) -> ObservedBackend: ...

    @property
    def gateway(self) -> ObservedGateway: ...

log = logging.getLogger(__name__)

NOTIFICATION_HISTORY_S = 7 * 86400.0
KNOWN_METRICS = {**DEPLOYMENT_METRICS, **NODE_METRICS}


class Observability:
    """Owns the sampler, the collector, the alert engine, the dispatcher and log rotation.

    ``platform`` gives the store, the registry, the gateway, the backend, the data-dir
    layout and the settings; ``clock`` and ``notifier`` are seams for tests.
    """

    def __init__(self, platform: ObservedPlatform, *, clock: Callable[[], float] = time.time,
                 notifier: Notifier | None = None) -> None:
        self.platform = platform
        self.settings: ObserveSettings = platform.settings.observe
        self.store = platform.store
        self.ostore = ObserveStore(platform.store)
        self.clock = clock
        registry: CollectorRegistry = platform.registry
        self.collector = PlatformCollector()
        registry.register(self.collector)
        self.scraper = ReplicaScraper(self.settings.scrape_timeout_s, registry)
        self.procs = ProcessStats()
        self.sampler = Sampler()
        backend = platform.backend
        self.energy = Energy(platform.store, local_node=getattr(backend, "node", "local")
                             if backend.name == "local" else None,
                             max_gap_s=max(60.0, 5 * self.settings.interval_s))
        registry.register(EnergyCollector(self.energy))
        self.monitor = ModelMonitor(platform.store, timeout_s=self.settings.scrape_timeout_s,
                                    clock=clock)
        self.monitor_collector = MonitorCollector()
        registry.register(self.monitor_collector)
        self.meter = Meter(platform.store, max_gap_s=max(60.0, 5 * self.settings.interval_s),
                           dashboard_url=platform.settings.url)
        self.notifier = notifier or Notifier(self.settings.smtp, self.settings.notify_timeout_s)
        self.engine = AlertEngine(self.store, self.ostore, self.settings, clock,
                                  dashboard_url=platform.settings.url)
        self.dispatcher = Dispatcher(self.store, self.ostore, self.settings, self.notifier,
                                     clock)
        self.latest: dict[str, Sample] = {}
        self.latest_at = 0.0
        self._last_compact = 0.0
        self._last_budgets = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.phase_seconds = Histogram(
            "leptonic_observe_phase_seconds", "Duration of each observability phase",
            ["phase"], registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.phase_errors = Counter(
            "leptonic_observe_phase_errors", "Exceptions caught in an observability phase",
            ["phase"], registry=registry)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(self.settings.interval_s, "cycle", self.cycle),
                                name="leptonic-observe"),
            asyncio.create_task(self._notify_loop(), name="leptonic-notify"),
            asyncio.create_task(self._every(self.settings.log_check_s, "logs",
                                            self.rotate_logs), name="leptonic-logs"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.scraper.aclose()
        await self.monitor.aclose()
        await self.notifier.aclose()
        await self._guarded("energy", lambda: asyncio.to_thread(self.energy.stop,
                                                                self.clock()))

    async def _guarded(self, phase: str, fn: Callable[[], Awaitable[Any]]) -> None:
        await run_guarded(phase, fn, seconds=self.phase_seconds, errors=self.phase_errors,
                          log=log, loop_name="observability")

    async def _every(self, period_s: float, phase: str,
                     fn: Callable[[], Awaitable[Any]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self._guarded(phase, fn)
            await asyncio.sleep(max(0.05, period_s - (loop.time() - started)))

    async def _notify_loop(self) -> None:
        queued = self.engine.queued
        while True:
            await self._guarded("notify", self.dispatcher.deliver_due)
            wait = 5.0
            with contextlib.suppress(Exception):
                due = await self.dispatcher.next_due_in()
                if due is not None:
                    wait = min(wait, max(0.05, due))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queued.wait(), wait)
            queued.clear()

    # -- one cycle ------------------------------------------------------------------------
    def _read_world(self) -> tuple[list[Deployment], list[Replica], list[Node]]:
        return (self.store.list_deployments(), self.store.list_replicas(),
                self.store.list_nodes())

    def _stats(self, replicas: list[Replica], scrapes: list[ReplicaScrape], nodes: list[Node],
               now: float) -> tuple[list[ReplicaStat], list[NodeStat]]:
        local = self.platform.backend.name == "local"
        by_id = {s.replica: s for s in scrapes}
        stats = []
        for r in replicas:
            if r.state is ReplicaState.STOPPED:
                continue
            cpu, rss = self.procs.read(r.pid) if local else (None, None)
            scrape = by_id.get(r.id)
            stats.append(ReplicaStat(r.deployment, r.id, r.state is ReplicaState.READY,
                                     r.restarts, cpu, rss,
                                     queue_depth(scrape) if scrape else 0.0))
        self.procs.forget({r.pid for r in replicas if r.pid})
        local_node = getattr(self.platform.backend, "node", "local") if local else ""
        return stats, node_stats(nodes, local_node, now, self.settings.node_down_after_s)

    async def cycle(self) -> None:
        """Sample, store, evaluate alerts, refresh ``/metrics``; then compact now and then."""
        now = self.clock()
        deployments, replicas, nodes = await asyncio.to_thread(self._read_world)
        scrapes = await self.scraper.scrape(replicas)
        stats, nstats = await asyncio.to_thread(self._stats, replicas, scrapes, nodes, now)
        gw = self.platform.gateway.metrics
        gateway = read_gateway(gw.collect())
        gateway = self.platform.traffic.merge_series(gateway)   # and the followers' counts
        samples: dict[str, Sample] = {}
        live = [d for d in deployments if not d.deleting]
        for d in live:
            samples[f"deployment/{d.name}"] = self.sampler.deployment_sample(
                now, d.name, d.desired_replicas, d.status.restarts, gateway.get(d.name),
                [s for s in stats if s.deployment == d.name])
            auto = d.status.autoscale
            if auto is not None and auto.forecast_rate is not None:    # predictive only
                samples[f"deployment/{d.name}"]["forecast_rps"] = auto.forecast_rate
        for n in nstats:
            samples[f"node/{n.name}"] = {"node_up": 1.0 if n.up else 0.0,
                                         "node_cpu_percent": n.cpu_percent,
                                         "node_memory_percent": n.memory_percent}
        self.sampler.forget({d.name for d in live}, {s.replica for s in stats})
        await self._guarded("models", lambda: self._watch_models(now, live, replicas,
                                                                 samples))
        await self._guarded("energy", lambda: self._account_energy(now, nodes, replicas,
                                                                   samples))
        if self.settings.metering:
            await self._guarded("usage", lambda: asyncio.to_thread(
                self._meter, now, deployments, replicas, nodes, stats, gateway))
        self.latest, self.latest_at = samples, now
        await asyncio.to_thread(self.ostore.add_samples, now, samples)
        await self._guarded("alerts", lambda: asyncio.to_thread(self.engine.evaluate, now,
                                                                samples))
        states = await asyncio.to_thread(self.ostore.states)
        self.collector.snapshot = Snapshot(now, scrapes, stats, deployments, nstats,
                                           [(s.rule, s.target, s.state) for s in states])
        if now - self._last_compact >= max(60.0, self.settings.interval_s):
            self._last_compact = now
            await self._guarded("compact", lambda: asyncio.to_thread(self.compact, now))

    async def _watch_models(self, now: float, live: list[Deployment], replicas: list[Replica],
                            samples: dict[str, Sample]) -> None:
        """Read the model deployments' samples; their live figures into the series."""
        models = [d for d in live if d.spec.model is not None]
        self.monitor.forget({d.name for d in models})
        if not models:
            self.monitor_collector.figures = {}
            return
        await self.monitor.pull(models, replicas)
        figures = {}
        for d in models:
            f = await asyncio.to_thread(self.monitor.metrics, d, self.settings.model_window_s,
                                        now)
            figures[d.name] = f
            samples.setdefault(f"deployment/{d.name}", {}).update(self.monitor.series(f))
        self.monitor_collector.figures = figures

    async def _account_energy(self, now: float, nodes: list[Node], replicas: list[Replica],
                              samples: dict[str, Sample]) -> None:
        """Watts and joules of the nodes and deployments sampled (observe/energy.py)."""
        for series, values in (await asyncio.to_thread(self.energy.tick, now, nodes,
                                                       replicas)).items():
            if series in samples:
                samples[series].update(values)

    def _meter(self, now: float, deployments: list[Deployment], replicas: list[Replica],
               nodes: list[Node], stats: list[ReplicaStat], gateway: dict[str, Any]) -> None:
        """Usage records and cost (observe/usage.py), then the budgets."""
        self.meter.tick(now, deployments, replicas, nodes, stats, gateway,
                        self.energy.snapshot.deployments)
        if now - self._last_budgets >= self.settings.budget_check_s:
            self._last_budgets = now
            if self.meter.budgets(now):
                self.engine.queued.set()

    # -- downsampling and retention -------------------------------------------------------
    def compact(self, now: float) -> dict[str, int]:
        return compact(self.ostore, self.settings, now)

    # -- logs -----------------------------------------------------------------------------
    async def rotate_logs(self) -> None:
        s = self.settings
        replicas = await asyncio.to_thread(self.store.list_replicas)
        logs_dir: Path = self.platform.layout.logs
        rotated, removed = await asyncio.to_thread(
            rotate_all, logs_dir, s.log_max_bytes, s.log_backups, s.log_dir_max_bytes,
            {r.id for r in replicas})
        for p in rotated:
            log.debug("rotated %s", p)
        if removed:
            log.info("log budget: removed %d old log file(s)", len(removed))

    # -- queries --------------------------------------------------------------------------
    def query(self, series: str, metrics: list[str] | None, since_s: float,
              until: float | None = None, resolution: int | None = None) -> SeriesResult:
        """Points of ``series`` over the last ``since_s`` seconds (sync: store reads)."""
        kind, _, name = series.partition("/")
        if kind not in ("deployment", "node") or not name:
            raise InvalidInput(f"invalid series {series!r}: use deployment/NAME or node/NAME")
        if kind == "deployment":
            check_name(name, "deployment name")
        for m in metrics or []:
            if m not in KNOWN_METRICS:
                raise InvalidInput(f"unknown metric {m!r}; metrics are: "
                                   + ", ".join(KNOWN_METRICS))
        s = self.settings
        until = self.clock() if until is None else until
        start = until - since_s
        res = choose_resolution(s, since_s) if resolution is None else resolution
        if res != 0 and res not in {t.resolution_s for t in s.tiers}:
            raise InvalidInput(f"resolution {res} is not kept; use 0 (raw) or one of "
                               + ", ".join(str(t.resolution_s) for t in s.tiers))
        rows = self.ostore.samples(series, res, start, until)
        if res:
            # the newest points are not rolled up yet: take them from the raw samples
            tail_from = rows[-1][0] + res if rows else start
            rows += rollup(self.ostore.samples(series, 0, tail_from, until), res)
        if not rows and kind == "deployment" and self.ostore.count_samples(series) == 0:
            self.store.get_deployment(name)           # 404 for a deployment never seen
        if kind == "node" and not rows and name not in {n.name for n in
                                                        self.store.list_nodes()}:
            raise NotFound(f"node {name!r} does not exist; `GET /api/v1/nodes` lists them")
        names = metrics or sorted({k for _, d in rows for k in d})
        return SeriesResult(series=series, resolution_s=res, interval_s=s.interval_s,
                            since=start, until=until, metrics=names,
                            t=[ts for ts, _ in rows],
                            values={m: [d.get(m) for _, d in rows] for m in names})


def compact(ostore: ObserveStore, s: ObserveSettings, now: float) -> dict[str, int]:
    """Roll finished buckets into each tier (each tier from the one before it), then drop
    every row past its tier's retention: what keeps the series bounded."""
    source = 0
    written: dict[str, int] = {}
    for tier in s.tiers:
        res = tier.resolution_s
        last = ostore.last_sample_ts(res)
        start = 0.0 if last is None else last + res
        end = float(int(now // res) * res)
        if end > start:
            by_series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
            for series, ts, data in ostore.samples_between(source, start, end):
                by_series.setdefault(series, []).append((ts, data))
            out = [(series, ts, data) for series, pts in by_series.items()
                   for ts, data in rollup(pts, res)]
            ostore.add_rollups(res, out)
            written[f"rollup_{res}"] = len(out)
        source = res
    written["deleted_raw"] = ostore.delete_samples_before(0, now - s.raw_retention_s)
    for tier in s.tiers:
        written[f"deleted_{tier.resolution_s}"] = ostore.delete_samples_before(
            tier.resolution_s, now - tier.retention_s)
    ostore.prune_notifications(now - NOTIFICATION_HISTORY_S)
    written["deleted_usage"] = UsageStore(ostore).delete_before(now - s.usage_retention_s)
    return written
