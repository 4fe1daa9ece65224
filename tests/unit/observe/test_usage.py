"""The meter on a real SQLite store with a fake clock: runs metered from their marks (a
second never twice, a restart goes on from the mark), closed where they ended, traffic and
idle capacity, attempts, and budgets notified exactly once per threshold and month."""

from __future__ import annotations

from pathlib import Path

import pytest

from leptonic.core.models import (
    AttemptState,
    DeploymentSpec,
    JobAttempt,
    JobSpec,
    Node,
    Replica,
    ReplicaState,
    Resources,
)
from leptonic.core.usage import BudgetSpec, month_bounds, replica_run
from leptonic.observe.series import GatewayCounts, ReplicaStat
from leptonic.observe.usage import Meter, cloudevents
from leptonic.store.store import Store
from leptonic.store.usage import UsageStore

T0 = month_bounds(1_796_000_000.0)[0] + 86400.0 + 100.0     # a day into a UTC month
PRICES = {"cpu": 0.01, "memory": 0.0, "gpu": 1.0, "energy": 1.0}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    s.migrate()
    s.create_deployment("web", DeploymentSpec(photon="builtin:echo", labels={"team": "a"},
                                              created_by="user:ann"), now=T0)
    ustore = UsageStore(s)
    for k, v in PRICES.items():
        ustore.set_price(k, v, "test", T0)
    return s


NODE = Node(name="n1", capacity={"cpu": 8.0, "memory_mb": 8192.0, "gpu": 0.0})


def replica(restarts: int = 0, started: float = T0, state: ReplicaState = ReplicaState.READY,
            rid: str = "web-1") -> Replica:
    return Replica(id=rid, deployment="web", node="n1", state=state, restarts=restarts,
                   started_at=started, created_at=started,
                   resources=Resources(cpu=2.0, memory_mb=1024))


def tick(meter: Meter, store: Store, now: float, replicas: list[Replica],
         gateway: dict[str, GatewayCounts] | None = None,
         stats: list[ReplicaStat] | None = None,
         energy: dict[str, tuple[float, float]] | None = None) -> float:
    return meter.tick(now, store.list_deployments(), replicas, [NODE], stats or [],
                      gateway or {}, energy or {})


def run_seconds(store: Store, run: str) -> float:
    rows = {r["run"]: r for r in UsageStore(store).runs()}
    return float(rows[run]["until"]) - float(rows[run]["started_at"])


def totals(store: Store, owner_kind: str = "deployment") -> dict[str, float]:
    out: dict[str, float] = {}
    for b in UsageStore(store).buckets(0, T0 + 10 * 86400):
        if b["owner_kind"] == owner_kind:
            for f in ("seconds", "cpu_s", "requests", "errors", "energy_j", "cost"):
                out[f] = out.get(f, 0.0) + float(b[f])
    return out


def test_a_run_is_metered_from_its_mark_once_and_goes_on_after_a_restart(
        store: Store) -> None:
    meter = Meter(store, max_gap_s=60)
    run = replica_run("web-1", 0)
    assert tick(meter, store, T0 + 10, [replica()]) == pytest.approx(10.0)
    assert tick(meter, store, T0 + 10, [replica()]) == 0.0        # the same second: nothing
    assert run_seconds(store, run) == pytest.approx(10.0)
    # the control plane was down 20 s and the replica ran on: a new meter goes on from
    # the stored mark, the 20 s included, none of it twice
    restarted = Meter(store, max_gap_s=60)
    tick(restarted, store, T0 + 30, [replica()])
    assert run_seconds(store, run) == pytest.approx(30.0)
    t = totals(store)
    assert (t["seconds"], t["cpu_s"]) == (pytest.approx(30.0), pytest.approx(60.0))
    assert t["cost"] == pytest.approx(60 * 0.01)
    row = UsageStore(store).runs()[0]
    assert (row["owner"], row["user"], row["labels"]) == ("web", "user:ann", {"team": "a"})


