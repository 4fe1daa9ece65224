"""The deployment planner: given a deployment and its observed replicas, what to do now.

``plan()`` returns data (STYLE 3); the controller persists it and the runtime applies it.
It never starts a replica it cannot account for, and never stops a ready replica of the
current template while fewer than the desired number are ready.
"""

from __future__ import annotations

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


def _surplus_first(replicas: list[Replica]) -> list[Replica]:
    # newest first within a state: older replicas have warmer caches and proven health
    return sorted(replicas, key=lambda r: (_STOP_ORDER.get(r.state, 0), -r.created_at, r.id))


def plan(deployment: Deployment, replicas: list[Replica], now: float,
         policy: RestartPolicy | None = None) -> list[Action]:
    """Actions that move ``replicas`` toward ``deployment.spec``, given the time ``now``.

    ``replicas`` are this deployment's replica rows; a replica's ``generation`` says which
    template (``status.template_generation``) it runs.
    """
    policy = policy or RestartPolicy()
    name = deployment.name
    active = [r for r in replicas if r.state in ACTIVE_STATES]

    if deployment.deleting:
        if not replicas:
            return [RemoveDeployment(name)]
        return [StopReplica(r.id, "deployment deleted")
                for r in replicas if r.state is not ReplicaState.DRAINING]

    generation = deployment.status.template_generation
    desired = deployment.spec.replicas
    current = [r for r in active if r.generation == generation]
    old = [r for r in active if r.generation != generation]
    actions: list[Action] = []

    # Scale the current template to the desired count.
    if len(current) < desired:
        actions += [StartReplica(name, generation) for _ in range(desired - len(current))]
    elif len(current) > desired:
        for r in _surplus_first(current)[: len(current) - desired]:
            actions.append(StopReplica(r.id, f"scaled down to {desired}"))
            current.remove(r)

    # Restart failed replicas of the current template whose backoff has elapsed.
    for r in current:
        if r.state is ReplicaState.FAILED and (r.next_restart_at or 0.0) <= now:
            actions.append(RestartReplica(r.id))

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

    # Starting replicas that never became ready in time count as failed starts.
    for r in current:
        if (r.state is ReplicaState.STARTING and r.started_at is not None
                and now - r.started_at > policy.start_timeout_s):
            actions.append(StopReplica(r.id, f"not ready after {policy.start_timeout_s:.0f}s"))
    return actions
