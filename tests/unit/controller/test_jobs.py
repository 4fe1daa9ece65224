"""Jobs tick by tick on the fake backend: indexes and parallelism, retries with backoff,
output into the artifact store and its limit, deadline, cancel, TTL, priority and
preemption (never of replicas), replicas and attempts counting each other, recovery."""

from __future__ import annotations

from leptonic.controller.loop import Controller
from leptonic.core.models import (
    AttemptState,
    DeploymentSpec,
    JobPhase,
    JobSpec,
    Node,
    PlacementSpec,
    ReplicaState,
    Resources,
    Tier,
)
from tests.unit.controller.world import World


def node(name: str, cpu: float = 4, tier: str = "datacenter") -> Node:
    return Node(name=name, id=f"id-{name}", tier=tier, address="10.0.0.1",
                capacity={"cpu": cpu, "memory_mb": 16384, "gpu": 0}, labels={"tier": tier})


def create(w: World, name: str = "j", **kw: object) -> None:
    kw.setdefault("backoff_s", 1.0)
    w.store.create_job(name, JobSpec(command="echo hi", **kw), now=w.clock.now)  # type: ignore[arg-type]


def running(w: World, job: str = "j") -> list:
    return [a for a in w.store.list_attempts(job) if a.state is AttemptState.RUNNING]


async def test_indexed_job_runs_parallelism_at_a_time_and_succeeds(world: World) -> None:
    w = world
    create(w, completions=3, parallelism=2)
    await w.tick()
    now = running(w)
    assert sorted(a.index for a in now) == [0, 1]
    assert {la.index for la in w.backend.attempts.values()} == {0, 1}
    assert w.store.get_job("j").status.phase is JobPhase.RUNNING
    w.backend.outputs[now[0].id] = {"result.txt": b"zero"}
    for a in now:
        w.backend.finish(a.id, 0)
    await w.tick()
    assert [a.index for a in running(w)] == [2]
    w.backend.finish(running(w)[0].id, 0)
    await w.tick(2)
    job = w.store.get_job("j")
    assert job.status.phase is JobPhase.SUCCEEDED
    assert (job.status.succeeded, job.status.output_files, job.status.output_bytes) == (3, 1, 4)
    done = [a for a in w.store.list_attempts("j") if a.output]
    assert len(done) == 1
    stored = w.controller.ctx.artifacts.path(done[0].output) / "result.txt"
    assert stored.read_bytes() == b"zero"
    reasons = [e.reason for e in w.store.list_events("job/j")]
    assert "JobSucceeded" in reasons
    assert reasons.count("AttemptSucceeded") == 3


async def test_a_failing_index_is_retried_after_its_backoff(world: World) -> None:
    w = world
    create(w, completions=2, parallelism=2, backoff_s=10)
    await w.tick()
    first = {a.index: a for a in running(w)}
    w.backend.finish(first[1].id, 3)
    w.backend.logs[first[1].id] = ["boom"]
    await w.tick()
    assert [a.index for a in running(w)] == [0]          # index 1 backs off
    st = w.store.get_job("j").status
    assert st.retries == 1
    assert "boom" in (st.last_error or "")
    await w.tick(advance=9)
    assert [a.index for a in running(w)] == [0]
    await w.tick(advance=1.5)
    again = [a for a in running(w) if a.index == 1]
    assert len(again) == 1
    assert again[0].number == 2
    assert "JOB_COMPLETION_INDEX" not in w.backend.attempts[again[0].id].env  # runtime adds it
    assert w.backend.attempts[again[0].id].index == 1


async def test_backoff_limit_fails_the_job_and_stops_the_rest(world: World) -> None:
    w = world
    create(w, completions=2, parallelism=2, max_retries=1, backoff_s=0)
    await w.tick()
    for _ in range(2):
        bad = next(a for a in running(w) if a.index == 0)
        w.backend.finish(bad.id, 1)
        await w.tick()
    job = w.store.get_job("j")
    assert (job.status.phase, job.status.reason) == (JobPhase.FAILED, "BackoffLimitExceeded")
    assert running(w) == []
    assert w.backend.stopped_attempts          # index 1 was stopped


async def test_output_over_the_limit_fails_output_too_large(world: World) -> None:
    w = world
    create(w, max_output_mb=0)
    await w.tick()
    a = running(w)[0]
    w.backend.outputs[a.id] = {"big": b"x"}
    w.backend.finish(a.id, 0)
    await w.tick(2)
    job = w.store.get_job("j")
    assert (job.status.phase, job.status.reason) == (JobPhase.FAILED, "OutputTooLarge")


