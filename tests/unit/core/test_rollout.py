"""The rollout planner: tables of (state, sets, traffic, now) -> (desired, weights, phase),
and walks of whole rollouts where replicas become ready one tick after they are wanted."""

from __future__ import annotations

import pytest

from leptonic.core.analysis import N_BUCKETS, TrafficCounters, bucket_of
from leptonic.core.models import (
    DeploymentSpec,
    RolloutControl,
    RolloutPhase,
    RolloutStatus,
    StrategySpec,
    StrategyType,
    Template,
)
from leptonic.core.rollout import (
    RolloutInput,
    RolloutPlan,
    SetState,
    SmokeResult,
    amount,
    begin,
    known_generation,
    plan_rollout,
    replicas_for_weight,
    serving,
)

NOW = 1000.0
V1 = Template(generation=1, hash="h1", spec=DeploymentSpec(photon="svc", photon_version=1))
V2 = Template(generation=2, hash="h2", spec=DeploymentSpec(photon="svc", photon_version=2))
ROLLING = StrategySpec()
CANARY = StrategySpec(type=StrategyType.CANARY, step_interval_s=10)
BLUE_GREEN = StrategySpec(type=StrategyType.BLUE_GREEN, keep_old_s=60)


def status(strategy: StrategySpec, **kw: object) -> RolloutStatus:
    base: dict[str, object] = dict(id=1, strategy=strategy, stable=V1, target=V2,
                                   started_at=NOW - 1, step_started_at=NOW - 1)
    base.update(kw)
    return RolloutStatus.model_validate(base)


def good(n: int) -> TrafficCounters:
    buckets = [0] * N_BUCKETS
    buckets[bucket_of(5)] = n
    return TrafficCounters(n, 0, tuple(buckets))


def run(st: RolloutStatus, old: SetState, new: SetState, *, n: int = 4, now: float = NOW,
        control: RolloutControl | None = None, canary: TrafficCounters | None = None,
        smoke: SmokeResult | None = None) -> RolloutPlan:
    return plan_rollout(RolloutInput(
        st, control or RolloutControl(id=st.id), n, {1: old, 2: new},
        canary=canary or TrafficCounters(), stable=good(1000), smoke=smoke, now=now))


def ready(n: int) -> SetState:
    return SetState(active=n, ready=n)


# -- helpers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "n", "up", "expected"), [
    ("25%", 4, True, 1), ("25%", 4, False, 1), ("25%", 2, True, 1), ("25%", 2, False, 0),
    ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 5, True, 0), ("3", 10, False, 3),
])
def test_amount_rounds_like_kubernetes(text: str, n: int, up: bool, expected: int) -> None:
    assert amount(text, n, round_up=up) == expected


def test_replicas_for_weight() -> None:
    assert [replicas_for_weight(w, 4) for w in (10, 25, 50, 100)] == [1, 1, 2, 4]
    assert replicas_for_weight(10, 0) == 0


def test_begin_records_the_first_template_and_skips_reverts() -> None:
    first, events = begin(None, V1, ROLLING, NOW)
    assert (first.id, first.phase, serving(first)) == (0, RolloutPhase.SUCCEEDED, V1)
    assert events == []
    second, events = begin(first, V2, CANARY, NOW)
    assert (second.id, second.phase, second.stable, second.target) == (
        1, RolloutPhase.PROGRESSING, V1, V2)
    assert events[0].reason == "RolloutStarted"
    assert "canary" in events[0].message
    # mid-rollout, going back to what serves is no rollout at all
    back, events = begin(second, V1.model_copy(update={"generation": 3}), ROLLING, NOW)
    assert back.phase is RolloutPhase.SUCCEEDED
    assert back.target == V1
    assert known_generation(second, "h1") == 1
    assert known_generation(second, "hx") is None


# -- rolling ---------------------------------------------------------------------------------