def test_a_run_closes_where_it_ended_and_its_restart_is_a_new_run(store: Store) -> None:
    meter = Meter(store, max_gap_s=60)
    tick(meter, store, T0 + 10, [replica()])
    ustore = UsageStore(store)
    assert ustore.close(replica_run("web-1", 0), T0 + 12.5)      # the controller saw it exit
    assert not ustore.close(replica_run("web-1", 0), T0 + 99)    # once
    # a pass that read the replica before it was closed cannot reopen it
    tick(meter, store, T0 + 15, [replica()])
    assert run_seconds(store, replica_run("web-1", 0)) == pytest.approx(12.5)
    tick(meter, store, T0 + 20, [replica(restarts=1, started=T0 + 14)])
    assert run_seconds(store, replica_run("web-1", 1)) == pytest.approx(6.0)
    assert totals(store)["seconds"] == pytest.approx(18.5)


def test_a_run_whose_replica_vanished_unseen_closes_at_its_mark(store: Store) -> None:
    meter = Meter(store, max_gap_s=60)
    tick(meter, store, T0 + 10, [replica()])
    tick(meter, store, T0 + 20, [])
    run = UsageStore(store).runs()[0]
    assert run["closed"]
    assert run["until"] == pytest.approx(T0 + 10)
    tick(meter, store, T0 + 30, [replica(state=ReplicaState.FAILED)])   # not billed
    assert totals(store)["seconds"] == pytest.approx(10.0)


def test_use_above_the_request_is_billed(store: Store) -> None:
    meter = Meter(store, max_gap_s=60)
    stat = ReplicaStat("web", "web-1", True, cpu_seconds=100.0, rss_bytes=float(2 << 30))
    tick(meter, store, T0 + 10, [replica()], stats=[stat])
    busy = ReplicaStat("web", "web-1", True, cpu_seconds=140.0, rss_bytes=float(2 << 30))
    tick(meter, store, T0 + 20, [replica()], stats=[busy])       # 4 cores for 10 s
    assert totals(store)["cpu_s"] == pytest.approx(10 * 2.0 + 10 * 4.0)
    shape = UsageStore(store).runs()[0]["shape"]
    assert (shape["cpu"], shape["memory_mb"]) == (pytest.approx(4.0), pytest.approx(2048))


def test_traffic_energy_and_idle_capacity(store: Store) -> None:
    meter = Meter(store, max_gap_s=60)
    gw = {"web": GatewayCounts(codes={"200": 5.0, "503": 1.0})}
    tick(meter, store, T0 + 10, [replica()], gw, energy={"web": (10.0, 1000.0)})
    gw2 = {"web": GatewayCounts(codes={"200": 9.0, "503": 2.0})}
    tick(meter, store, T0 + 20, [replica()], gw2, energy={"web": (10.0, 1000.0 + 3.6e5)})
    t = totals(store)
    assert (t["requests"], t["errors"]) == (11.0, 2.0)
    assert t["energy_j"] == pytest.approx(3.6e5)          # the first sight is the baseline
    assert t["cost"] == pytest.approx(20 * 2 * 0.01 + 0.1 * 1.0)
    idle = totals(store, "node")
    assert idle["cpu_s"] == pytest.approx((8.0 - 2.0) * 10)      # one interval, 6 cores free
    assert idle["cost"] == pytest.approx(60 * 0.01)


def test_an_attempt_is_metered_until_it_finished(store: Store) -> None:
    store.create_job("train", JobSpec(command="true", labels={"team": "b"},
                                      created_by="token:ci"), now=T0)
    a = JobAttempt(id="train-0-1", job="train", index=0, node="n1", started_at=T0,
                   created_at=T0, resources=Resources(cpu=1.0))
    store.upsert_attempt(a)
    meter = Meter(store, max_gap_s=60)
    tick(meter, store, T0 + 10, [])
    store.upsert_attempt(a.model_copy(update={"state": AttemptState.SUCCEEDED,
                                              "finished_at": T0 + 13.0}))
    tick(meter, store, T0 + 20, [])
    tick(meter, store, T0 + 30, [])
    run = UsageStore(store).runs()[0]
    assert run["closed"]
    assert run["until"] == pytest.approx(T0 + 13.0)
    assert (run["owner_kind"], run["user"]) == ("job", "token:ci")
    assert totals(store, "job")["seconds"] == pytest.approx(13.0)


