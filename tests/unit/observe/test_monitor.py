"""Model monitoring's parts: the replica's sample ring and its reads, the join of truth
with sampled predictions (matched, unknown, expired, duplicate), live accuracy and F1
against scikit-learn on the same rows, drift against the reference, the series values."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from leptonic.core.drift import Reference
from leptonic.core.models import Deployment, DeploymentSpec, ModelServing, Replica
from leptonic.observe import monitor as mon
from leptonic.photon.sample import Sample, parse_query


def test_the_sample_ring_reads_after_a_sequence_and_says_what_it_dropped() -> None:
    s = Sample(["predict"], size=3, model="iris@2")
    for i in range(5):
        s.record("predict", b"id%d" % i, b'{"features":[%d]}' % i, b"%d" % (i % 2))
    body = json.loads(s.read(0))
    assert body["model"] == "iris@2"
    assert [r[0] for r in body["records"]] == [3, 4, 5]     # the oldest two gave way
    assert body["dropped"] == 2
    assert body["next"] == 5
    assert body["records"][0][1] == "id2"
    assert body["records"][0][3] == {"features": [2]}
    assert body["records"][0][4] == 0
    assert json.loads(s.read(4))["records"][0][0] == 5
    assert json.loads(s.read(5)) == {"model": "iris@2", "next": 5, "dropped": 0,
                                     "records": []}
    assert json.loads(s.read(3, limit=1))["next"] == 4
    # a cursor past the end (the replica restarted): start again from where it is
    assert json.loads(s.read(99))["next"] == 5


def test_request_ids_that_could_break_the_json_are_cleaned() -> None:
    s = Sample(["predict"])
    s.record("predict", b'a"b\\c\nd', b"{}", b"1")
    assert json.loads(s.read(0))["records"][0][1] == "abcd"
    assert parse_query(b"after=12&limit=x&other=3") == {"after": 12}


class _Store:
    def __init__(self, reference: dict[str, Any] | None) -> None:
        self.reference = reference

    def model_reference(self, name: str, version: int) -> dict[str, Any] | None:
        return self.reference


def _deployment(version: int = 1) -> Deployment:
    serving = ModelServing(ref="iris@champion", model="iris", version=version,
                           alias="champion", framework="sklearn", photon="builtin:sklearn",
                           path_env="SKLEARN_MODEL_PATH", artifact="m.joblib", digest="0" * 64)
    return Deployment(name="d", spec=DeploymentSpec(photon="builtin:sklearn", model=serving),
                      generation=1, created_at=0.0, updated_at=0.0)


def _feed(m: mon.ModelMonitor, rows: list[tuple[str, list[float], Any]], at: float = 100.0,
          model: str = "iris@1") -> None:
    d = _deployment()
    body = {"model": model, "next": len(rows), "records": [
        [i + 1, rid, at, {"features": f}, pred] for i, (rid, f, pred) in enumerate(rows)]}
    r = Replica(id="r1", deployment="d", url="http://x")
    m._take(d, r, body)


def _reference(rng: np.random.Generator) -> dict[str, Any]:
    X = rng.normal(size=(2000, 3))
    y = rng.integers(0, 3, size=2000)
    return Reference.build(X, ["a", "b", "c"], labels=y).to_dict()


def test_truth_joins_by_request_id_and_every_other_item_is_counted() -> None:
    m = mon.ModelMonitor(_Store(None), clock=lambda: 200.0)
    _feed(m, [("r1", [0.0], 1), ("r2", [0.0], 0), ("r3", [0.0], 2)])
    res = m.feedback("d", [("r1", 1), ("r2", 1), ("nope", 0), ("r1", 1)])
    assert (res.matched, res.unknown, res.duplicate, res.expired) == (2, 1, 1, 0)
    assert res.unknown_ids == ["nope"]
    assert m.missing("d", ["r3"]) is False
    assert m.missing("d", ["r4"]) is True
    st = m.state("d")
    assert len(st.pending) == 1
    assert st.feedback == {"matched": 2, "unknown": 1, "expired": 0, "duplicate": 1}


def test_predictions_past_the_ttl_or_the_bound_expire(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setattr(mon, "MAX_PENDING", 2)
    now = [100.0]
    m = mon.ModelMonitor(_Store(None), clock=lambda: now[0])
    _feed(m, [("a", [0.0], 1), ("b", [0.0], 1), ("c", [0.0], 1)])
    assert m.feedback("d", [("a", 1)]).expired == 1          # pushed out by the bound
    now[0] = 100.0 + mon.TTL_S + 1
    _feed(m, [("z", [0.0], 1)], at=now[0])                   # a read expires old ones
    res = m.feedback("d", [("b", 1), ("c", 1), ("z", 1)])
    assert (res.expired, res.matched) == (2, 1)


def test_live_accuracy_and_f1_are_scikit_learns_on_the_labelled_rows() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    m = mon.ModelMonitor(_Store(_reference(rng)), clock=lambda: 200.0)
    pred = rng.integers(0, 3, size=300).tolist()
    truth = [p if rng.random() < 0.8 else int(rng.integers(0, 3)) for p in pred]
    _feed(m, [(f"r{i}", rng.normal(size=3).tolist(), p) for i, p in enumerate(pred)])
    m.feedback("d", [(f"r{i}", t) for i, t in enumerate(truth[:250])])
    f = m.metrics(_deployment(), window_s=3600)
    assert f["labelled"] == 250
    assert f["predictions"] == 300
    assert f["pending"] == 50
    assert f["accuracy"] == pytest.approx(accuracy_score(truth[:250], pred[:250]))
    assert f["f1"] == pytest.approx(f1_score(truth[:250], pred[:250], average="macro"))
    assert f["drift"]["share"] == 0.0                        # same distribution
    s = m.series(f)
    assert s["accuracy"] == f["accuracy"]
    assert s["drift_share"] == 0.0
    assert set(k for k in s if k.startswith("psi:")) == {"psi:a", "psi:b", "psi:c"}


def test_shifted_features_drift_and_old_rows_leave_the_window() -> None:
    rng = np.random.default_rng(1)
    m = mon.ModelMonitor(_Store(_reference(rng)), clock=lambda: 5000.0)
    X = rng.normal(size=(300, 3))
    X[:, :2] += 3.0                                          # two of three features move
    _feed(m, [(f"r{i}", x.tolist(), 0) for i, x in enumerate(X)], at=4900.0)
    f = m.metrics(_deployment(), window_s=3600)
    feats = f["drift"]["features"]
    assert feats["a"]["drifted"]
    assert feats["b"]["drifted"]
    assert not feats["c"]["drifted"]
    assert f["drift"]["share"] == pytest.approx(2 / 3)
    assert feats["a"]["psi"] > 0.25
    assert m.metrics(_deployment(), window_s=60)["predictions"] == 0


def test_predictions_of_another_version_are_not_the_served_versions_drift() -> None:
    rng = np.random.default_rng(2)
    m = mon.ModelMonitor(_Store(_reference(rng)), clock=lambda: 200.0)
    _feed(m, [(f"r{i}", (rng.normal(size=3) + 5).tolist(), 0) for i in range(100)],
          model="iris@7")
    assert m.metrics(_deployment(1))["predictions"] == 0


def test_a_regressor_gets_mae_rmse_and_r2() -> None:
    m = mon.ModelMonitor(_Store(None), clock=lambda: 200.0)
    _feed(m, [("a", [0.0], 1.0), ("b", [0.0], 2.5), ("c", [0.0], 4.0)])
    m.feedback("d", [("a", 1.5), ("b", 2.0), ("c", 4.0)])
    f = m.metrics(_deployment())
    assert f["accuracy"] is None
    assert f["mae"] == pytest.approx(1.0 / 3)
    assert f["rmse"] == pytest.approx((0.5 / 3) ** 0.5)


def test_forget_drops_deployments_that_are_gone() -> None:
    m = mon.ModelMonitor(_Store(None))
    _feed(m, [("a", [0.0], 1)])
    m.forget({"other"})
    assert m.missing("d", ["a"]) is True