ROLLING_CASES = [
    # name, n, old, new, expected desired {gen: n}
    ("start: one surge replica, and one old may go (25% unavailable)", 4, ready(4),
     SetState(), {"2": 1, "1": 3}),
    ("one old gone: room for a second new one", 4, ready(3), SetState(1, 0),
     {"2": 2, "1": 3}),
    ("new one ready: one old may go (25% unavailable)", 4, ready(4), ready(1),
     {"2": 1, "1": 2}),
    ("room again: more new", 4, ready(2), ready(1), {"2": 3, "1": 2}),
    ("not-ready old replicas go at once, ready ones stay", 4, SetState(4, 2), ready(1),
     {"2": 1, "1": 2}),
    ("two replicas: surge 1, unavailable 0", 2, ready(2), SetState(), {"2": 1, "1": 2}),
    ("two replicas, new one ready: one old goes", 2, ready(2), ready(1), {"2": 1, "1": 1}),
]


@pytest.mark.parametrize(("n", "old", "new", "desired"), [c[1:] for c in ROLLING_CASES],
                         ids=[c[0] for c in ROLLING_CASES])
def test_rolling(n: int, old: SetState, new: SetState, desired: dict[str, int]) -> None:
    p = run(status(ROLLING), old, new, n=n)
    assert p.status.phase is RolloutPhase.PROGRESSING
    assert p.status.desired == desired
    assert p.status.weights == {}, "rolling: every ready replica takes traffic alike"


def test_rolling_done_when_all_new_ready_and_old_gone() -> None:
    p = run(status(ROLLING), SetState(), ready(4))
    assert p.status.phase is RolloutPhase.SUCCEEDED
    assert p.status.desired == {"2": 4}
    assert [e.reason for e in p.events] == ["RolloutSucceeded"]


def test_rolling_promote_starts_everything_and_keeps_availability() -> None:
    p = run(status(ROLLING), ready(4), SetState(), control=RolloutControl(id=1, promote=True))
    assert p.status.desired == {"2": 4, "1": 4}


def walk(st: RolloutStatus, n: int, *, ticks: int = 40, canary_traffic: bool = False,
         step_s: float = 1.0) -> tuple[RolloutStatus, list[int], list[str]]:
    """Run the planner; wanted replicas start, and are ready one tick later."""
    sets = {1: ready(n), 2: SetState()}
    now = NOW
    available: list[int] = []
    reasons: list[str] = []
    for _ in range(ticks):
        p = plan_rollout(RolloutInput(st, RolloutControl(id=st.id), n, sets,
                                      canary=good(500) if canary_traffic else TrafficCounters(),
                                      stable=good(500), now=now))
        st = p.status
        reasons += [e.reason for e in p.events]
        nxt = {}
        for gen, cur in sets.items():
            want = p.targets.get(gen, 0)
            ready_now = min(cur.active, want)          # starting ones became ready
            nxt[gen] = SetState(active=want, ready=min(ready_now, want))
        sets = nxt
        available.append(sum(s.ready for s in sets.values()))
        now += step_s
        if st.phase is RolloutPhase.SUCCEEDED and set(p.targets) == {2}:
            break
    return st, available, reasons


@pytest.mark.parametrize("n", [1, 2, 4, 10])
def test_rolling_walk_keeps_availability_and_finishes(n: int) -> None:
    st, available, reasons = walk(status(ROLLING), n)
    assert st.phase is RolloutPhase.SUCCEEDED
    floor = n - amount("25%", n, round_up=False)
    assert min(available) >= floor
    assert max(available) <= n + amount("25%", n, round_up=True) + 1
    assert reasons[-1] == "RolloutSucceeded"


def test_crash_looping_target_rolls_back_keeping_old_serving() -> None:
    p = run(status(ROLLING), ready(3), SetState(1, 0, crashing="ImportError: torch"))
    assert p.status.phase is RolloutPhase.ROLLED_BACK
    assert "ImportError: torch" in p.status.reason
    assert p.status.desired == {"1": 4}
    assert p.events[-1].kind == "Warning"


def test_no_progress_past_the_deadline_rolls_back() -> None:
    st = status(ROLLING.model_copy(update={"progress_deadline_s": 30}),
                waiting_since=NOW - 31, target_ready=0)
    p = run(st, ready(4), SetState(1, 0))
    assert p.status.phase is RolloutPhase.ROLLED_BACK
    assert "no progress for 30s" in p.status.reason


