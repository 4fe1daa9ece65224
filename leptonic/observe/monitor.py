"""Live monitoring of deployed models: the replicas' samples joined with the truth.

Every observe interval (and at once when feedback names a request not seen yet) the
control plane reads each ready replica's sample of a model deployment
(``GET /_leptonic/sample``, see ``leptonic.photon.sample``): request id, time, features and
prediction. Those wait here, keyed by request id, for their truth: ``POST
/deployments/{D}/feedback`` with ``{"items": [{"request_id", "truth"}]}``. A matched
request becomes a labelled row; an unknown id (never sampled, or from another deployment)
and an expired one (dropped past ``max_pending`` or ``ttl_s``) are counted and reported,
never a failure of the batch.

Over a window (default the last hour, by prediction time): live accuracy and macro F1 (or
MAE, RMSE and R2 for a regressor) on the labelled rows (NannyML's realised performance),
and drift of the predictions' features against the served version's reference profile
(``core.drift``: PSI over the reference's deciles, KS or Wasserstein; chi-squared for
categories), rolled up as ``drift_share``. These go into the deployment's built-in series
(``accuracy``, ``f1``, ``drift_share``, ``psi:FEATURE``...), so alert rules can use them,
and to ``/metrics``.

In memory, on the control plane that serves the feedback: a restart forgets predictions
that had no truth yet (they were samples; nothing stored is lost).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from leptonic.core.drift import (
    Reference,
    classification_quality,
    dataset_drift,
    feature_drift,
    regression_quality,
)
from leptonic.core.models import Deployment, Replica, ReplicaState

if TYPE_CHECKING:
    from leptonic.store.store import Store

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 3600.0
MAX_PENDING = 200_000          # predictions waiting for their truth, per deployment
MAX_LABELLED = 200_000         # labelled rows kept, per deployment
MAX_DRIFT_ROWS = 10_000        # the newest predictions the drift is computed over
TTL_S = 7 * 86400.0            # truth for an older prediction is expired
_EXPIRED_MEMORY = 200_000      # ids remembered as expired (to tell expired from unknown)


@dataclass
class Prediction:
    at: float
    version: int
    features: list[float]
    prediction: Any


@dataclass
class Labelled:
    at: float                   # when it was predicted
    version: int
    prediction: Any
    truth: Any


@dataclass
class _State:
    pending: collections.OrderedDict[str, Prediction] = field(
        default_factory=collections.OrderedDict)
    labelled: collections.deque[Labelled] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_LABELLED))
    recent: collections.deque[tuple[float, int, list[float]]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_DRIFT_ROWS))
    expired: collections.OrderedDict[str, None] = field(
        default_factory=collections.OrderedDict)
    cursors: dict[str, int] = field(default_factory=dict)     # replica id -> last seq
    predictions: int = 0        # sampled, all time (a counter)
    feedback: dict[str, int] = field(default_factory=lambda: {
        "matched": 0, "unknown": 0, "expired": 0, "duplicate": 0})


@dataclass(frozen=True)
class FeedbackResult:
    matched: int
    unknown: int
    expired: int
    duplicate: int
    unknown_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "unknown": self.unknown, "expired": self.expired,
                "duplicate": self.duplicate, "unknown_ids": self.unknown_ids}


class ModelMonitor:
    """Per deployment: predictions waiting for truth, labelled rows, recent features."""

    def __init__(self, store: Store, *, timeout_s: float = 2.0,
                 clock: Any = time.time) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._refs: dict[tuple[str, int], Reference | None] = {}
        self._http: httpx.AsyncClient | None = None
        self._labelled_ids: dict[str, collections.OrderedDict[str, None]] = {}

    def state(self, deployment: str) -> _State:
        st = self._states.get(deployment)
        if st is None:
            st = self._states[deployment] = _State()
        return st

    # -- reading the replicas' samples ---------------------------------------------------
    async def pull(self, deployments: Iterable[Deployment], replicas: Iterable[Replica]
                   ) -> int:
        """Read the new records of every ready replica of the model deployments given."""
        models = {d.name: d for d in deployments if d.spec.model is not None and not d.deleting}
        todo = [r for r in replicas if r.deployment in models and r.url
                and r.state is ReplicaState.READY]
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s)
        got = await asyncio.gather(*(self._read(r) for r in todo))
        added = 0
        for r, body in zip(todo, got, strict=True):
            if body is not None:
                added += await asyncio.to_thread(self._take, models[r.deployment], r, body)
        return added

    def forget(self, live: set[str]) -> None:
        """Drop what is kept for deployments no longer there."""
        with self._lock:
            for name in [n for n in self._states if n not in live]:
                self._states.pop(name)
                self._labelled_ids.pop(name, None)

    async def _read(self, r: Replica) -> dict[str, Any] | None:
        assert self._http is not None
        after = self.state(r.deployment).cursors.get(r.id, 0)
        try:
            resp = await self._http.get(f"{r.url}/_leptonic/sample", params={"after": after})
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("reading the sample of replica %s failed: %r", r.id, exc)
            return None

    def _take(self, d: Deployment, r: Replica, body: Mapping[str, Any]) -> int:
        """Add one replica's records (sync; a thread)."""
        served = d.spec.model
        assert served is not None
        version = served.version
        model_ref = str(body.get("model") or "")
        if "@" in model_ref and model_ref.rsplit("@", 1)[1].isdigit():
            version = int(model_ref.rsplit("@", 1)[1])
        now = self.clock()
        added = 0
        with self._lock:
            st = self.state(d.name)
            st.cursors[r.id] = int(body.get("next", st.cursors.get(r.id, 0)))
            for rec in body.get("records", []):
                try:
                    _, rid, at, inp, answer = rec
                    features = [float(x) for x in inp["features"]]
                except (ValueError, TypeError, KeyError):
                    continue
                if not rid:
                    continue
                p = Prediction(float(at), version, features, answer)
                st.pending[str(rid)] = p
                st.pending.move_to_end(str(rid))
                st.recent.append((p.at, version, features))
                st.predictions += 1
                added += 1
            self._expire(st, now)
        return added

    def _expire(self, st: _State, now: float) -> None:
        pending = st.pending
        while pending and (len(pending) > MAX_PENDING
                           or next(iter(pending.values())).at < now - TTL_S):
            rid, _ = pending.popitem(last=False)
            st.expired[rid] = None
            if len(st.expired) > _EXPIRED_MEMORY:
                st.expired.popitem(last=False)

    # -- truth ----------------------------------------------------------------------------
    def feedback(self, deployment: str, items: Iterable[tuple[str, Any]]) -> FeedbackResult:
        """Join each (request id, truth) with its prediction (sync, fast: a dict lookup)."""
        matched = unknown = expired = duplicate = 0
        unknown_ids: list[str] = []
        with self._lock:
            st = self.state(deployment)
            done = self._labelled_ids.setdefault(deployment, collections.OrderedDict())
            for rid, truth in items:
                p = st.pending.pop(rid, None)
                if p is not None:
                    st.labelled.append(Labelled(p.at, p.version, p.prediction, truth))
                    done[rid] = None
                    if len(done) > MAX_LABELLED:
                        done.popitem(last=False)
                    matched += 1
                elif rid in done:
                    duplicate += 1
                elif rid in st.expired:
                    expired += 1
                else:
                    unknown += 1
                    if len(unknown_ids) < 100:
                        unknown_ids.append(rid)
            st.feedback["matched"] += matched
            st.feedback["unknown"] += unknown
            st.feedback["expired"] += expired
            st.feedback["duplicate"] += duplicate
        return FeedbackResult(matched, unknown, expired, duplicate, unknown_ids)

    def missing(self, deployment: str, ids: Iterable[str]) -> bool:
        """Whether any of ``ids`` is neither waiting, labelled nor expired (so a read of
        the replicas' samples may find it)."""
        with self._lock:
            st = self.state(deployment)
            done: Mapping[str, None] = self._labelled_ids.get(deployment, {})
            return any(i not in st.pending and i not in done and i not in st.expired
                       for i in ids)

    # -- figures --------------------------------------------------------------------------
    def reference(self, model: str, version: int) -> Reference | None:
        key = (model, version)
        if key not in self._refs:
            raw = self.store.model_reference(model, version)
            try:
                self._refs[key] = Reference.from_dict(raw) if raw else None
            except (ValueError, KeyError, TypeError):
                self._refs[key] = None
        return self._refs[key]

    def metrics(self, d: Deployment, window_s: float = DEFAULT_WINDOW_S,
                now: float | None = None) -> dict[str, Any]:
        """The deployment's live figures over the window (sync: numpy)."""
        served = d.spec.model
        now = self.clock() if now is None else now
        since = now - window_s
        with self._lock:
            st = self.state(d.name)
            labelled = [x for x in st.labelled if x.at >= since]
            recent = [f for at, v, f in st.recent if at >= since and
                      (served is None or v == served.version)]
            pending = len(st.pending)
            fb = dict(st.feedback)
            total = st.predictions
        out: dict[str, Any] = {
            "deployment": d.name, "window_s": window_s,
            "model": served.model if served else None,
            "version": served.version if served else None,
            "predictions": len(recent), "predictions_total": total, "labelled": len(labelled),
            "pending": pending, "feedback": fb, "accuracy": None, "f1": None,
            "mae": None, "rmse": None, "r2": None,
            "drift": {"share": None, "drifted": None, "judged": 0, "features": {}}}
        if labelled:
            truth = [x.truth for x in labelled]
            pred = [x.prediction for x in labelled]
            if _numeric_labels(truth) and _numeric_labels(pred) and not _classes(d, self):
                q = regression_quality(truth, pred)
                out.update(mae=q.mae, rmse=q.rmse, r2=q.r2)
            else:
                c = classification_quality(_labels(truth), _labels(pred))
                out.update(accuracy=c.accuracy, f1=c.macro_f1, f1_weighted=c.weighted_f1)
        ref = self.reference(served.model, served.version) if served else None
        if ref is not None and recent:
            width = len(ref.features)
            rows = [f for f in recent if len(f) == width]
            if rows:
                results = feature_drift(ref, np.asarray(rows, dtype=float))
                roll = dataset_drift(results)
                out["drift"] = {
                    "share": roll.drift_share if roll.judged else None,
                    "drifted": roll.dataset_drifted, "judged": roll.judged,
                    "features": {r.name: {"psi": r.psi, "drifted": r.drifted,
                                          "test": r.test, "statistic": r.statistic,
                                          "pvalue": r.pvalue, "reason": r.reason}
                                 for r in results}}
        return out

    def series(self, figures: Mapping[str, Any]) -> dict[str, float | None]:
        """The figures as built-in series values (and the alert rules' metrics)."""
        out: dict[str, float | None] = {
            "accuracy": figures.get("accuracy"), "f1": figures.get("f1"),
            "labelled": float(figures.get("labelled", 0)),
            "predictions": float(figures.get("predictions", 0)),
            "drift_share": figures["drift"].get("share")}
        for k in ("mae", "rmse", "r2"):
            if figures.get(k) is not None:
                out[k] = figures[k]
        for name, f in figures["drift"]["features"].items():
            if f.get("psi") is not None:
                out[f"psi:{name}"] = f["psi"]
        return {k: v for k, v in out.items() if v is None or math.isfinite(v)}

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _classes(d: Deployment, monitor: ModelMonitor) -> bool:
    """Whether the served version is a classifier (its reference has a class balance)."""
    m = d.spec.model
    ref = monitor.reference(m.model, m.version) if m else None
    return bool(ref is not None and ref.class_balance is not None)


