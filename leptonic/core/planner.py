"""The deployment planner: given a deployment and its observed replicas, what to do now.

``plan()`` returns data (STYLE 3); the controller persists it and the runtime applies it.
It never starts a replica it cannot account for, and never stops a ready replica of the
current template while fewer than the desired number are ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from leptonic.core.models import Deployment, Replica, ReplicaState
from leptonic.core.transitions import ACTIVE_STATES, RestartPolicy


@dataclass(frozen=True)
class StartReplica:
    """Start one new replica of the deployment's current template."""

    deployment: str
    generation: int


@dataclass(frozen=True)
class RestartReplica:
    """Start a failed replica again, in the same slot, once its backoff has passed."""

    replica_id: str


@dataclass(frozen=True)
class StopReplica:
    replica_id: str
    reason: str


@dataclass(frozen=True)
class RemoveDeployment:
    """All replicas are gone and the deployment was deleted: drop its row."""

    deployment: str


Action = StartReplica | RestartReplica | StopReplica | RemoveDeployment

# Order in which surplus replicas are given up: the ones doing least good first.
_STOP_ORDER = {ReplicaState.FAILED: 0, ReplicaState.STARTING: 1, ReplicaState.READY: 2}


def _surplus_first(replicas: list[Replica], load: Mapping[str, int] | None = None
                   ) -> list[Replica]:
    # idle before busy (a drained busy replica would hold its requests to the end), then
    # newest first: older replicas have warmer caches and proven health
    load = load or {}
    return sorted(replicas, key=lambda r: (_STOP_ORDER.get(r.state, 0), load.get(r.id, 0),
                                           -r.created_at, r.id))


def _scale(name: str, generation: int, want: int, current: list[Replica], now: float,
           policy: RestartPolicy, load: Mapping[str, int] | None,
           evict: frozenset[str] = frozenset()) -> list[Action]:
    """Actions that bring one template's replicas to ``want``. Replicas in ``evict`` (on a
    draining node) are replaced the way a rolling update replaces old ones: a new replica
    first, the evicted one stopped once enough others are ready."""
    actions: list[Action] = []
    leaving = [r for r in current if r.id in evict]
    current = [r for r in current if r.id not in evict]
    if leaving:
        ready = sum(1 for r in current if r.state is ReplicaState.READY)
        spare = ready + sum(1 for r in leaving if r.state is ReplicaState.READY) - want
        for r in leaving:
            if r.state is not ReplicaState.READY:
                actions.append(StopReplica(r.id, "its node is draining"))
        for r in _surplus_first([r for r in leaving if r.state is ReplicaState.READY]
                                )[: max(0, spare)]:
            actions.append(StopReplica(r.id, "its node is draining"))
    if len(current) < want:
        actions += [StartReplica(name, generation) for _ in range(want - len(current))]
    elif len(current) > want:
        for r in _surplus_first(current, load)[: len(current) - want]:
            actions.append(StopReplica(r.id, f"scaled down to {want}"))
            current.remove(r)
    for r in current:
        # failed replicas restart in their slot once their backoff has elapsed
        if r.state is ReplicaState.FAILED and (r.next_restart_at or 0.0) <= now:
            actions.append(RestartReplica(r.id))
        # starting replicas that never became ready in time count as failed starts
        if (r.state is ReplicaState.STARTING and r.started_at is not None
                and now - r.started_at > policy.start_timeout_s):
            actions.append(StopReplica(r.id, f"not ready after {policy.start_timeout_s:.0f}s"))
    return actions


def plan(deployment: Deployment, replicas: list[Replica], now: float,
         policy: RestartPolicy | None = None, *, targets: Mapping[int, int] | None = None,
         load: Mapping[str, int] | None = None,
         evict: frozenset[str] = frozenset()) -> list[Action]:
    """Actions that move ``replicas`` toward ``deployment.spec``, given the time ``now``.

    ``replicas`` are this deployment's replica rows; a replica's ``generation`` says which
    template it runs. ``targets`` maps template generations to the replicas wanted of each
    (the rollout planner's decision); replicas of any other generation are stopped. Without
    it the current template (``status.template_generation``) gets ``spec.replicas`` and
    older templates are replaced without dropping below that many ready replicas.
    ``load`` (requests in flight per replica id) makes scale-downs pick idle replicas.
    ``evict`` names replicas to move off their node (it is draining).
    """
    policy = policy or RestartPolicy()
    name = deployment.name
    active = [r for r in replicas if r.state in ACTIVE_STATES]

    if deployment.deleting:
        if not replicas:
            return [RemoveDeployment(name)]
        return [StopReplica(r.id, "deployment deleted")
                for r in replicas if r.state is not ReplicaState.DRAINING]

    actions: list[Action] = []
    if targets is not None:
        for gen, want in sorted(targets.items()):
            actions += _scale(name, gen, want, [r for r in active if r.generation == gen],
                              now, policy, load, evict)
        actions += [StopReplica(r.id, "its template is no longer wanted")
                    for r in active if r.generation not in targets]
        return actions

    generation = deployment.status.template_generation
    desired = deployment.spec.replicas
    current = [r for r in active if r.generation == generation]
    old = [r for r in active if r.generation != generation]
    actions = _scale(name, generation, desired, current, now, policy, load, evict)
    stopped = {a.replica_id for a in actions if isinstance(a, StopReplica)}
    current = [r for r in current if r.id not in stopped]

    # Replace the old template without dropping below the desired ready count: old
    # replicas that are not serving go at once; ready ones go as new ones become ready.
    ready_current = sum(1 for r in current if r.state is ReplicaState.READY)
    old_ready = [r for r in old if r.state is ReplicaState.READY]
    for r in old:
        if r.state is not ReplicaState.READY:
            actions.append(StopReplica(r.id, "replaced by a new version"))
    spare = ready_current + len(old_ready) - desired
    for r in _surplus_first(old_ready)[: max(0, spare)]:
        actions.append(StopReplica(r.id, "replaced by a new version"))
    return actions