async def test_deadline_and_cancel(world: World) -> None:
    w = world
    create(w, "late", deadline_s=5)
    create(w, "gone")
    await w.tick()
    w.store.cancel_job("gone")
    await w.tick(advance=6)
    late, gone = w.store.get_job("late"), w.store.get_job("gone")
    assert (late.status.phase, late.status.reason) == (JobPhase.FAILED, "DeadlineExceeded")
    assert (gone.status.phase, gone.status.reason) == (JobPhase.FAILED, "Cancelled")
    assert running(w, "late") == []
    assert running(w, "gone") == []
    stopped = [a for a in w.store.list_attempts() if a.state is AttemptState.STOPPED]
    assert {a.reason for a in stopped} == {"DeadlineExceeded", "Cancelled"}


async def test_ttl_after_finished_removes_the_job(world: World) -> None:
    w = world
    create(w, ttl_after_finished_s=10)
    await w.tick()
    w.backend.finish(running(w)[0].id, 0)
    await w.tick(2)
    assert w.store.get_job("j").status.phase is JobPhase.SUCCEEDED
    await w.tick(advance=11)
    assert [j.name for j in w.store.list_jobs()] == []
    assert w.store.list_attempts("j") == []


async def test_unschedulable_job_waits_with_the_reason(world: World) -> None:
    w = world
    w.backend.cluster = [node("small", cpu=1)]
    create(w, scale="large")
    await w.tick(2)
    job = w.store.get_job("j")
    assert job.status.phase is JobPhase.QUEUED
    assert job.status.reason == "Unschedulable"
    assert "CPU" in job.status.message
    w.backend.cluster = [node("small", cpu=1), node("big", cpu=4)]
    await w.tick(2)
    assert [a.node for a in running(w)] == ["big"]


async def test_edge_tasks_land_on_edge_nodes(world: World) -> None:
    w = world
    w.backend.cluster = [node("head"), node("e1", tier="edge")]
    create(w, "edge", type="edge", scale="small")
    create(w, "dc", type="computation", scale="small")
    await w.tick(2)
    assert [a.node for a in running(w, "edge")] == ["e1"]
    assert [a.node for a in running(w, "dc")] == ["head"]


async def test_higher_priority_preempts_attempts_never_replicas(world: World) -> None:
    w = world
    w.backend.cluster = [node("a", cpu=2), node("b", cpu=2)]
    w.store.create_deployment("echo", DeploymentSpec(
        photon="builtin:echo", replicas=1, resources=Resources(cpu=2),
        placement=PlacementSpec(tier=Tier.ANY)))
    await w.tick(2)
    assert len(w.replicas(ReplicaState.READY)) == 1
    create(w, "low", resources={"cpu": 2}, priority=0)
    await w.tick(2)
    (low,) = running(w, "low")
    create(w, "high", resources={"cpu": 2}, priority=10)
    await w.tick(2)
    assert [a.node for a in running(w, "high")] == [low.node]
    stopped = next(a for a in w.store.list_attempts("low") if a.id == low.id)
    assert (stopped.state, stopped.reason) == (AttemptState.STOPPED, "Preempted")
    assert len(w.replicas(ReplicaState.READY)) == 1          # the replica was not touched
    # the preempted index is not failed; it waits for capacity
    lo = w.store.get_job("low")
    assert lo.status.phase is JobPhase.QUEUED
    assert lo.status.retries == 0
    # nothing of lower priority is left to preempt: the next high job waits
    create(w, "higher", resources={"cpu": 2}, priority=5)
    await w.tick(2)
    assert running(w, "higher") == []


async def test_replicas_and_attempts_see_each_others_allocations(world: World) -> None:
    w = world
    w.backend.cluster = [node("only", cpu=2)]
    create(w, resources={"cpu": 2})
    await w.tick()
    assert len(running(w)) == 1
    w.store.create_deployment("echo", DeploymentSpec(
        photon="builtin:echo", replicas=1, resources=Resources(cpu=1)))
    await w.tick(2)
    assert w.replicas() == []                    # the attempt holds the node
    assert w.store.get_deployment("echo").status.phase == "Unschedulable"
    assert w.store.list_nodes()[0].allocated["cpu"] == 2.0
    w.backend.finish(running(w)[0].id, 0)
    await w.tick(3)
    assert len(w.replicas(ReplicaState.READY)) == 1


async def test_restart_adopts_running_attempts_and_fails_lost_ones(world: World) -> None:
    w = world
    create(w, completions=2, parallelism=2)
    await w.tick()
    a0, a1 = sorted(running(w), key=lambda a: a.index)
    del w.backend.attempts[a1.id]               # gone while the control plane was down
    fresh = Controller(w.controller.ctx, w.routes.append, tick_s=0.01)
    await fresh.recover()
    after = {a.id: a for a in w.store.list_attempts("j")}
    assert after[a0.id].state is AttemptState.RUNNING
    assert (after[a1.id].state, after[a1.id].reason) == (AttemptState.FAILED, "Lost")
    w.controller = fresh
    await w.tick(advance=2)
    assert sorted(a.index for a in running(w)) == [0, 1]
    assert len([a for a in running(w) if a.index == 0]) == 1     # never two at once