def _numeric_labels(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _labels(values: list[Any]) -> list[Any]:
    """Labels compared as the model gives them: whole floats as ints, others as text."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            out.append(int(v))
        elif isinstance(v, int | str | bool):
            out.append(v)
        else:
            out.append(json.dumps(v))
    return out


class MonitorCollector:
    """The latest figures of each model deployment, for ``/metrics``."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["deployment", "model", "version"]
        gauges = {k: GaugeMetricFamily(f"leptonic_model_{k}", help_, labels=labels)
                  for k, help_ in (
                      ("accuracy", "Live accuracy over the window's labelled answers"),
                      ("f1", "Live macro F1 over the window's labelled answers"),
                      ("drift_share", "Share of the features that drifted in the window"),
                      ("labelled", "Answers with their truth back, in the window"),
                      ("pending", "Sampled answers waiting for their truth"))}
        psi = GaugeMetricFamily("leptonic_model_feature_psi",
                                "PSI of a feature in the window against the reference",
                                labels=[*labels, "feature"])
        total = CounterMetricFamily("leptonic_model_predictions",
                                    "Answers sampled for monitoring", labels=labels)
        fb = CounterMetricFamily("leptonic_model_feedback",
                                 "Feedback items by how they were matched",
                                 labels=[*labels, "result"])
        for name, f in sorted(self.figures.items()):
            key = [name, str(f.get("model")), str(f.get("version"))]
            for k, g in gauges.items():
                v = f.get(k) if k != "drift_share" else f["drift"].get("share")
                if v is not None:
                    g.add_metric(key, float(v))
            for feat, d in f["drift"]["features"].items():
                if d.get("psi") is not None:
                    psi.add_metric([*key, feat], float(d["psi"]))
            total.add_metric(key, float(f.get("predictions_total", 0)))
            for result, n in f.get("feedback", {}).items():
                fb.add_metric([*key, result], float(n))
        yield from gauges.values()
        yield psi
        yield total
        yield fb
