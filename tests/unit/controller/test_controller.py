"""The control loop driven tick by tick: fake backend, fake prober, fake clock, real store."""

from __future__ import annotations

from leptonic.controller.loop import Controller
from leptonic.core.models import DeploymentPhase, DeploymentSpec, ProbeSpec, ReplicaState
from tests.unit.controller.world import World

PROBES = ProbeSpec(period_s=1, liveness_failures=2)


def deploy(world: World, replicas: int = 2) -> None:
    world.store.create_deployment(
        "echo", DeploymentSpec(photon="builtin:echo", photon_version=0, replicas=replicas,
                               probes=PROBES))


async def test_deploy_starts_replicas_then_routes_them_once_ready(world: World) -> None:
    deploy(world, 2)
    world.prober.down.update({f"http://fake:{p}" for p in range(20000, 30000)})
    await world.tick()
    assert len(world.backend.started) == 2
    assert len(world.replicas(ReplicaState.STARTING)) == 2
    assert world.routed() == []
    assert world.phase() is DeploymentPhase.PENDING
    world.prober.down.clear()
    await world.tick()
    assert len(world.replicas(ReplicaState.READY)) == 2
    await world.tick()
    assert world.routed() == sorted(r.id for r in world.replicas())
    assert world.phase() is DeploymentPhase.READY
    await world.tick(5, advance=1)
    assert len(world.backend.started) == 2, "a converged deployment starts nothing more"


async def test_crashed_replica_leaves_routes_and_restarts_after_backoff(world: World) -> None:
    deploy(world, 1)
    await world.tick(2)
    (r,) = world.replicas(ReplicaState.READY)
    world.backend.kill(r.id, exit_code=137)
    world.backend.logs[r.id] = ["Traceback (most recent call last):", "RuntimeError: boom"]
    await world.tick()
    (failed,) = world.replicas()
    assert failed.state is ReplicaState.FAILED
    assert failed.exit_code == 137
    assert "RuntimeError: boom" in (failed.last_error or "")
    assert world.routed() == []
    await world.tick(advance=0.5)          # still in backoff (1 s)
    assert len(world.backend.started) == 1
    await world.tick(advance=0.6)
    assert len(world.backend.started) == 2
    assert world.backend.started[-1].replica_id == r.id, "restarted in the same slot"
    await world.tick()
    (again,) = world.replicas(ReplicaState.READY)
    assert again.restarts == 1
    events = [e.reason for e in world.store.list_events("deployment/echo")]
    assert "ReplicaCrashed" in events
    assert "ReplicaRestarted" in events


async def test_repeated_crashes_become_crashloop_with_last_error(world: World) -> None:
    deploy(world, 1)
    for _ in range(6):      # every other round the replica is still backing off
        await world.tick()
        for r in world.replicas():
            if world.backend.alive.get(r.id):
                world.backend.kill(r.id, exit_code=1)
                world.backend.logs[r.id] = ["ImportError: no module named torch"]
        await world.tick(advance=10)
    st = world.store.get_deployment("echo").status
    assert st.phase is DeploymentPhase.CRASH_LOOP
    assert "ImportError" in (st.last_error or "")
    assert "failed" in st.message


async def test_hung_replica_is_replaced_after_failed_liveness_probes(world: World) -> None:
    deploy(world, 1)
    await world.tick(2)
    (r,) = world.replicas(ReplicaState.READY)
    world.prober.down.add(r.url)
    await world.tick(2, advance=1.1)
    (failed,) = world.replicas()
    assert failed.state is ReplicaState.FAILED
    assert r.id in world.backend.stopped
    assert "liveness" in world.store.list_events("deployment/echo")[0].message or any(
        "liveness" in e.message for e in world.store.list_events("deployment/echo"))


async def test_scale_down_and_delete(world: World) -> None:
    deploy(world, 3)
    await world.tick(2)
    d = world.store.get_deployment("echo")
    world.store.update_deployment_spec("echo", d.spec.model_copy(update={"replicas": 1}),
                                       expected_generation=d.generation)
    await world.tick(2)
    assert len(world.replicas()) == 1
    assert len(world.backend.stopped) == 2
    world.store.mark_deleting("echo")
    await world.tick(3)
    assert world.store.list_deployments() == []
    assert world.routes[-1] == {}


async def test_env_change_replaces_replicas_without_gap(world: World) -> None:
    deploy(world, 2)
    await world.tick(2)
    old = {r.id for r in world.replicas()}
    d = world.store.get_deployment("echo")
    world.store.update_deployment_spec("echo", d.spec.model_copy(update={"env": {"A": "1"}}),
                                       expected_generation=d.generation)
    for _ in range(6):
        await world.tick()
        assert len(world.routed() or []) >= 2, "never fewer ready routes than desired"
    new = {r.id for r in world.replicas()}
    assert new.isdisjoint(old)
    assert all(launch.env == {"A": "1"} for launch in world.backend.started[2:])


async def test_restart_adopts_live_replicas_and_forgets_dead_ones(world: World) -> None:
    deploy(world, 2)
    await world.tick(2)
    a, _ = world.replicas()
    world.backend.adoptable = {a.id}
    fresh = Controller(world.controller.ctx, world.routes.append)
    await fresh.recover()
    assert [r.id for r in world.store.list_replicas("echo")] == [a.id]
    world.controller = fresh
    await world.tick(2)
    assert len(world.replicas(ReplicaState.READY)) == 2
    assert len(world.backend.started) == 3, "one replacement, no duplicate of the adopted one"


async def test_a_failing_phase_does_not_kill_the_loop(world: World) -> None:
    deploy(world, 1)
    world.backend.fail_start = True
    await world.tick(3, advance=5)
    events = [e.reason for e in world.store.list_events("deployment/echo")]
    assert "ActionFailed" in events
    world.backend.fail_start = False
    await world.tick(3, advance=60)
    assert len(world.replicas(ReplicaState.READY)) == 1
