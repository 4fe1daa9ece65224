"""The control loop: observe replicas, reconcile deployments, publish routes — forever.

Each phase is guarded (an exception is logged and counted, never fatal) and timed
(``leptonic_controller_phase_seconds``), as Ray Serve's ``run_control_loop`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from leptonic.controller.consolidation import Consolidator
from leptonic.controller.context import ControllerContext
from leptonic.controller.deployments import DeploymentReconciler
from leptonic.controller.jobs import JobController
from leptonic.controller.nodes import NodeObserver
from leptonic.controller.phases import run_guarded
from leptonic.controller.replicas import ReplicaObserver
from leptonic.core.models import Deployment, Replica, ReplicaState, Rollout
from leptonic.core.routes import Hold, Route, Upstream
from leptonic.runtime.base import ReplicaHandle

log = logging.getLogger(__name__)

#: deployment name -> its route: ready replicas passing their probes, traffic weights per
#: replica template, and whether requests wait for a replica while there is none
Routes = dict[str, Route]


class Controller:
    """Runs the phases every ``tick_s`` seconds, or at once when woken."""

    def __init__(self, ctx: ControllerContext, publish: Callable[[Routes], None], *,
                 tick_s: float = 0.25, registry: CollectorRegistry | None = None) -> None:
        self.ctx = ctx
        self.publish = publish
        self.tick_s = tick_s
        self.observer = ReplicaObserver(ctx)
        self.reconciler = DeploymentReconciler(ctx)
        self.node_observer = NodeObserver(ctx)
        self.jobs = JobController(ctx)
        self.consolidator = Consolidator(ctx)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.ticks = 0
        self.phase_seconds = Histogram(
            "leptonic_controller_phase_seconds", "Duration of each control-loop phase",
            ["phase"], registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.phase_errors = Counter(
            "leptonic_controller_phase_errors", "Exceptions caught in a control-loop phase",
            ["phase"], registry=registry)

    @staticmethod
    def routes_of(deployments: list[Deployment], replicas: list[Replica],
                  rollouts: dict[str, Rollout] | None = None) -> Routes:
        """The gateway's route table from stored state alone, so a follower control plane
        (which runs no controller) builds the same table the leader publishes.

        A replica is routed once ready and while it passes its probes; a rollout's weights
        split traffic between replica templates (a template without weight gets none); a
        deployment that may scale to zero has its requests held while it has no replica.
        """
        rollouts = rollouts or {}
        ups: dict[str, list[Upstream]] = {d.name: [] for d in deployments if not d.deleting}
        for r in replicas:
            if r.state is ReplicaState.READY and r.url and r.deployment in ups \
                    and r.probe_failures == 0:
                ups[r.deployment].append(Upstream(r.id, r.url, str(r.generation)))
        routes: Routes = {}
        for d in deployments:
            if d.name not in ups:
                continue
            rollout = rollouts.get(d.name)
            weights = rollout.status.weights if rollout is not None else {}
            auto = d.spec.autoscaling
            hold = Hold(auto.max_queued, auto.queue_timeout_s) \
                if auto is not None and auto.min_replicas == 0 else None
            routes[d.name] = Route.of(d.name, ups[d.name], weights or None, hold,
                                      public=d.spec.public)
        return routes

    def wake(self) -> None:
        """Reconcile now (call from the event loop's thread)."""
        self._wake.set()

    async def start(self) -> None:
        self._stopped = False          # a control plane re-elected after losing the lead
        await self.recover()
        self._task = asyncio.create_task(self._run(), name="leptonic-controller")

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.reconciler.drain()

    async def recover(self) -> None:
        """After a (re)start: adopt replicas that still run, forget those that do not."""
        ctx = self.ctx
        replicas: list[Replica] = await ctx.db(ctx.store.list_replicas)
        limits = {d.name: d.spec.limits.memory_mb
                  for d in await ctx.db(ctx.store.list_deployments)}
        adopted = lost = 0
        for r in replicas:
            alive = False
            if r.state in (ReplicaState.STARTING, ReplicaState.READY) and r.pid and r.url:
                alive = await ctx.backend.adopt(ReplicaHandle(
                    r.id, r.node, r.url, pid=r.pid, port=r.port, log_path=r.log_path,
                    memory_mb=limits.get(r.deployment)))
            if alive:
                adopted += 1
                continue
            if r.state is ReplicaState.FAILED:
                continue        # keeps its failure count and backoff
            lost += 1
            await ctx.backend.stop(r.id, grace_s=0.5)
            await ctx.db(ctx.store.delete_replica, r.id)
            if r.state is not ReplicaState.DRAINING:
                await ctx.event(f"deployment/{r.deployment}", "ReplicaLost",
                                f"replica {r.id} (pid {r.pid}) was gone after a control-plane "
                                "restart; a new one will be started", "Warning")
        # only replicas kept are known: a process whose row was just dropped (it was
        # draining, or its pid was never recorded) is an orphan, not a second copy
        known = {r.id for r in await ctx.db(ctx.store.list_replicas)}
        orphans = await ctx.backend.kill_orphans(known)
        if adopted or lost or orphans:
            log.info("recovered: %d replica(s) adopted, %d lost, %d orphan(s) stopped",
                     adopted, lost, orphans)
        loop = asyncio.get_running_loop()
        await self.jobs.recover(wake=lambda: loop.call_soon_threadsafe(self.wake))

    async def _run(self) -> None:
        while not self._stopped:
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            self._wake.clear()

    async def _guarded(self, phase: str, fn: Callable[[], Awaitable[None]]) -> None:
        await run_guarded(phase, fn, seconds=self.phase_seconds, errors=self.phase_errors,
                          log=log, loop_name="control loop")

    async def tick(self) -> None:
        """One pass over the world. Public so tests can step the loop deterministically."""
        self.ticks += 1
        state: dict[str, list[Replica]] = {}

        async def nodes() -> None:
            replicas = await self.ctx.db(self.ctx.store.list_replicas)
            attempts = await self.ctx.db(self.ctx.store.list_attempts, running=True)
            self.reconciler.nodes = await self.node_observer.observe(replicas, attempts)
            self.jobs.nodes = self.reconciler.nodes

        async def observe() -> None:
            deployments = await self.ctx.db(self.ctx.store.list_deployments)
            replicas = await self.ctx.db(self.ctx.store.list_replicas)
            probes = {d.name: d.spec.probes for d in deployments}
            lost = {n.name for n in self.reconciler.nodes if not n.alive}
            state["replicas"] = await self.observer.observe(replicas, probes, lost)

        async def reconcile() -> None:
            deployments = await self.ctx.db(self.ctx.store.list_deployments)
            rollouts = await self.ctx.db(self.ctx.store.list_rollouts)
            replicas = state.get("replicas")
            if replicas is None:
                replicas = await self.ctx.db(self.ctx.store.list_replicas)
            for d in deployments:
                mine = [r for r in replicas if r.deployment == d.name]
                try:
                    await self.reconciler.reconcile(d, mine, rollouts.get(d.name))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.phase_errors.labels("reconcile").inc()
                    log.exception("reconciling deployment %s failed; will retry", d.name)

        async def consolidate() -> None:
            deployments = await self.ctx.db(self.ctx.store.list_deployments)
            replicas = await self.ctx.db(self.ctx.store.list_replicas)
            attempts = await self.ctx.db(self.ctx.store.list_attempts, running=True)
            await self.consolidator.tick(self.reconciler.nodes, deployments, replicas,
                                         attempts)
            self.reconciler.moving = self.consolidator.evict
            self.reconciler.leaving = self.consolidator.leaving

        async def jobs() -> None:
            await self.jobs.tick(await self.ctx.db(self.ctx.store.list_replicas))

        async def publish() -> None:
            deployments = await self.ctx.db(self.ctx.store.list_deployments)
            replicas = await self.ctx.db(self.ctx.store.list_replicas)
            rollouts = await self.ctx.db(self.ctx.store.list_rollouts)
            self.publish(self.routes_of(deployments, replicas, rollouts))
            self.reconciler.routes_published()

        await self._guarded("nodes", nodes)
        await self._guarded("observe", observe)
        await self._guarded("reconcile", reconcile)
        await self._guarded("jobs", jobs)
        await self._guarded("consolidate", consolidate)
        await self._guarded("publish", publish)