def test_rolled_back_rolling_keeps_new_ready_ones_until_old_are_back() -> None:
    st = status(ROLLING, phase=RolloutPhase.ROLLED_BACK, reason="x")
    p = run(st, SetState(4, 1), ready(2))
    assert p.status.desired == {"1": 4, "2": 2}
    p = run(st, ready(4), ready(2))
    assert p.status.desired == {"1": 4}


# -- canary ----------------------------------------------------------------------------------

def test_canary_first_step_waits_for_its_replica_then_shifts_10_percent() -> None:
    p = run(status(CANARY), ready(4), SetState())
    assert p.status.desired == {"1": 4, "2": 1}
    assert p.status.weights == {"1": 100}
    assert p.status.step == -1
    p = run(status(CANARY), ready(4), ready(1))
    assert p.status.step == 0
    assert p.status.weights == {"1": 90, "2": 10}
    assert p.status.step_started_at == NOW
    assert [e.reason for e in p.events] == ["RolloutStep"]


def test_canary_holds_a_step_for_its_interval() -> None:
    st = status(CANARY, step=0, step_started_at=NOW - 5, weights={"1": 90, "2": 10})
    p = run(st, ready(4), ready(1), canary=good(20))
    assert p.status.step == 0
    assert "held 10s" in p.status.message
    assert p.status == run(st, ready(4), ready(1), canary=good(20), now=NOW + 1).status.model_copy(
        update={"analysis": p.status.analysis}), "nothing changes while a step is held"
    p = run(st, ready(4), ready(1), canary=good(200), now=NOW + 5)
    assert p.status.step == 1
    assert p.status.weights == {"1": 75, "2": 25}
    assert "success-rate passed" in p.events[0].message


def test_canary_failing_analysis_rolls_back_with_the_figures() -> None:
    st = status(CANARY, step=0, step_started_at=NOW - 2, weights={"1": 90, "2": 10})
    bad = TrafficCounters(12, 3, good(9).buckets)
    p = run(st, ready(4), ready(1), canary=bad)
    assert p.status.phase is RolloutPhase.ROLLED_BACK
    assert p.status.weights == {"1": 100}
    assert p.status.desired == {"1": 4}
    assert p.status.reason.startswith("success-rate check failed at step 1/4 (10% of traffic)")
    assert "75%" in p.status.reason
    assert "stable 100%" in p.status.reason
    assert p.events[-1].reason == "RolloutRolledBack"
    assert p.status.analysis[0].passed is False


def test_canary_with_too_little_traffic_advances_on_health_and_says_so() -> None:
    st = status(CANARY, step=0, step_started_at=NOW - 10, weights={"1": 90, "2": 10})
    p = run(st, ready(4), ready(1), canary=good(3))
    assert p.status.step == 1
    assert "too few to judge" in p.events[0].message


def test_canary_last_step_moves_everything_and_succeeds() -> None:
    st = status(CANARY, step=2, step_started_at=NOW - 10, weights={"1": 50, "2": 50})
    p = run(st, ready(4), ready(2), canary=good(300))
    assert p.status.phase is RolloutPhase.PROGRESSING
    assert p.status.desired == {"1": 4, "2": 4}, "all canary replicas first"
    p = run(st, ready(4), ready(4), canary=good(300))
    assert p.status.phase is RolloutPhase.SUCCEEDED
    assert p.status.desired == {"2": 4}
    assert p.status.weights == {}


def test_canary_walk_goes_through_every_step() -> None:
    st, _, reasons = walk(status(CANARY), 4, canary_traffic=True, step_s=5)
    assert st.phase is RolloutPhase.SUCCEEDED
    assert reasons.count("RolloutStep") == 3
    assert reasons[-1] == "RolloutSucceeded"


# -- user requests ---------------------------------------------------------------------------

