"""Replica and deployment status transitions as tables."""

from __future__ import annotations

import pytest

from leptonic.core.models import (
    Deployment,
    DeploymentPhase,
    DeploymentSpec,
    Replica,
    ReplicaState,
)
from leptonic.core.transitions import (
    RestartPolicy,
    deployment_status,
    replica_exited,
    replica_ready,
    replica_restarted,
    replica_settled,
    template_hash,
)

POLICY = RestartPolicy(base_s=0.5, factor=2, max_s=8, crashloop_after=3, stable_after_s=10)
S, R, F = ReplicaState.STARTING, ReplicaState.READY, ReplicaState.FAILED


@pytest.mark.parametrize(("failures", "delay"),
                         [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)])
def test_backoff(failures: int, delay: float) -> None:
    assert POLICY.delay(failures) == delay


def test_exit_then_restart_then_ready_then_settle() -> None:
    r = Replica(id="a", deployment="d", state=R, pid=5, url="http://x", ready_at=1.0)
    r = replica_exited(r, -9, "boom", now=100.0, policy=POLICY)
    assert (r.state, r.failures, r.exit_code, r.pid, r.url) == (F, 1, -9, None, None)
    assert r.next_restart_at == 100.5
    r = replica_restarted(r, now=101.0)
    assert (r.state, r.restarts, r.started_at, r.next_restart_at) == (S, 1, 101.0, None)
    r = replica_ready(r, now=102.0)
    assert (r.state, r.ready_at, r.failures) == (R, 102.0, 1)
    assert replica_settled(r, now=105.0, policy=POLICY).failures == 1
    assert replica_settled(r, now=112.0, policy=POLICY).failures == 0


def test_ready_only_from_starting() -> None:
    r = Replica(id="a", deployment="d", state=F)
    assert replica_ready(r, 1.0) is r


def _dep(replicas: int, deleting: bool = False) -> Deployment:
    return Deployment(name="d", spec=DeploymentSpec(photon="p", photon_version=1,
                                                    replicas=replicas), deleting=deleting)


def _r(state: ReplicaState, failures: int = 0) -> Replica:
    return Replica(id=f"r{state}{failures}", deployment="d", state=state, failures=failures,
                   exit_code=1 if failures else None, last_error="Traceback: x" if failures
                   else None, next_restart_at=10.0 if failures else None)


@pytest.mark.parametrize(("desired", "replicas", "deleting", "phase", "ready"), [
    (2, [], False, DeploymentPhase.PENDING, 0),
    (2, [_r(S), _r(S)], False, DeploymentPhase.PENDING, 0),
    (2, [_r(R), _r(S)], False, DeploymentPhase.DEGRADED, 1),
    (1, [_r(R)], False, DeploymentPhase.READY, 1),
    (0, [], False, DeploymentPhase.STOPPED, 0),
    (1, [_r(F, failures=3)], False, DeploymentPhase.CRASH_LOOP, 0),
    (1, [_r(F, failures=2)], False, DeploymentPhase.PENDING, 0),
    (1, [_r(R)], True, DeploymentPhase.DELETING, 1),
])
def test_deployment_phase(desired: int, replicas: list[Replica], deleting: bool,
                          phase: DeploymentPhase, ready: int) -> None:
    st = deployment_status(_dep(desired, deleting), replicas, now=5.0, policy=POLICY)
    assert (st.phase, st.ready_replicas) == (phase, ready)


def test_crashloop_message_names_replica_and_keeps_last_error() -> None:
    st = deployment_status(_dep(1), [_r(F, failures=4)], now=5.0, policy=POLICY)
    assert "failed 4 times" in st.message
    assert "exit code 1" in st.message
    assert st.last_error == "Traceback: x"


def test_template_hash_changes_with_version_and_env_not_replicas() -> None:
    a = DeploymentSpec(photon="p", photon_version=1, replicas=1)
    assert template_hash(a) == template_hash(a.model_copy(update={"replicas": 5}))
    assert template_hash(a) != template_hash(a.model_copy(update={"photon_version": 2}))
    assert template_hash(a) != template_hash(a.model_copy(update={"env": {"K": "V"}}))