def test_a_budget_notifies_once_per_threshold_and_month_and_scales_to_zero(
        store: Store) -> None:
    ustore = UsageStore(store)
    ustore.create_budget(BudgetSpec(name="web", scope="deployment:web", monthly=1.0,
                                    alerts=[50, 100], action="scale-to-zero",
                                    notify=["webhook:http://127.0.0.1:9/hook"]), "test", T0)
    ustore.create_budget(BudgetSpec(name="other", scope="label:team=zzz", monthly=0.01),
                         "test", T0)
    meter = Meter(store, max_gap_s=600)
    tick(meter, store, T0 + 10, [replica()])
    assert meter.budgets(T0 + 10) == []                         # 0.20 of 1.00
    tick(meter, store, T0 + 30, [replica()])                    # 0.60: past 50%
    assert meter.budgets(T0 + 30) == [("web", 50.0)]
    assert meter.budgets(T0 + 31) == []
    tick(meter, store, T0 + 60, [replica()])                    # 1.20: past 100%
    assert meter.budgets(T0 + 60) == [("web", 100.0)]
    tick(meter, store, T0 + 90, [replica()])
    assert meter.budgets(T0 + 90) == []
    assert Meter(store, max_gap_s=600).budgets(T0 + 91) == []   # after a restart too
    queued = [n for n in store.engine.connect().execute(
        __import__("sqlalchemy").text("select target, payload from alert_notifications"))]
    assert [row[0] for row in queued] == ["budget/web", "budget/web"]
    assert [n["threshold"] for n in ustore.notices("web")] == [50.0, 100.0]
    d = store.get_deployment("web")
    assert (d.spec.replicas, d.spec.autoscaling) == (0, None)
    assert "BudgetScaledToZero" in [e.reason for e in store.list_events("deployment/web")]
    # the next month starts from nothing
    _, end = month_bounds(T0)
    tick(meter, store, end + 10, [replica(restarts=1, started=end)])
    assert meter.budgets(end + 10) == []
    tick(meter, store, end + 60, [replica(restarts=1, started=end)])
    assert meter.budgets(end + 60) == [("web", 50.0), ("web", 100.0)]


def test_cloudevents_have_stable_ids(store: Store) -> None:
    tick(Meter(store, max_gap_s=60), store, T0 + 10, [replica()])
    rows = UsageStore(store).buckets(0, T0 + 86400)
    events = cloudevents(rows, "http://127.0.0.1:8080/api/v1/usage")
    assert events == cloudevents(rows, "http://127.0.0.1:8080/api/v1/usage")
    e = events[0]
    assert (e["specversion"], e["type"], e["subject"]) == ("1.0", "dev.leptonic.usage."
                                                           "deployment", "deployment/web")
    assert e["id"] == f"web-1#0@{int(rows[0]['hour'])}"
    assert e["data"]["seconds"] == pytest.approx(10.0)
    assert e["time"].endswith("Z")


def test_a_deployment_made_again_under_its_name_does_not_count_old_requests(
        store: Store) -> None:
    meter = Meter(store, max_gap_s=60)
    deployments = store.list_deployments()
    tick(meter, store, T0 + 10, [], {"web": GatewayCounts(codes={"200": 10.0})})
    meter.tick(T0 + 20, [], [], [NODE], [], {"web": GatewayCounts(codes={"200": 10.0})}, {})
    meter.tick(T0 + 30, deployments, [], [NODE], [],
               {"web": GatewayCounts(codes={"200": 12.0})}, {})
    assert totals(store)["requests"] == 12.0
