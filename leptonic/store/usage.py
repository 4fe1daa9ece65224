"""Rows of metering, prices and budgets (migration 0011). Same rules as ``Store``:
synchronous, one transaction per call, missing rows raise ``NotFound``.

A run's row says until when it was metered; a metering pass moves that mark and adds the
interval to the run's hourly buckets in the same transaction. So a pass cut short by a
crash or ``kill -9`` leaves either everything or nothing, and the next pass (after a
restart too) goes on from the mark: no second is metered twice, and while the run goes on
the time the control plane was down is metered too, when it is seen again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from leptonic.core.usage import (
    DEFAULT_PRICES,
    Amounts,
    BudgetSpec,
    Shape,
    hour_slices,
    interval_amounts,
)
from leptonic.errors import Conflict, NotFound
from leptonic.store import tables as t
from leptonic.store.base import Repository

AMOUNTS = Amounts.FIELDS


@dataclass(frozen=True)
class Run:
    """What a metering pass saw of one run: who it belongs to, what it is billed for, and
    until when it ran (``closing``: it has ended at ``end``)."""

    run: str
    kind: str                    # replica | attempt
    owner_kind: str              # deployment | job
    owner: str
    user: str | None
    labels: Mapping[str, str]
    node: str
    started_at: float
    shape: Shape
    end: float
    closing: bool = False


@dataclass
class Bucket:
    """An amount to add to one bucket that belongs to no run: a deployment's traffic and
    energy, a node's idle capacity."""

    run: str
    hour: float
    owner_kind: str
    owner: str
    user: str | None
    labels: Mapping[str, str]
    node: str
    amounts: Amounts = field(default_factory=Amounts)


def _shape(data: Mapping[str, Any]) -> Shape:
    return Shape(float(data.get("cpu", 0.0)), float(data.get("memory_mb", 0.0)),
                 float(data.get("gpu", 0.0)), data.get("gpu_model"))


def _shape_json(s: Shape) -> dict[str, Any]:
    return {"cpu": s.cpu, "memory_mb": s.memory_mb, "gpu": s.gpu, "gpu_model": s.gpu_model}


