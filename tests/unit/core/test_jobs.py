"""The job planner as tables: backoff, indexing, the state machine, priority, preemption."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leptonic.core.jobs import (
    Held,
    RemoveJob,
    StartAttempt,
    StopAttempt,
    attempt_placement,
    attempt_resources,
    backoff,
    index_states,
    plan_job,
    preemption,
    queue_order,
    request_of,
    shares,
)
from leptonic.core.models import (
    AttemptState,
    Job,
    JobAttempt,
    JobPhase,
    JobSpec,
    JobStatus,
    Node,
    Resources,
    Tier,
)
from leptonic.core.scheduler import Request


def spec(**kw: object) -> JobSpec:
    return JobSpec(command="true", **kw)  # type: ignore[arg-type]


def job(name: str = "j", created_at: float = 0.0, **kw: object) -> Job:
    status = kw.pop("status", None)
    flags = {k: kw.pop(k) for k in ("cancelled", "deleting") if k in kw}
    return Job(name=name, spec=spec(**kw), created_at=created_at,
               status=status or JobStatus(), **flags)  # type: ignore[arg-type]


def att(index: int, number: int = 1, state: AttemptState = AttemptState.RUNNING,
        finished_at: float | None = None, reason: str | None = None,
        created_at: float = 0.0) -> JobAttempt:
    return JobAttempt(id=f"j-{index}-{number}", job="j", index=index, number=number,
                      state=state, finished_at=finished_at, reason=reason,
                      created_at=created_at)


F, S, R, X = AttemptState.FAILED, AttemptState.SUCCEEDED, AttemptState.RUNNING, \
    AttemptState.STOPPED


@pytest.mark.parametrize(("failures", "base", "cap", "delay"), [
    (0, 10, 360, 0), (1, 10, 360, 10), (2, 10, 360, 20), (3, 10, 360, 40),
    (5, 10, 360, 160), (6, 10, 360, 320), (7, 10, 360, 360), (20, 10, 360, 360),
    (1, 0.1, 360, 0.1), (3, 0.1, 0.3, 0.3), (2, 0, 360, 0),
])
def test_backoff_doubles_from_base_to_cap(failures: int, base: float, cap: float,
                                          delay: float) -> None:
    assert backoff(failures, base, cap) == pytest.approx(delay)


@pytest.mark.parametrize(("count", "completions", "expected"), [
    (10, 1, [(0, 10)]), (10, 3, [(0, 4), (4, 7), (7, 10)]), (2, 4, [(0, 1), (1, 2), (2, 2),
                                                                   (2, 2)]),
    (0, 2, [(0, 0), (0, 0)]), (9, 3, [(0, 3), (3, 6), (6, 9)]),
])
def test_shares_are_contiguous_and_even(count: int, completions: int,
                                        expected: list[tuple[int, int]]) -> None:
    assert shares(count, completions) == expected


@pytest.mark.parametrize(("kw", "cpu", "mem"), [
    ({}, 0.0, 0), ({"scale": "small"}, 0.5, 512), ({"scale": "medium"}, 1.0, 2048),
    ({"scale": "large"}, 2.0, 8192), ({"scale": "large", "resources": {"cpu": 4}}, 4.0, 8192),
    ({"resources": {"cpu": 0.25, "memory_mb": 64}}, 0.25, 64),
])
def test_scale_shapes_and_explicit_resources(kw: dict, cpu: float, mem: int) -> None:
    r = attempt_resources(spec(**kw))
    assert (r.cpu, r.memory_mb) == (cpu, mem)


def _node(name: str, tier: str = "datacenter", **labels: str) -> Node:
    return Node(name=name, tier=tier, capacity={"cpu": 4, "memory_mb": 8192, "gpu": 0},
                labels=labels)


@pytest.mark.parametrize(("kw", "nodes", "tier", "selector"), [
    ({}, [], Tier.DATACENTER, {}),
    ({"type": "computation"}, [], Tier.DATACENTER, {}),
    ({"type": "edge"}, [], Tier.EDGE, {}),
    ({"type": "storage"}, [_node("a")], Tier.ANY, {}),
    ({"type": "storage"}, [_node("a"), _node("s", storage="true")], Tier.ANY,
     {"storage": "true"}),
    ({"type": "edge", "placement": {"tier": "datacenter"}}, [], Tier.DATACENTER, {}),
])
def test_type_decides_the_tier(kw: dict, nodes: list[Node], tier: Tier,
                               selector: dict) -> None:
    p = attempt_placement(spec(**kw), nodes)
    assert p.tier is tier
    assert p.node_selector == selector


def test_a_job_needs_a_command_or_a_handler() -> None:
    with pytest.raises(ValidationError, match="needs a command"):
        JobSpec()
    with pytest.raises(ValidationError, match="handler"):
        JobSpec(photon="p")
    with pytest.raises(ValidationError, match="not both"):
        JobSpec(command="x", photon="p", handler="h")
    with pytest.raises(ValidationError):
        JobSpec(command="x", type="gpu")  # type: ignore[arg-type]


def test_index_states_count_failures_not_stops() -> None:
    s = spec(completions=3, backoff_s=10)
    states = index_states(s, [att(0, 1, F, finished_at=5), att(0, 2, X, finished_at=6),
                              att(0, 3, R), att(1, 1, S), att(2, 1, F, finished_at=7),
                              att(2, 2, F, finished_at=9)])
    assert [(x.succeeded, x.running is not None, x.failures, x.attempts) for x in states] == [
        (False, True, 1, 3), (True, False, 0, 1), (False, False, 2, 2)]
    assert states[2].retry_at == 9 + 20


# -- the state machine: (job, attempts, now) -> (phase, reason, actions) --------------------

STATE_MACHINE = [
    ("new job starts lowest indexes up to parallelism",
     {"completions": 5, "parallelism": 2}, [], 0,
     JobPhase.QUEUED, "", [StartAttempt("j", 0, 1), StartAttempt("j", 1, 1)]),
    ("running, room for one more",
     {"completions": 3, "parallelism": 2}, [att(0, 1, S, 1), att(1)], 2,
     JobPhase.RUNNING, "", [StartAttempt("j", 2, 1)]),
    ("parallelism full: nothing to start",
     {"completions": 3, "parallelism": 2}, [att(0), att(1)], 2, JobPhase.RUNNING, "", []),
    ("failed index waits for its backoff",
     {"backoff_s": 10}, [att(0, 1, F, finished_at=100)], 105,
     JobPhase.QUEUED, "BackoffWait", []),
    ("failed index retried once its backoff passed",
     {"backoff_s": 10}, [att(0, 1, F, finished_at=100)], 110,
     JobPhase.QUEUED, "", [StartAttempt("j", 0, 2)]),
    ("second failure waits twice as long",
     {"backoff_s": 10}, [att(0, 1, F, finished_at=0), att(0, 2, F, finished_at=100)], 115,
     JobPhase.QUEUED, "BackoffWait", []),
    ("a stopped (preempted) attempt is retried at once, no failure counted",
     {"max_retries": 0}, [att(0, 1, X, finished_at=100)], 100,
     JobPhase.QUEUED, "", [StartAttempt("j", 0, 2)]),
    ("past max retries: BackoffLimitExceeded, the rest stopped",
     {"completions": 2, "parallelism": 2, "max_retries": 1, "backoff_s": 0},
     [att(0, 1, F, finished_at=1), att(0, 2, F, finished_at=2), att(1)], 3,
     JobPhase.FAILED, "BackoffLimitExceeded", [StopAttempt("j-1-1", "BackoffLimitExceeded",
                                                           "")]),
    ("all indexes succeeded", {"completions": 2}, [att(0, 1, S), att(1, 2, S)], 5,
     JobPhase.SUCCEEDED, "", []),
    ("deadline passed: DeadlineExceeded, running stopped", {"deadline_s": 10}, [att(0)], 10,
     JobPhase.FAILED, "DeadlineExceeded", [StopAttempt("j-0-1", "DeadlineExceeded", "")]),
    ("before the deadline it runs on", {"deadline_s": 10}, [att(0)], 9.9,
     JobPhase.RUNNING, "", []),
    ("output too large fails the job", {}, [att(0, 1, F, 3, reason="OutputTooLarge")], 4,
     JobPhase.FAILED, "OutputTooLarge", []),
]


@pytest.mark.parametrize(("why", "kw", "attempts", "now", "phase", "reason", "actions"),
                         STATE_MACHINE, ids=[row[0] for row in STATE_MACHINE])
def test_state_machine(why: str, kw: dict, attempts: list[JobAttempt], now: float,
                       phase: JobPhase, reason: str, actions: list) -> None:
    plan = plan_job(job(**kw), attempts, now)
    assert plan.status.phase is phase, plan.status.message
    assert plan.status.reason == reason
    got = [a if not isinstance(a, StopAttempt) else StopAttempt(a.attempt_id, a.reason, "")
           for a in plan.actions]
    assert got == actions


def test_counts_and_messages() -> None:
    plan = plan_job(job(completions=4, parallelism=2),
                    [att(0, 1, S), att(1, 1, F, finished_at=0), att(1, 2, R), att(2)], 1)
    st = plan.status
    assert (st.active, st.succeeded, st.attempts, st.retries) == (2, 1, 4, 1)
    assert st.message == "2 running, 1/4 succeeded"


def test_cancelled_job_fails_cancelled_and_stops_its_attempts() -> None:
    plan = plan_job(job(cancelled=True), [att(0)], 1)
    assert (plan.status.phase, plan.status.reason) == (JobPhase.FAILED, "Cancelled")
    assert [a.attempt_id for a in plan.actions if isinstance(a, StopAttempt)] == ["j-0-1"]


def test_unschedulable_reason_is_shown_while_queued() -> None:
    plan = plan_job(job(), [], 0, waiting="0/1 nodes fit: not enough CPU")
    assert plan.status.reason == "Unschedulable"
    assert "not enough CPU" in plan.status.message
    assert plan.starts == [StartAttempt("j", 0, 1)]     # tried again every tick


@pytest.mark.parametrize(("ttl", "now", "removed"), [(None, 1e9, False), (60, 159, False),
                                                     (60, 160, True), (0, 100, True)])
def test_ttl_after_finished(ttl: float | None, now: float, removed: bool) -> None:
    done = JobStatus(phase=JobPhase.SUCCEEDED, finished_at=100)
    plan = plan_job(job(status=done, ttl_after_finished_s=ttl), [att(0, 1, S)], now)
    assert plan.status.phase is JobPhase.SUCCEEDED
    assert any(isinstance(a, RemoveJob) for a in plan.actions) is removed


def test_finished_job_stops_stragglers_and_stays_finished() -> None:
    failed = JobStatus(phase=JobPhase.FAILED, reason="Cancelled", finished_at=1)
    plan = plan_job(job(status=failed), [att(0)], 2)
    assert plan.status.phase is JobPhase.FAILED
    assert plan.status.reason == "Cancelled"
    assert [type(a) for a in plan.actions] == [StopAttempt]


def test_deleting_stops_then_removes() -> None:
    assert [type(a) for a in plan_job(job(deleting=True), [att(0)], 0).actions] == \
        [StopAttempt]
    assert [type(a) for a in plan_job(job(deleting=True), [att(0, 1, S)], 0).actions] == \
        [RemoveJob]


def test_queue_order_priority_then_age_then_name() -> None:
    jobs = [job("b", 1, priority=0), job("a", 1, priority=0), job("c", 0, priority=0),
            job("hi", 9, priority=5), job("lo", 0, priority=-1)]
    assert [j.name for j in queue_order(jobs)] == ["hi", "c", "a", "b", "lo"]


# -- preemption ---------------------------------------------------------------------------

def _nodes(n: int = 2) -> list[Node]:
    return [Node(name=f"n{i}", capacity={"cpu": 2, "memory_mb": 4096, "gpu": 0})
            for i in range(n)]


def _held(key: str, node: str, cpu: float, priority: int | None, started: float = 0.0
          ) -> Held:
    return Held(key, node, Request(key.split("-")[0], cpu), priority, started)


@pytest.mark.parametrize(("held", "priority", "node", "victims"), [
    # replicas are never preempted
    ([_held("r1", "n0", 2, None), _held("r2", "n1", 2, None)], 5, None, []),
    # equal priority is not preempted
    ([_held("a-0", "n0", 2, 5), _held("a-1", "n1", 2, 5)], 5, None, []),
    # the lowest priority goes first
    ([_held("a-0", "n0", 2, 1), _held("b-0", "n1", 2, 0)], 5, "n1", ["b-0"]),
    # same priority: the newest goes first (least work lost)
    ([_held("a-0", "n0", 2, 0, started=1), _held("a-1", "n1", 2, 0, started=9)], 5, "n1",
     ["a-1"]),
    # two small attempts on one node make room; the replica beside them is not touched
    ([_held("r1", "n0", 2, None), _held("a-0", "n1", 1, 0), _held("a-1", "n1", 1, 0)], 5,
     "n1", ["a-0", "a-1"]),
])
def test_preemption(held: list[Held], priority: int, node: str | None,
                    victims: list[str]) -> None:
    got = preemption(_nodes(), Request("hi", 2.0), priority, held)
    assert got.node == node
    assert sorted(got.victims) == sorted(victims)


def test_request_of_uses_scale_and_tier() -> None:
    r = request_of(job(scale="small", type="edge"))
    assert (r.cpu, r.memory_mb, r.tier) == (0.5, 512.0, Tier.EDGE)
    assert Resources() == attempt_resources(spec())
