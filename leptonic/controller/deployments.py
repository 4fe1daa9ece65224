"""Reconcile deployments: decide with core/ (autoscaler, rollout planner, replica planner),
persist the decision, then apply it through the runtime.

Per deployment and tick: the autoscaler says how many replicas (N); the rollout planner
says how many of each template and what share of traffic each gets, from the stored
rollout state, the user's pause/promote/abort, the replica sets and the gateway's traffic
figures since the step began; the new rollout state is stored *before* any replica is
started or stopped, so a control plane killed at any point resumes the same rollout. The
replica planner turns the per-template counts into starts, restarts and stops.

A stopped replica is drained first: it is marked ``draining`` (so the next route publish
leaves it out and it gets no new request), its in-flight requests may finish for up to
``drain_timeout_s``, and only then does it get SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import Counter, deque
from dataclasses import dataclass

from leptonic.controller.context import ControllerContext
from leptonic.controller.held import held_work
from leptonic.controller.nodes import HOLDING
from leptonic.core.analysis import TrafficCounters
from leptonic.core.autoscaler import (
    STARTUP_S,
    AutoscaleInput,
    PredictiveInput,
    Sample,
    autoscale,
    average_in_flight,
    forecast_steps,
    initial_state,
    predictive,
    service_estimate,
)
from leptonic.core.forecast import ForecastConfig, Forecaster, idle_gaps, keep_alive
from leptonic.core.models import (
    AutoscaleState,
    AutoscalingPolicy,
    Deployment,
    DeploymentPhase,
    DeploymentSpec,
    DeploymentStatus,
    Node,
    Replica,
    ReplicaState,
    Rollout,
    RolloutControl,
    RolloutPhase,
    RolloutStatus,
    Template,
)
from leptonic.core.planner import (
    Action,
    RemoveDeployment,
    RestartReplica,
    StartReplica,
    StopReplica,
    plan,
)
from leptonic.core.rollout import (
    RolloutEvent,
    RolloutInput,
    SetState,
    SmokeResult,
    begin,
    known_generation,
    plan_rollout,
)
from leptonic.core.scheduler import DEFAULT_POLICY, Placement, Request, place
from leptonic.core.transitions import (
    ACTIVE_STATES,
    deployment_status,
    error_line,
    replica_exited,
    replica_restarted,
    template_hash,
)
from leptonic.core.usage import replica_run
from leptonic.errors import BackendError, LeptonicError
from leptonic.runtime.base import ReplicaLaunch
from leptonic.store.usage import UsageStore

log = logging.getLogger(__name__)

PUBLISH_WAIT_S = 2.0       # a draining replica waits this long at most for a route publish
MAX_SAMPLES = 4096         # autoscaler samples kept per deployment
SERIES_REFRESH_S = 1.0     # how often a predictive deployment's series is read again
HISTORY_S = 8 * 3600.0     # of the request-rate series read after a (re)start


def new_replica_id(deployment: str) -> str:
    return f"{deployment}-{secrets.token_hex(3)}"


@dataclass
class _Window:
    """The traffic counters at the start of a rollout step (the analysis window)."""

    key: tuple[int, float]
    base: dict[str, TrafficCounters]


@dataclass
class _Smoke:
    key: tuple[int, frozenset[str]]
    task: asyncio.Task[SmokeResult]


class DeploymentReconciler:
    """``reconcile(deployment, replicas, rollout)`` converges one deployment; safe to call
    any time."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._windows: dict[str, _Window] = {}
        self._smoke: dict[str, _Smoke] = {}
        self._samples: dict[str, deque[Sample]] = {}
        self._arrived: dict[str, int] = {}
        self._held: dict[str, int] = {}         # the gateway's held count at the last look
        self._autoscale: dict[str, AutoscaleState] = {}
        # predictive deployments: the forecaster, fed from the stored request-rate series
        # (rebuilt from it after a restart), and when the series was last read
        self._forecasters: dict[str, tuple[Forecaster, float]] = {}
        self._service: dict[str, float | None] = {}   # seconds a request is in flight
        self._published = asyncio.Event()
        self.nodes: list[Node] = []                   # the node phase's latest snapshot
        # set by the consolidation phase: replicas to move, nodes placement keeps out
        self.moving: frozenset[str] = frozenset()
        self.leaving: dict[str, str] = {}
        self._unschedulable: dict[str, str] = {}      # deployment -> why a start failed
        self._told: dict[str, str] = {}               # the reason last sent as an event

    # -- the loop calls these ---------------------------------------------------------------
    def routes_published(self) -> None:
        """The controller published a route table: draining replicas are out of it."""
        self._published.set()
        self._published = asyncio.Event()

    def forget(self, name: str) -> None:
        """Drop what is remembered of a removed deployment."""
        self._windows.pop(name, None)
        self._smoke.pop(name, None)
        self._samples.pop(name, None)
        self._arrived.pop(name, None)
        self._held.pop(name, None)
        self._autoscale.pop(name, None)
        self._forecasters.pop(name, None)
        self._service.pop(name, None)
        self._unschedulable.pop(name, None)
        self._told.pop(name, None)

    async def reconcile(self, d: Deployment, replicas: list[Replica],
                        rollout: Rollout | None = None) -> None:
        ctx = self.ctx
        now = ctx.clock()
        if d.deleting:
            await self._delete(d, replicas, now)
            return
        previous = rollout.status if rollout is not None else None
        control = rollout.control if rollout is not None else RolloutControl()
        d, target = await self._track_template(d, previous)
        events: list[RolloutEvent] = []
        st = previous
        if st is None or st.target.hash != target.hash:
            st, started = begin(st, target, d.spec.strategy, now)
            events += started
            self._windows.pop(d.name, None)
            self._smoke.pop(d.name, None)

        n, scaled = await self._desired(d, replicas, now)
        canary, stable = self._window(d.name, st)
        decision = plan_rollout(RolloutInput(
            st, control, n, _sets(replicas, ctx.restart.crashloop_after), canary=canary,
            stable=stable, smoke=self._smoke_result(d.name, st, replicas), now=now))
        new = decision.status
        if new != previous:       # persist the decision, then act on it
            await ctx.db(ctx.store.set_rollout_status, d.name, new)
        for ev in events + list(decision.events):
            await ctx.event(f"deployment/{d.name}", ev.reason, ev.message, ev.kind)
        if (new.id, new.step_started_at) != (st.id, st.step_started_at) or \
                d.name not in self._windows:
            self._windows[d.name] = _Window((new.id, new.step_started_at),
                                            ctx.traffic.traffic(d.name))
        if decision.smoke_wanted:
            self._start_smoke(d.name, new, replicas)

        templates = {t.generation: t for t in (new.previous, new.stable, new.target)
                     if t is not None}
        draining = {n.name for n in self.nodes if n.alive and n.control.draining}
        evict = frozenset(r.id for r in replicas if r.node in draining) | self.moving
        actions = plan(d, replicas, now, ctx.restart, targets=decision.targets,
                       load=ctx.traffic.outstanding, evict=evict)
        self._unschedulable.pop(d.name, None)       # this tick's starts say it again
        by_id = {r.id: r for r in replicas}
        for action in actions:
            try:
                await self._apply(d, action, by_id, templates)
            except LeptonicError as exc:
                log.warning("deployment %s: %s failed: %s", d.name, action, exc.detail)
                await ctx.event(f"deployment/{d.name}", "ActionFailed", exc.detail, "Warning")
        after = await ctx.db(ctx.store.list_replicas, d.name)
        status = deployment_status(d, after, ctx.clock(), ctx.restart, desired=n)
        status = status.model_copy(update={
            "autoscale": scaled or None, "rollout": "" if new.id == 0 else new.phase.value,
            "message": _message(status, new)})
        status = await self._placement_status(d, status)
        if _differs(status, d.status):
            await ctx.db(ctx.store.set_deployment_status, d.name, status)
            if status.phase != d.status.phase:
                kind = "Warning" if status.phase in ("CrashLoop", "Degraded") else "Normal"
                await ctx.event(f"deployment/{d.name}", f"Phase{status.phase}",
                                status.message, kind)

    async def _placement_status(self, d: Deployment, status: DeploymentStatus
                                ) -> DeploymentStatus:
        """A replica that found no node makes the deployment Unschedulable (while it has
        fewer ready than desired), with the reason; said once as an event."""
        reason = self._unschedulable.get(d.name)
        if reason is None:
            self._told.pop(d.name, None)
            return status
        if self._told.get(d.name) != reason:
            self._told[d.name] = reason
            await self.ctx.event(f"deployment/{d.name}", "Unschedulable", reason, "Warning")
        if status.ready_replicas >= status.desired_replicas:
            return status
        return status.model_copy(update={"phase": DeploymentPhase.UNSCHEDULABLE,
                                         "message": reason})

    async def _place(self, name: str, spec: DeploymentSpec, replacing: str | None = None
                     ) -> Placement:
        """The node for one more replica of ``name``, from the latest nodes and what the
        stored replicas hold on them now (so starts in one tick see each other); the
        replica being ``replacing`` holds nothing."""
        ctx = self.ctx
        nodes = self.nodes or await ctx.backend.nodes()
        replicas = [r for r in await ctx.db(ctx.store.list_replicas) if r.id != replacing
                    and r.state in HOLDING]
        # replicas and running job attempts, in start order (the same GPU shares each time)
        held = [(h.node, h.request) for h in await held_work(ctx, replicas)]
        spread = Counter(r.node for r in replicas if r.deployment == name)
        policy = spec.placement.policy or DEFAULT_POLICY
        placed = place(nodes, Request.of(name, spec.resources, spec.placement), spread,
                       policy, held, keep_out=self.leaving)
        if placed.node is None:
            self._unschedulable[name] = placed.reason
        return placed

    async def _delete(self, d: Deployment, replicas: list[Replica], now: float) -> None:
        ctx = self.ctx
        actions = plan(d, replicas, now, ctx.restart)
        by_id = {r.id: r for r in replicas}
        for action in actions:
            try:
                await self._apply(d, action, by_id, {})
            except LeptonicError as exc:
                await ctx.event(f"deployment/{d.name}", "ActionFailed", exc.detail, "Warning")
        if any(isinstance(a, RemoveDeployment) for a in actions):
            return
        after = await ctx.db(ctx.store.list_replicas, d.name)
        status = deployment_status(d, after, ctx.clock(), ctx.restart)
        if _differs(status, d.status):
            await ctx.db(ctx.store.set_deployment_status, d.name, status)

    # -- deciding ---------------------------------------------------------------------------
    async def _track_template(self, d: Deployment, rollout: RolloutStatus | None
                              ) -> tuple[Deployment, Template]:
        """The spec's replica template; a template the rollout still knows keeps its
        generation, so its replicas (a blue-green set kept for rollback) serve again."""
        h = template_hash(d.spec)
        if h != d.status.template_hash:
            generation = known_generation(rollout, h) or d.generation
            status = d.status.model_copy(update={"template_hash": h,
                                                 "template_generation": generation})
            await self.ctx.db(self.ctx.store.set_deployment_status, d.name, status)
            d = d.model_copy(update={"status": status})
        return d, Template(generation=d.status.template_generation, hash=h, spec=d.spec)

    async def _desired(self, d: Deployment, replicas: list[Replica], now: float
                       ) -> tuple[int, AutoscaleState | None]:
        """N: ``spec.replicas``, or what the autoscaler makes of the requests in flight."""
        spec = d.spec.autoscaling
        if spec is None:
            return d.spec.replicas, None
        traffic = self.ctx.traffic
        state = self._autoscale.get(d.name) or d.status.autoscale or initial_state(spec, now)
        # held now, or held and gone (timed out) since the last look: demand either way
        held = traffic.held_total(d.name)
        waiting = max(traffic.waiting(d.name), held - self._held.setdefault(d.name, held))
        self._held[d.name] = held
        outstanding = traffic.outstanding
        in_flight = sum(outstanding.get(r.id, 0) for r in replicas) + waiting
        samples = self._samples.setdefault(d.name, deque(maxlen=MAX_SAMPLES))
        samples.append(Sample(now, float(in_flight)))
        while samples and samples[0].time < now - spec.look_back_s:
            samples.popleft()
        arrived = traffic.arrived(d.name)
        active = arrived != self._arrived.setdefault(d.name, arrived)
        self._arrived[d.name] = arrived
        inp = AutoscaleInput(spec, state, list(samples), waiting, active, now)
        if spec.policy is AutoscalingPolicy.PREDICTIVE:
            decision = predictive(await self._predictive_input(d.name, inp))
        else:
            self._forecasters.pop(d.name, None)
            decision = autoscale(inp)
        self._autoscale[d.name] = decision.state
        if decision.reason:
            log.info("deployment %s: %d -> %d replicas: %s", d.name, state.replicas,
                     decision.replicas, decision.reason)
            await self.ctx.event(f"deployment/{d.name}", "Scaled",
                                 f"scaled from {state.replicas} to {decision.replicas} "
                                 f"replica(s): {decision.reason}")
        # stored coarsely, so a busy deployment's status is not rewritten every tick
        stored = decision.state.model_copy(update={
            "in_flight": round(decision.state.in_flight, 1),
            "last_active_at": float(int(decision.state.last_active_at) // 5 * 5)})
        return decision.replicas, stored

    async def _predictive_input(self, name: str, inp: AutoscaleInput) -> PredictiveInput:
        """The forecaster's word on ``name``'s request rate, fed from the stored series
        ``deployment/NAME`` (``requests_per_s``), read again at most every second."""
        now = inp.now
        held = self._forecasters.get(name)
        if held is None or now - held[1] >= SERIES_REFRESH_S:
            since = held[0].last_at if held is not None and held[0].last_at is not None \
                else now - HISTORY_S
            rows = await self.ctx.db(self._series, name, since, now)
            if held is None:
                # the series' own spacing (written by whichever control plane led), else
                # this one's sampling interval: a new deployment has no series yet
                times = [ts for ts, _ in rows]
                gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
                interval = gaps[len(gaps) // 2] if len(gaps) >= 2 \
                    else self.ctx.series_interval_s
                steps = max(1, round((STARTUP_S + interval) / interval))
                held = (Forecaster(ForecastConfig(interval_s=interval, horizon=steps)), now)
            forecaster = held[0]
            for ts, data in rows:
                forecaster.observe(ts, data.get("requests_per_s"))
            self._forecasters[name] = (forecaster, now)
            if forecaster.values:   # Little's law: in flight now over the latest rate
                load = average_in_flight(inp.samples, now, inp.spec.look_back_s)
                self._service[name] = service_estimate(
                    self._service.get(name, inp.state.service_s), load,
                    forecaster.values[-1])
        forecaster = self._forecasters[name][0]
        cfg = forecaster.cfg
        idle = keep_alive(idle_gaps(list(forecaster.values), cfg.interval_s)) \
            if inp.spec.min_replicas == 0 else None
        steps = max(cfg.horizon, forecast_steps(inp.spec, STARTUP_S, cfg.interval_s))
        return PredictiveInput(inp, forecaster.forecast(steps),
                               self._service.get(name, inp.state.service_s), STARTUP_S, idle)

    def _series(self, name: str, since: float, until: float
                ) -> list[tuple[float, dict[str, object]]]:
        from leptonic.store.observe import ObserveStore

        rows: list[tuple[float, dict[str, object]]] = ObserveStore(self.ctx.store).samples(
            f"deployment/{name}", 0, since + 1e-6, until)
        return rows

    def _window(self, name: str, st: RolloutStatus) -> tuple[TrafficCounters, TrafficCounters]:
        """The target's and the stable set's traffic since the current step began."""
        window = self._windows.get(name)
        if window is None or window.key != (st.id, st.step_started_at):
            return TrafficCounters(), TrafficCounters()   # e.g. after a restart: a new window
        now = self.ctx.traffic.traffic(name)
        empty = TrafficCounters()

        def since(gen: int) -> TrafficCounters:
            g = str(gen)
            return now.get(g, empty).since(window.base.get(g, empty))

        return since(st.target.generation), since(st.stable.generation)

    def _smoke_key(self, st: RolloutStatus, replicas: list[Replica]) -> tuple[int, frozenset[str]]:
        ready = frozenset(r.id for r in replicas if r.generation == st.target.generation
                          and r.state is ReplicaState.READY)
        return st.id, ready

    def _smoke_result(self, name: str, st: RolloutStatus, replicas: list[Replica]
                      ) -> SmokeResult | None:
        smoke = self._smoke.get(name)
        if smoke is None or smoke.key != self._smoke_key(st, replicas) or not smoke.task.done():
            return None
        if smoke.task.cancelled() or smoke.task.exception() is not None:
            return SmokeResult(False, "the smoke check itself failed")
        return smoke.task.result()

    def _start_smoke(self, name: str, st: RolloutStatus, replicas: list[Replica]) -> None:
        key = self._smoke_key(st, replicas)
        current = self._smoke.get(name)
        if current is not None and current.key == key:
            return
        if current is not None:
            current.task.cancel()
        urls = [r.url for r in replicas if r.id in key[1] and r.url]
        path, body = st.strategy.smoke_path or "/", st.strategy.smoke_body
        prober = self.ctx.prober

        async def check() -> SmokeResult:
            errors = await asyncio.gather(*(prober.smoke(u, path, body) for u in urls))
            failed = [e for e in errors if e]
            if failed:
                return SmokeResult(False, f"{len(failed)}/{len(urls)} replica(s) failed: "
                                          f"{failed[0]}")
            return SmokeResult(True, f"{len(urls)} replica(s) answered POST {path}")

        self._smoke[name] = _Smoke(key, asyncio.create_task(check(), name=f"smoke-{name}"))

    # -- applying ---------------------------------------------------------------------------
    async def _apply(self, d: Deployment, action: Action, by_id: dict[str, Replica],
                     templates: dict[int, Template]) -> None:
        match action:
            case StartReplica(generation=gen):
                await self._start(d, templates[gen])
            case RestartReplica(replica_id=rid):
                old = by_id[rid]
                template = templates.get(old.generation)
                if template is None:
                    await self._stop(old, "its template is no longer wanted", 0.0)
                else:
                    await self._restart(d, old, template)
            case StopReplica(replica_id=rid, reason=why):
                await self._stop(by_id[rid], why, d.spec.drain_timeout_s)
            case RemoveDeployment(deployment=name):
                await self.ctx.db(self.ctx.store.delete_rollout, name)
                await self.ctx.db(self.ctx.store.remove_deployment, name)
                self.forget(name)
                await self.ctx.event(f"deployment/{name}", "Deleted", "deployment removed")

    async def _launch(self, name: str, template: Template, replica: Replica) -> ReplicaLaunch:
        replica_id = replica.id
        spec = template.spec
        model_env: dict[str, str] = {}
        if spec.model is not None:          # a registered model: its server, its file
            m = spec.model
            entry, bundle = m.photon, str(self.ctx.artifacts.path(m.digest))
            model_env = {m.path_env: m.artifact, "LEPTONIC_MODEL": f"{m.model}@{m.version}"}
        elif spec.photon.startswith("builtin:"):
            entry, bundle = spec.photon, None
        else:
            pv = await self.ctx.db(self.ctx.store.get_photon, spec.photon, spec.photon_version)
            entry, bundle = pv.entry, str(self.ctx.artifacts.path(pv.digest))
        if spec.model is not None and spec.model.monitor:
            model_env["LEPTONIC_MONITOR"] = "predict"     # its answers are sampled
        env = {**spec.env, **model_env}
        for secret in spec.secrets:         # decrypted only here, on the way to the process
            if self.ctx.secrets is None:
                raise BackendError(f"secret {secret!r} is needed but this platform has no "
                                   "secrets key")
            ciphertext = await self.ctx.db(self.ctx.store.secret_ciphertext, secret)
            env[secret] = self.ctx.secrets.decrypt(ciphertext)
        limits = spec.limits
        return ReplicaLaunch(replica_id=replica_id, deployment=name, entry=entry,
                             bundle_dir=bundle, env=env, memory_mb=limits.memory_mb,
                             cpu=limits.cpu, open_files=limits.open_files,
                             processes=limits.processes,
                             handler_timeout_s=spec.handler_timeout_s,
                             max_concurrency=spec.max_concurrency,
                             debug_errors=spec.debug_errors, node=replica.node,
                             cpu_request=spec.resources.cpu,
                             memory_request_mb=spec.resources.memory_mb,
                             gpu_request=spec.resources.gpu)

    async def _run(self, name: str, template: Template, replica: Replica) -> Replica:
        """Persist the replica as starting, then start its process, then record where."""
        ctx = self.ctx
        await ctx.db(ctx.store.upsert_replica, replica)
        try:
            launch = await self._launch(name, template, replica)
            handle = await ctx.backend.start(launch)
        except LeptonicError as exc:
            failed = replica_exited(replica, None, exc.detail, ctx.clock(), ctx.restart)
            await ctx.db(ctx.store.upsert_replica, failed)
            raise
        started = replica.model_copy(update={
            "url": handle.url, "pid": handle.pid, "port": handle.port, "node": handle.node,
            "log_path": handle.log_path})
        await ctx.db(ctx.store.upsert_replica, started)
        return started

    async def _start(self, d: Deployment, template: Template) -> None:
        placed = await self._place(d.name, template.spec)
        if placed.node is None:
            return              # no row: the next tick tries again, the status says why
        now = self.ctx.clock()
        replica = Replica(id=new_replica_id(d.name), deployment=d.name,
                          photon_version=template.spec.photon_version,
                          generation=template.generation, state=ReplicaState.STARTING,
                          created_at=now, started_at=now, node=placed.node,
                          resources=template.spec.resources)
        r = await self._run(d.name, template, replica)
        await self.ctx.event(f"deployment/{d.name}", "ReplicaStarted",
                             f"started replica {r.id} of generation {r.generation} on node "
                             f"{r.node} (pid {r.pid})")

    async def _restart(self, d: Deployment, old: Replica, template: Template) -> None:
        await self.ctx.backend.stop(old.id, grace_s=0.5)   # make sure nothing lingers
        # placed afresh: its node may be the reason it failed (lost, draining, full)
        placed = await self._place(d.name, template.spec, replacing=old.id)
        if placed.node is None:
            return              # stays failed; tried again next tick
        replica = replica_restarted(old, self.ctx.clock()).model_copy(update={
            "photon_version": template.spec.photon_version, "probe_failures": 0,
            "node": placed.node, "resources": template.spec.resources})
        r = await self._run(d.name, template, replica)
        await self.ctx.event(f"deployment/{d.name}", "ReplicaRestarted",
                             f"restarted replica {r.id} on node {r.node} (restart "
                             f"#{r.restarts}, pid {r.pid})")

    async def _stop(self, r: Replica, reason: str, drain_s: float) -> None:
        if r.id in self._stopping:
            return
        draining = r.model_copy(update={"state": ReplicaState.DRAINING})
        await self.ctx.db(self.ctx.store.upsert_replica, draining)
        # draining waits on requests in flight; do it beside the loop, not in it
        self._stopping[r.id] = asyncio.create_task(
            self._finish_stop(draining, reason, drain_s,
                              was_serving=r.state is ReplicaState.READY))

    async def _finish_stop(self, r: Replica, reason: str, drain_s: float,
                           was_serving: bool) -> None:
        ctx = self.ctx
        try:
            if was_serving and drain_s > 0:
                await self._drain(r, drain_s)
            await ctx.backend.stop(r.id, grace_s=ctx.stop_grace_s)
            await ctx.db(UsageStore(ctx.store).close, replica_run(r.id, r.restarts),
                         ctx.clock())
            await ctx.db(ctx.store.delete_replica, r.id)
            await ctx.event(f"deployment/{r.deployment}", "ReplicaStopped",
                            f"stopped replica {r.id}: {reason}")
        except Exception:
            log.exception("stopping replica %s failed", r.id)
        finally:
            self._stopping.pop(r.id, None)

    async def _drain(self, r: Replica, drain_s: float) -> None:
        """Wait until the gateway sends ``r`` nothing new and its requests have finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        published = self._published
        try:
            await asyncio.wait_for(published.wait(), PUBLISH_WAIT_S)
        except TimeoutError:
            pass
        while (left := self.ctx.traffic.outstanding.get(r.id, 0)) > 0:
            if loop.time() >= deadline:
                log.warning("replica %s still had %d request(s) in flight after %.1fs of "
                            "draining; stopping it", r.id, left, drain_s)
                return
            await asyncio.sleep(0.02)

    async def drain(self) -> None:
        """Wait for replicas being stopped (platform shutdown, tests)."""
        if self._stopping:
            await asyncio.gather(*self._stopping.values(), return_exceptions=True)


def _sets(replicas: list[Replica], crashloop_after: int) -> dict[int, SetState]:
    """The replicas of each template, as the rollout planner sees them."""
    sets: dict[int, SetState] = {}
    for r in replicas:
        if r.state not in ACTIVE_STATES:
            continue
        s = sets.get(r.generation, SetState())
        crashing = s.crashing
        if crashing is None and r.failures >= crashloop_after:
            line = error_line(r.last_error)
            crashing = (f"replica {r.id} failed {r.failures} times in a row"
                        + (f"; its error: {line}" if line else ""))
        sets[r.generation] = SetState(
            active=s.active + 1,
            ready=s.ready + (r.state is ReplicaState.READY and r.probe_failures == 0),
            crashing=crashing)
    return sets


def _message(status: DeploymentStatus, rollout: RolloutStatus) -> str:
    if rollout.id == 0 or (rollout.phase is RolloutPhase.SUCCEEDED and not rollout.previous):
        return status.message
    return f"{status.message}; rollout {rollout.id} {rollout.phase}: {rollout.message}"


def _differs(a: object, b: object) -> bool:
    da = a.model_dump(exclude={"updated_at"})  # type: ignore[attr-defined]
    db = b.model_dump(exclude={"updated_at"})  # type: ignore[attr-defined]
    return bool(da != db)
