"""Replica and deployment status transitions, as pure functions of a snapshot and ``now``."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from leptonic.core.models import (
    Deployment,
    DeploymentPhase,
    DeploymentSpec,
    DeploymentStatus,
    Replica,
    ReplicaState,
)

#: replica states that count toward a deployment's replicas (not on their way out)
ACTIVE_STATES = frozenset({ReplicaState.STARTING, ReplicaState.READY, ReplicaState.FAILED})


@dataclass(frozen=True)
class RestartPolicy:
    """How replicas that exit are restarted.

    Delays grow ``base_s * factor**(failures-1)`` up to ``max_s``; after ``crashloop_after``
    failures in a row the deployment reports ``CrashLoop``. A replica that stays ready for
    ``stable_after_s`` has its failure count reset, so a crash a day is not a crash loop.
    """

    base_s: float = 0.5
    factor: float = 2.0
    max_s: float = 60.0
    crashloop_after: int = 3
    stable_after_s: float = 10.0
    start_timeout_s: float = 300.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.max_s, self.base_s * self.factor ** (failures - 1)))


_RUNTIME_FIELDS = {"limits", "handler_timeout_s", "max_concurrency", "debug_errors",
                   "resources", "placement"}


def template_hash(spec: DeploymentSpec) -> str:
    """What makes two replicas interchangeable: the photon version, the environment and the
    model version they serve."""
    parts: list[object] = [spec.photon, spec.photon_version, sorted(spec.env.items())]
    if spec.secrets:            # only when set, so older deployments keep their hash
        parts.append(sorted(spec.secrets))
    runtime = spec.model_dump(include=_RUNTIME_FIELDS, exclude_defaults=True)
    if runtime:                 # limits, timeouts: the replicas must be started anew
        parts.append(runtime)
    if spec.model is not None:  # another model version is another template
        parts.append({"model": [spec.model.model, spec.model.version, spec.model.digest,
                                spec.model.monitor]})
    raw = json.dumps(parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def replica_ready(replica: Replica, now: float) -> Replica:
    """A starting replica answered /readyz with 200."""
    if replica.state is not ReplicaState.STARTING:
        return replica
    return replica.model_copy(update={"state": ReplicaState.READY, "ready_at": now,
                                      "last_error": None})


def replica_exited(replica: Replica, exit_code: int | None, error_tail: str | None,
                   now: float, policy: RestartPolicy, reason: str | None = None) -> Replica:
    """The replica's process is gone (or was killed for failing probes). ``reason`` says
    why when the platform knows (``OOMKilled``, ``Hung``); else ``Error``."""
    failures = replica.failures + 1
    return replica.model_copy(update={
        "state": ReplicaState.FAILED,
        "failures": failures,
        "exit_code": exit_code,
        "reason": reason or "Error",
        "last_error": error_tail,
        "pid": None,
        "url": None,
        "ready_at": None,
        "next_restart_at": now + policy.delay(failures),
    })


def replica_restarted(replica: Replica, now: float) -> Replica:
    """A failed replica was started again in the same slot."""
    return replica.model_copy(update={
        "state": ReplicaState.STARTING,
        "restarts": replica.restarts + 1,
        "started_at": now,
        "next_restart_at": None,
    })


def replica_settled(replica: Replica, now: float, policy: RestartPolicy) -> Replica:
    """Forget past failures once a replica has been ready for long enough."""
    if (replica.state is ReplicaState.READY and replica.failures and replica.ready_at is not None
            and now - replica.ready_at >= policy.stable_after_s):
        return replica.model_copy(update={"failures": 0, "exit_code": None})
    return replica


def deployment_status(deployment: Deployment, replicas: list[Replica], now: float,
                      policy: RestartPolicy, previous: DeploymentStatus | None = None,
                      desired: int | None = None) -> DeploymentStatus:
    """Summarise replicas into the deployment's phase, counts and message. ``desired`` is
    the replica count aimed for (the autoscaler's), ``spec.replicas`` by default."""
    prev = previous or deployment.status
    active = [r for r in replicas if r.state in ACTIVE_STATES]
    ready = [r for r in active if r.state is ReplicaState.READY]
    desired = deployment.spec.replicas if desired is None else desired
    looping = [r for r in active if r.failures >= policy.crashloop_after]
    last_error = prev.last_error
    if deployment.deleting:
        phase = DeploymentPhase.DELETING
        message = f"stopping {len(replicas)} replica(s)"
    elif looping and len(ready) < desired:
        worst = max(looping, key=lambda r: r.failures)
        phase = DeploymentPhase.CRASH_LOOP
        wait = max(0.0, (worst.next_restart_at or now) - now)
        why = (f"{worst.reason}, " if worst.reason and worst.reason != "Error" else "")
        message = (f"replica {worst.id} failed {worst.failures} times in a row "
                   f"({why}exit code {worst.exit_code}); next restart in {wait:.0f}s")
        last_error = worst.last_error
    elif desired == 0 and not active:
        phase, message = DeploymentPhase.STOPPED, "scaled to zero replicas"
    elif len(ready) >= desired:
        phase, message = DeploymentPhase.READY, f"{len(ready)}/{desired} replicas ready"
        last_error = None
    elif not ready:
        phase, message = DeploymentPhase.PENDING, f"0/{desired} replicas ready"
    else:
        phase, message = DeploymentPhase.DEGRADED, f"{len(ready)}/{desired} replicas ready"
    if phase is not DeploymentPhase.CRASH_LOOP:
        failing = [r for r in active if r.state is ReplicaState.FAILED and r.last_error]
        if failing:
            last_error = failing[0].last_error
    return prev.model_copy(update={
        "phase": phase,
        "replicas": len(active),
        "ready_replicas": len(ready),
        "restarts": max(prev.restarts, sum(r.restarts for r in replicas)),
        "message": message,
        "last_error": last_error,
        "observed_generation": deployment.generation,
        "desired_replicas": desired,
        "updated_at": now,
    })


_CARETS = re.compile(r"^[\s^~]*$")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning|Failure)"
                        r"\b(:.*)?$")


def error_line(text: str | None) -> str | None:
    """The one line of a replica's last log lines that says what went wrong: the exception
    line of the last traceback (``ValueError: bad weights``), never a caret (``^^^^``) or
    source line of its frames; else the last line with words. None for no text."""
    lines = [x.rstrip() for x in (text or "").splitlines()]
    words = [x for x in lines if not _CARETS.match(x)]
    for line in reversed(words):
        if _EXCEPTION.match(line.strip()) and not line.startswith((" ", "\t")):
            return line.strip()
    for line in reversed(words):
        if not line.startswith((" ", "\t")) and not line.startswith("Traceback "):
            return line.strip()
    return words[-1].strip() if words else None