class UsageStore(Repository):
    """Metering, prices and budgets, on the store's engine."""


    # -- metering --------------------------------------------------------------------------
    def _add(self, conn: Connection, key: Mapping[str, Any], who: Mapping[str, Any],
             amounts: Amounts) -> None:
        make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        values = amounts.as_dict()
        stmt = make(t.usage_buckets).values(**key, **who, **values)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["run", "hour"],
            set_={f: t.usage_buckets.c[f] + stmt.excluded[f] for f in AMOUNTS}))

    def _meter(self, conn: Connection, run: Run, prices: Mapping[str, float]) -> float:
        c = t.usage_runs.c
        q = select(t.usage_runs).where(c.run == run.run)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).mappings().first()
        if row is None:
            since = run.started_at
            conn.execute(insert(t.usage_runs).values(
                run=run.run, kind=run.kind, owner_kind=run.owner_kind, owner=run.owner,
                user=run.user, labels=dict(run.labels), node=run.node,
                shape=_shape_json(run.shape), started_at=run.started_at,
                until=run.started_at, closed=False))
        elif row["closed"]:
            return 0.0
        else:
            since = float(row["until"])
        end = max(since, run.end)
        who = {"owner_kind": run.owner_kind, "owner": run.owner, "user": run.user,
               "labels": dict(run.labels), "node": run.node}
        for hour, seconds in hour_slices(since, end):
            self._add(conn, {"run": run.run, "hour": hour}, who,
                      interval_amounts(run.shape, seconds, prices))
        conn.execute(update(t.usage_runs).where(c.run == run.run).values(
            until=end, closed=run.closing, shape=_shape_json(run.shape), node=run.node))
        return end - since

    def meter(self, runs: Iterable[Run], buckets: Iterable[Bucket] = (),
              prices: Mapping[str, float] | None = None) -> float:
        """Meter ``runs`` up to their ``end`` and add ``buckets``, in one transaction.
        Returns the run-seconds added."""
        runs, buckets = list(runs), list(buckets)
        if not runs and not buckets:
            return 0.0
        prices = self.prices() if prices is None else prices
        added = 0.0
        with self._tx() as conn:
            for run in runs:
                added += self._meter(conn, run, prices)
            for b in buckets:
                self._add(conn, {"run": b.run, "hour": b.hour},
                          {"owner_kind": b.owner_kind, "owner": b.owner, "user": b.user,
                           "labels": dict(b.labels), "node": b.node}, b.amounts)
        return added

    def close(self, run: str, at: float) -> bool:
        """The run ended at ``at``: meter it there with the shape it was last billed for
        and close it. False when it was never metered or is closed already."""
        with self._tx() as conn:
            row = conn.execute(select(t.usage_runs).where(t.usage_runs.c.run == run)
                               ).mappings().first()
        if row is None or row["closed"]:
            return False
        self.meter([Run(run, row["kind"], row["owner_kind"], row["owner"], row["user"],
                        row["labels"] or {}, row["node"], float(row["started_at"]),
                        _shape(row["shape"]), at, closing=True)])
        return True

    def open_runs(self) -> list[dict[str, Any]]:
        c = t.usage_runs.c
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(
                select(t.usage_runs).where(c.closed.is_(False))).mappings()]

    def runs(self, owner: str | None = None) -> list[dict[str, Any]]:
        c = t.usage_runs.c
        q = select(t.usage_runs).order_by(c.started_at, c.run)
        if owner is not None:
            q = q.where(c.owner == owner)
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def buckets(self, since: float, until: float) -> list[dict[str, Any]]:
        """Every bucket whose hour starts in ``[since, until)``."""
        c = t.usage_buckets.c
        q = select(t.usage_buckets).where((c.hour >= since) & (c.hour < until)).order_by(
            c.hour, c.run)
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def delete_before(self, hour: float) -> int:
        """Forget buckets older than ``hour`` and runs closed before it (retention)."""
        with self._tx() as conn:
            n = conn.execute(delete(t.usage_buckets).where(t.usage_buckets.c.hour < hour)
                             ).rowcount or 0
            conn.execute(delete(t.usage_runs).where(t.usage_runs.c.closed.is_(True)
                                                    & (t.usage_runs.c.until < hour)))
        return int(n)

    # -- prices ----------------------------------------------------------------------------
    def prices(self) -> dict[str, float]:
        """The defaults, overridden by what was set."""
        out = dict(DEFAULT_PRICES)
        with self._tx() as conn:
            for r in conn.execute(select(t.prices.c.resource, t.prices.c.price)):
                out[r.resource] = float(r.price)
        return out

    def price_rows(self) -> dict[str, dict[str, Any]]:
        with self._tx() as conn:
            return {r["resource"]: dict(r) for r in conn.execute(select(t.prices)).mappings()}

    def set_price(self, resource: str, price: float, by: str | None, now: float) -> None:
        with self._tx() as conn:
            t.upsert(conn, t.prices, {"resource": resource},
                     {"price": price, "updated_at": now, "updated_by": by})

    def reset_price(self, resource: str) -> bool:
        with self._tx() as conn:
            n = conn.execute(delete(t.prices).where(t.prices.c.resource == resource)).rowcount
        return bool(n)

    # -- budgets ---------------------------------------------------------------------------
    def create_budget(self, spec: BudgetSpec, by: str | None, now: float) -> dict[str, Any]:
        try:
            with self._tx() as conn:
                conn.execute(insert(t.budgets).values(
                    name=spec.name, data=spec.model_dump(mode="json"), created_at=now,
                    created_by=by))
        except IntegrityError:
            raise Conflict(f"budget {spec.name!r} exists; delete it first or pick another "
                           "name") from None
        return self.get_budget(spec.name)

    def list_budgets(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            rows = conn.execute(select(t.budgets).order_by(t.budgets.c.name)).mappings().all()
        return [self._budget(r) for r in rows]

    @staticmethod
    def _budget(r: Any) -> dict[str, Any]:
        return {"spec": BudgetSpec.model_validate(r["data"]), "created_at": r["created_at"],
                "created_by": r["created_by"]}

    def get_budget(self, name: str) -> dict[str, Any]:
        with self._tx() as conn:
            r = conn.execute(select(t.budgets).where(t.budgets.c.name == name)
                             ).mappings().first()
        if r is None:
            raise NotFound(f"budget {name!r} does not exist; `leptonic budget list` shows "
                           "the budgets")
        return self._budget(r)

    def delete_budget(self, name: str) -> None:
        with self._tx() as conn:
            n = conn.execute(delete(t.budgets).where(t.budgets.c.name == name)).rowcount
            conn.execute(delete(t.budget_notices).where(t.budget_notices.c.budget == name))
        if not n:
            raise NotFound(f"budget {name!r} does not exist; `leptonic budget list` shows "
                           "the budgets")

    def notices(self, budget: str | None = None) -> list[dict[str, Any]]:
        c = t.budget_notices.c
        q = select(t.budget_notices).order_by(c.at)
        if budget is not None:
            q = q.where(c.budget == budget)
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def notify_budget(self, budget: str, month: str, threshold: float, spent: float,
                      now: float, notifications: Iterable[tuple[str, str, dict[str, Any]]]
                      ) -> bool:
        """Record that ``threshold`` of ``budget`` was reached in ``month`` and queue its
        notifications ``(dedup key, destination, payload)`` in the outbox, in one
        transaction; False (and nothing queued) when it was recorded before."""
        try:
            with self._tx() as conn:
                conn.execute(insert(t.budget_notices).values(
                    budget=budget, month=month, threshold=threshold, spent=spent, at=now))
                for key, destination, payload in notifications:
                    conn.execute(insert(t.alert_notifications).values(
                        dedup_key=key[:400], rule=f"budget:{budget}"[:64],
                        target=f"budget/{budget}", destination=destination,
                        status="pending", payload=payload, attempts=0, next_attempt_at=now,
                        created_at=now))
        except IntegrityError:
            return False
        return True
