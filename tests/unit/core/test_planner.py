"""The deployment planner as a table: spec + observed replicas + now -> actions."""

from __future__ import annotations

import pytest

from leptonic.core.models import (
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    Replica,
    ReplicaState,
)
from leptonic.core.planner import (
    RemoveDeployment,
    RestartReplica,
    StartReplica,
    StopReplica,
    plan,
)
from leptonic.core.transitions import RestartPolicy

S, R, D, F = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DRAINING,
              ReplicaState.FAILED)
NOW = 1000.0


def dep(replicas: int, gen: int = 1, deleting: bool = False) -> Deployment:
    return Deployment(name="echo", spec=DeploymentSpec(photon="echo", photon_version=1,
                                                       replicas=replicas),
                      status=DeploymentStatus(template_generation=gen), deleting=deleting)


def rep(rid: str, state: ReplicaState, gen: int = 1, created: float = 0.0,
        next_restart: float | None = None, started: float | None = None) -> Replica:
    return Replica(id=rid, deployment="echo", state=state, generation=gen, created_at=created,
                   next_restart_at=next_restart, started_at=started)


def kinds(actions: list[object]) -> list[tuple[str, str]]:
    out = []
    for a in actions:
        match a:
            case StartReplica():
                out.append(("start", str(a.generation)))
            case RestartReplica():
                out.append(("restart", a.replica_id))
            case StopReplica():
                out.append(("stop", a.replica_id))
            case RemoveDeployment():
                out.append(("remove", a.deployment))
    return sorted(out)


CASES = [
    ("nothing yet, want 2", dep(2), [], [("start", "1"), ("start", "1")]),
    ("converged", dep(2), [rep("a", R), rep("b", R)], []),
    ("starting counts as present", dep(2), [rep("a", R), rep("b", S)], []),
    ("one missing", dep(3), [rep("a", R), rep("b", R)], [("start", "1")]),
    ("scale down stops starting before ready", dep(1), [rep("a", R), rep("b", S)],
     [("stop", "b")]),
    ("scale down stops failed first", dep(1), [rep("a", R), rep("b", F, next_restart=NOW + 9)],
     [("stop", "b")]),
    ("scale down among ready stops the newest", dep(1),
     [rep("a", R, created=1), rep("b", R, created=5)], [("stop", "b")]),
    ("scale to zero", dep(0), [rep("a", R), rep("b", R)], [("stop", "a"), ("stop", "b")]),
    ("failed in backoff waits", dep(1), [rep("a", F, next_restart=NOW + 1)], []),
    ("failed after backoff restarts in place", dep(1), [rep("a", F, next_restart=NOW - 1)],
     [("restart", "a")]),
    ("draining is not counted", dep(1), [rep("a", D)], [("start", "1")]),
    ("deleting stops everything not already draining", dep(2, deleting=True),
     [rep("a", R), rep("b", D)], [("stop", "a")]),
    ("deleted and empty is removed", dep(2, deleting=True), [], [("remove", "echo")]),
    ("new template: start new, keep old ready", dep(2, gen=2),
     [rep("a", R), rep("b", R)], [("start", "2"), ("start", "2")]),
    ("new template: old ready stopped only as new get ready", dep(2, gen=2),
     [rep("a", R, created=1), rep("b", R, created=2), rep("c", R, gen=2), rep("d", S, gen=2)],
     [("stop", "b")]),
    ("new template: all new ready, old go", dep(2, gen=2),
     [rep("a", R, created=1), rep("b", R, created=2), rep("c", R, gen=2), rep("d", R, gen=2)],
     [("stop", "a"), ("stop", "b")]),
    ("new template: old not ready goes at once", dep(1, gen=2),
     [rep("a", S), rep("c", S, gen=2)], [("stop", "a")]),
    ("start timeout", dep(1), [rep("a", S, started=NOW - 301)], [("stop", "a")]),
]


@pytest.mark.parametrize(("deployment", "replicas", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(deployment: Deployment, replicas: list[Replica],
              expected: list[tuple[str, str]]) -> None:
    assert kinds(plan(deployment, replicas, NOW, RestartPolicy())) == sorted(expected)


def test_plan_never_drops_ready_below_desired_during_replacement() -> None:
    """Walk a 3-replica template change step by step; ready count never falls below 3."""
    d = dep(3, gen=2)
    replicas = [rep(f"old{i}", R, created=i) for i in range(3)]
    for step in range(10):
        actions = plan(d, replicas, NOW)
        stopped = {a.replica_id for a in actions if isinstance(a, StopReplica)}
        replicas = [r for r in replicas if r.id not in stopped]
        replicas += [rep(f"new{step}{i}", S, gen=2)
                     for i, a in enumerate(actions) if isinstance(a, StartReplica)]
        assert sum(r.state is R for r in replicas) >= 3 or step == 0
        # one starting replica becomes ready per step
        for i, r in enumerate(replicas):
            if r.state is S:
                replicas[i] = r.model_copy(update={"state": R})
                break
    assert sorted(r.generation for r in replicas) == [2, 2, 2]