def test_pause_holds_everything_and_resume_restarts_the_step() -> None:
    st = status(CANARY, step=1, step_started_at=NOW - 100, weights={"1": 75, "2": 25},
                desired={"1": 4, "2": 1})
    p = run(st, ready(4), ready(1), control=RolloutControl(id=1, paused=True))
    assert p.status.phase is RolloutPhase.PAUSED
    assert (p.status.step, p.status.weights, p.status.desired) == (1, st.weights, st.desired)
    p2 = run(p.status, ready(4), ready(1), now=NOW + 50)
    assert p2.status.phase is RolloutPhase.PROGRESSING
    assert p2.status.step == 1
    assert p2.status.step_started_at == NOW + 50
    assert [e.reason for e in p2.events] == ["RolloutResumed"]


def test_promote_skips_the_remaining_steps_and_analysis() -> None:
    st = status(CANARY, step=0, weights={"1": 90, "2": 10})
    bad = TrafficCounters(10, 5, good(5).buckets)
    p = run(st, ready(4), ready(4), canary=bad, control=RolloutControl(id=1, promote=True))
    assert p.status.phase is RolloutPhase.SUCCEEDED
    assert "promoted" in p.events[-1].message


def test_abort_goes_back_to_stable() -> None:
    st = status(CANARY, step=1, weights={"1": 75, "2": 25})
    p = run(st, ready(4), ready(1), control=RolloutControl(id=1, abort=True))
    assert p.status.phase is RolloutPhase.ABORTED
    assert p.status.weights == {"1": 100}
    assert p.status.desired == {"1": 4}


def test_requests_for_an_older_rollout_are_ignored() -> None:
    st = status(CANARY, id=2)
    p = run(st, ready(4), ready(1), control=RolloutControl(id=1, abort=True))
    assert p.status.phase is RolloutPhase.PROGRESSING


# -- blue-green ------------------------------------------------------------------------------

def test_blue_green_brings_up_a_full_set_before_switching() -> None:
    p = run(status(BLUE_GREEN), ready(4), SetState(4, 3))
    assert p.status.desired == {"1": 4, "2": 4}
    assert p.status.weights == {"1": 100}
    p = run(status(BLUE_GREEN), ready(4), ready(4))
    assert p.status.phase is RolloutPhase.SUCCEEDED
    assert p.status.weights == {"2": 100}
    assert p.status.desired == {"2": 4, "1": 4}, "the old set stays for rollback"
    assert p.status.previous == V1
    assert p.status.keep_until == NOW + 60


def test_blue_green_old_set_goes_after_keep_time() -> None:
    st = status(BLUE_GREEN, phase=RolloutPhase.SUCCEEDED, previous=V1, keep_until=NOW + 1)
    assert run(st, ready(4), ready(4)).status.desired == {"2": 4, "1": 4}
    p = run(st, ready(4), ready(4), now=NOW + 1)
    assert p.status.desired == {"2": 4}
    assert p.status.previous is None
    assert [e.reason for e in p.events] == ["PreviousReleased"]


def test_blue_green_smoke_check_gates_the_switch() -> None:
    smoky = BLUE_GREEN.model_copy(update={"smoke_path": "/echo"})
    p = run(status(smoky), ready(4), ready(4))
    assert p.smoke_wanted
    assert p.status.phase is RolloutPhase.PROGRESSING
    p = run(status(smoky), ready(4), ready(4), smoke=SmokeResult(False, "HTTP 500 from x"))
    assert p.status.phase is RolloutPhase.ROLLED_BACK
    assert "HTTP 500 from x" in p.status.reason
    p = run(status(smoky), ready(4), ready(4), smoke=SmokeResult(True))
    assert p.status.phase is RolloutPhase.SUCCEEDED


def test_blue_green_rollback_to_the_kept_set_is_instant() -> None:
    done = status(BLUE_GREEN, phase=RolloutPhase.SUCCEEDED, previous=V1, keep_until=NOW + 60)
    back, _ = begin(done, V1, BLUE_GREEN, NOW)
    assert (back.stable, back.target) == (V2, V1)
    p = plan_rollout(RolloutInput(back, RolloutControl(id=back.id), 4,
                                  {1: ready(4), 2: ready(4)}, now=NOW))
    assert p.status.phase is RolloutPhase.SUCCEEDED
    assert p.status.weights == {"1": 100}
