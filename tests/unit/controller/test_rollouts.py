"""Rollouts, autoscaling, draining and probes through the real controller, tick by tick:
fake backend, fake prober, fake gateway traffic, fake clock, real store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from leptonic.controller.context import ControllerContext
from leptonic.controller.loop import Controller, Routes
from leptonic.core.analysis import N_BUCKETS, TrafficCounters, bucket_of
from leptonic.core.models import (
    AutoscalingSpec,
    DeploymentSpec,
    ProbeSpec,
    Replica,
    ReplicaState,
    RolloutControl,
    RolloutPhase,
    StrategySpec,
    StrategyType,
)
from leptonic.core.transitions import RestartPolicy
from leptonic.runtime.fake import FakeBackend, FakeProber
from leptonic.store.artifacts import ArtifactStore
from leptonic.store.store import Store
from tests.unit.clock import Clock


@dataclass
class FakeTraffic:
    """What the controller reads from a gateway, set by the test."""

    outstanding: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    ever_held: dict[str, int] = field(default_factory=dict)   # the gateway's counter
    counts: dict[str, int] = field(default_factory=dict)
    groups: dict[str, dict[str, TrafficCounters]] = field(default_factory=dict)

    def waiting(self, deployment: str) -> int:
        return self.held.get(deployment, 0)

    def arrived(self, deployment: str) -> int:
        return self.counts.get(deployment, 0)

    def held_total(self, deployment: str) -> int:
        return self.ever_held.get(deployment, 0)

    def traffic(self, deployment: str) -> dict[str, TrafficCounters]:
        return dict(self.groups.get(deployment, {}))

    def answer(self, deployment: str, group: int, ok: int, failed: int = 0) -> None:
        """Add answers of one template: ``ok`` fast ones, ``failed`` 500s."""
        old = self.groups.setdefault(deployment, {}).get(str(group), TrafficCounters())
        buckets = list(old.buckets or (0,) * N_BUCKETS)
        buckets[bucket_of(5)] += ok + failed
        self.groups[deployment][str(group)] = TrafficCounters(
            old.requests + ok + failed, old.errors + failed, tuple(buckets))


@dataclass
class World:
    store: Store
    backend: FakeBackend
    prober: FakeProber
    traffic: FakeTraffic
    clock: Clock
    controller: Controller
    routes: list[Routes]

    async def tick(self, n: int = 1, advance: float = 0.0) -> None:
        for _ in range(n):
            self.clock.now += advance
            await self.controller.tick()
        await self.controller.reconciler.drain()

    def replicas(self, state: ReplicaState | None = None, gen: int | None = None
                 ) -> list[Replica]:
        return [r for r in self.store.list_replicas("svc")
                if (state is None or r.state is state) and (gen is None or r.generation == gen)]

    def routed(self) -> dict[str, list[str]]:
        """Routed replica ids by template generation, with the weights."""
        route = self.routes[-1]["svc"]
        out: dict[str, list[str]] = {}
        for u in route.upstreams:
            out.setdefault(u.group, []).append(u.replica_id)
        return out

    def weights(self) -> dict[str, float]:
        return dict(self.routes[-1]["svc"].weights)

    def rollout(self):  # type: ignore[no-untyped-def]
        ro = self.store.get_rollout("svc")
        assert ro is not None
        return ro

    def events(self) -> list[str]:
        events = self.store.list_events("deployment/svc", 500)
        return [f"{e.reason}: {e.message}" for e in reversed(events)]

    def update(self, **changes: object) -> None:
        d = self.store.get_deployment("svc")
        self.store.update_deployment_spec("svc", d.spec.model_copy(update=changes),
                                          expected_generation=d.generation)


@pytest.fixture
def world(tmp_path: Path) -> World:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    backend, prober, traffic, clock = FakeBackend(), FakeProber(), FakeTraffic(), Clock()
    ctx = ControllerContext(store=store, backend=backend, prober=prober,
                            artifacts=ArtifactStore(tmp_path / "artifacts"),
                            restart=RestartPolicy(base_s=1, crashloop_after=3),
                            traffic=traffic, clock=clock, stop_grace_s=0.1)
    routes: list[Routes] = []
    return World(store, backend, prober, traffic, clock, Controller(ctx, routes.append), routes)


CANARY = StrategySpec(type=StrategyType.CANARY, steps=[25, 50], step_interval_s=10)


def deploy(world: World, replicas: int = 2, **spec: object) -> None:
    world.store.create_deployment("svc", DeploymentSpec(
        photon="builtin:echo", replicas=replicas, drain_timeout_s=0, **spec))  # type: ignore[arg-type]


async def test_canary_steps_shift_weights_then_promote(world: World) -> None:
    deploy(world, 4, strategy=CANARY)
    await world.tick(2)
    assert world.rollout().status.id == 0, "the first template needs no rollout"
    world.update(env={"V": "2"})
    await world.tick(2)
    ro = world.rollout().status
    assert (ro.id, ro.phase, ro.step) == (1, RolloutPhase.PROGRESSING, 0)
    assert world.weights() == {"1": 75, "2": 25}
    assert len(world.routed()["2"]) == 1
    world.traffic.answer("svc", 2, ok=150)
    world.traffic.answer("svc", 1, ok=450)
    await world.tick(advance=10)           # the step is over: a second canary replica starts
    assert world.rollout().status.step == 0
    await world.tick()                     # ... and is ready: 50%
    assert world.rollout().status.step == 1
    assert world.weights() == {"1": 50, "2": 50}
    await world.tick(advance=10)           # 100% needs all four
    await world.tick(2)
    ro = world.rollout().status
    assert ro.phase is RolloutPhase.SUCCEEDED
    assert {r.generation for r in world.replicas()} == {2}
    assert len(world.replicas(ReplicaState.READY)) == 4
    d = world.store.get_deployment("svc")
    assert d.status.rollout == "Succeeded"
    reasons = [e.split(":")[0] for e in world.events()]
    assert reasons.count("RolloutStep") == 2
    assert "RolloutSucceeded" in reasons


async def test_failing_canary_is_rolled_back_with_its_figures(world: World) -> None:
    deploy(world, 2, strategy=CANARY)
    await world.tick(2)
    world.update(env={"V": "2"})
    await world.tick(2)
    assert world.weights() == {"1": 75, "2": 25}
    world.traffic.answer("svc", 2, ok=8, failed=2)      # 20% of the canary's answers fail
    world.traffic.answer("svc", 1, ok=30)
    await world.tick()
    ro = world.rollout().status
    assert ro.phase is RolloutPhase.ROLLED_BACK
    assert ro.reason.startswith("success-rate check failed at step 1/3 (25% of traffic)")
    assert "80%" in ro.reason
    assert world.weights() == {"1": 100}
    await world.tick()
    assert world.replicas(gen=2) == [], "the canary is drained and stopped"
    assert sorted(world.routed()) == ["1"]
    d = world.store.get_deployment("svc")
    assert d.status.rollout == "RolledBack"
    assert "success-rate check failed" in d.status.message
    warning = [e for e in world.events() if e.startswith("RolloutRolledBack")]
    assert warning
    assert "80%" in warning[0]


async def test_blue_green_switches_at_once_and_rolls_back_instantly(world: World) -> None:
    deploy(world, 2, strategy=StrategySpec(type=StrategyType.BLUE_GREEN, keep_old_s=60))
    await world.tick(2)
    blue = {r.id for r in world.replicas()}
    world.update(env={"V": "2"})
    await world.tick()
    assert sorted(world.routed()) == ["1"], "green is starting: blue serves everything"
    await world.tick(2)
    assert sorted(world.routed()) == ["2"]
    assert world.weights() == {"2": 100}
    assert {r.id for r in world.replicas(gen=1)} == blue, "blue is kept for rollback"
    started = len(world.backend.started)
    world.update(env={})                   # rollback: back to blue's template
    await world.tick()
    assert world.store.get_deployment("svc").status.template_generation == 1
    assert sorted(world.routed()) == ["1"], "blue serves again on the next tick"
    assert len(world.backend.started) == started, "nothing had to start"
    await world.tick(2, advance=61)
    assert {r.id for r in world.replicas()} == blue


async def test_rollout_resumes_after_a_control_plane_restart(world: World) -> None:
    deploy(world, 2, strategy=CANARY)
    await world.tick(2)
    world.update(env={"V": "2"})
    await world.tick(2)
    before = world.rollout().status
    assert before.step == 0
    world.backend.adoptable = {r.id for r in world.replicas()}
    fresh = Controller(world.controller.ctx, world.routes.append)
    await fresh.recover()
    world.controller = fresh
    started = len(world.backend.started)
    await world.tick()
    after = world.rollout().status
    assert (after.id, after.step, after.step_started_at) == (1, 0, before.step_started_at)
    assert len(world.backend.started) == started, "nothing duplicated"
    world.traffic.answer("svc", 2, ok=200)
    await world.tick(3, advance=10)
    assert world.rollout().status.phase is RolloutPhase.SUCCEEDED


async def test_pause_holds_promote_finishes_abort_goes_back(world: World) -> None:
    deploy(world, 2, strategy=CANARY)
    await world.tick(2)
    world.update(env={"V": "2"})
    await world.tick(2)
    world.store.set_rollout_control("svc", RolloutControl(id=1, paused=True))
    await world.tick(3, advance=30)
    ro = world.rollout().status
    assert (ro.phase, ro.step) == (RolloutPhase.PAUSED, 0)
    world.store.set_rollout_control("svc", RolloutControl(id=1, promote=True))
    await world.tick(3)
    assert world.rollout().status.phase is RolloutPhase.SUCCEEDED
    world.update(env={"V": "3"})
    await world.tick(2)
    assert world.rollout().status.id == 2
    world.store.set_rollout_control("svc", RolloutControl(id=2, abort=True))
    await world.tick(2)
    ro = world.rollout().status
    assert ro.phase is RolloutPhase.ABORTED
    assert {r.generation for r in world.replicas()} == {ro.stable.generation}


async def test_autoscaler_follows_in_flight_requests_to_zero_and_back(world: World) -> None:
    auto = AutoscalingSpec(min_replicas=0, max_replicas=3, target_concurrency=2,
                           upscale_delay_s=0, downscale_delay_s=5, scale_to_zero_after_s=20,
                           look_back_s=1, max_queued=7, queue_timeout_s=9)
    deploy(world, 1, autoscaling=auto)
    await world.tick(2)
    (r,) = world.replicas(ReplicaState.READY)
    assert world.routes[-1]["svc"].hold is not None
    assert world.routes[-1]["svc"].hold.max_queued == 7
    world.traffic.outstanding = {r.id: 6}
    world.traffic.counts["svc"] = 6
    await world.tick(2, advance=1)
    assert len(world.replicas()) == 3
    assert world.store.get_deployment("svc").status.desired_replicas == 3
    world.traffic.outstanding = {}
    await world.tick(3, advance=2)
    assert len(world.replicas()) == 3, "the downscale delay has not passed"
    await world.tick(2, advance=4)
    assert len(world.replicas()) == 1
    await world.tick(3, advance=10)
    assert world.replicas() == [], "idle past the period: scaled to zero"
    st = world.store.get_deployment("svc").status
    assert (st.phase, st.desired_replicas) == ("Stopped", 0)
    world.traffic.held["svc"] = 1                     # a request waits in the gateway
    await world.tick(2)
    assert len(world.replicas(ReplicaState.READY)) == 1
    assert any("waiting for a replica" in e for e in world.events())


async def test_a_hold_that_ended_before_the_tick_still_scales_from_zero(
        world: World) -> None:
    """A request held for a deployment at zero whose hold timed out before the controller
    looked (a short queue timeout, a slow tick) is demand all the same."""
    auto = AutoscalingSpec(min_replicas=0, max_replicas=2, scale_to_zero_after_s=1,
                           queue_timeout_s=0.3)
    deploy(world, 1, autoscaling=auto)
    await world.tick(3, advance=2)
    assert world.replicas() == []
    await world.tick(2)
    assert world.replicas() == [], "nothing held: it stays at zero"
    world.traffic.ever_held["svc"] = 1                # held, then timed out: none waits now
    await world.tick(2)
    assert len(world.replicas()) == 1
    assert any("1 request(s) waiting for a replica" in e for e in world.events())


async def test_stop_drains_in_flight_requests_first(world: World) -> None:
    deploy(world, 2)
    await world.tick(2)
    d = world.store.get_deployment("svc")
    world.store.update_deployment_spec("svc", d.spec.model_copy(
        update={"replicas": 1, "drain_timeout_s": 5}), expected_generation=d.generation)
    a, b = world.replicas()
    world.traffic.outstanding = {a.id: 1, b.id: 3}
    await world.controller.tick()
    task = next(iter(world.controller.reconciler._stopping.values()))
    draining = [r for r in world.replicas() if r.state is ReplicaState.DRAINING]
    assert [r.id for r in draining] == [a.id], "the idle replica goes, not the busy one"
    assert a.id not in world.routes[-1]["svc"].ids
    for _ in range(5):
        await world.controller.tick()
    assert not task.done(), "a request is still in flight"
    assert a.id not in world.backend.stopped
    world.traffic.outstanding = {b.id: 3}
    await world.controller.reconciler.drain()
    assert a.id in world.backend.stopped


async def test_unready_replica_gets_no_traffic_until_it_answers(world: World) -> None:
    deploy(world, 2, probes=ProbeSpec(period_s=1, liveness_failures=3))
    await world.tick(2)
    a, b = world.replicas()
    world.prober.unready.add(a.url or "")
    await world.tick(advance=1.1)
    assert world.routes[-1]["svc"].ids == (b.id,)
    assert any(e.startswith("ReplicaUnready") for e in world.events())
    await world.tick(3, advance=1.1)
    assert a.id not in world.backend.stopped, "it answers: alive, not replaced"
    world.prober.unready.clear()
    await world.tick(advance=1.1)
    assert sorted(world.routes[-1]["svc"].ids) == sorted([a.id, b.id])


async def test_blue_green_smoke_failure_rolls_back(world: World) -> None:
    deploy(world, 1, strategy=StrategySpec(type=StrategyType.BLUE_GREEN, smoke_path="/echo",
                                           smoke_body={"text": "hi"}))
    await world.tick(2)
    world.update(env={"V": "2"})
    await world.tick()
    (green,) = world.replicas(gen=2)
    world.prober.smoke_fails[green.url or ""] = "HTTP 500 from green"
    await world.tick(3)
    ro = world.rollout().status
    assert ro.phase is RolloutPhase.ROLLED_BACK
    assert "HTTP 500 from green" in ro.reason
    assert world.prober.smoked == [green.url]


async def test_predictive_scales_from_the_stored_request_rate_series(world: World) -> None:
    """The forecaster reads ``deployment/svc`` from the series store (what a restart
    finds): a rising periodic rate scales up before the in-flight load asks for it, and
    the status says what was forecast and why."""
    import math

    from leptonic.store.observe import ObserveStore

    auto = AutoscalingSpec(policy="predictive", min_replicas=1, max_replicas=6,
                           target_concurrency=2, upscale_delay_s=30, look_back_s=1)
    deploy(world, 1, autoscaling=auto)
    now = world.clock.now
    ostore = ObserveStore(world.store)
    for i in range(60, 0, -1):          # 10 minutes of a 2-minute period, 10 s apart
        t = now - i * 10
        ostore.add_samples(t, {"deployment/svc": {
            "requests_per_s": 5 + 4 * math.sin(2 * math.pi * t / 120)}})
    await world.tick(2)
    (r,) = world.replicas(ReplicaState.READY)
    world.traffic.outstanding = {r.id: 4}    # reactive: 2, after its 30 s upscale delay
    world.traffic.counts["svc"] = 10
    await world.tick(2, advance=0.5)
    st = world.store.get_deployment("svc").status
    auto_st = st.autoscale
    assert auto_st is not None
    assert auto_st.forecast_period_s == pytest.approx(120, rel=0.05)
    assert auto_st.forecast_rate is not None
    assert auto_st.forecast_error is not None
    assert auto_st.service_s is not None
    assert "forecast" in auto_st.why
    assert st.desired_replicas > 1, auto_st.why
