"""Rows of the observability tables (migration 0003): samples, alert rules and states,
and the notification outbox. Same rules as ``Store``: synchronous, one
transaction per call, missing rows raise ``NotFound``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from leptonic.core.alerts import AlertState
from leptonic.core.observe import AlertInstance, AlertRule
from leptonic.errors import Conflict, NotFound
from leptonic.store import tables as t
from leptonic.store.base import Repository


class ObserveStore(Repository):
    """The observability half of the store, on the same engine."""


    # -- samples --------------------------------------------------------------------------
    def add_samples(self, ts: float, samples: dict[str, dict[str, Any]],
                    resolution: int = 0) -> None:
        if not samples:
            return
        rows = [{"series": s, "resolution": resolution, "ts": ts, "data": data}
                for s, data in samples.items()]
        with self._tx() as conn:
            conn.execute(insert(t.metric_samples), rows)

    def add_rollups(self, resolution: int,
                    rows: list[tuple[str, float, dict[str, Any]]]) -> None:
        if not rows:
            return
        with self._tx() as conn:
            for series, ts, _data in rows:     # a re-run after a crash replaces its bucket
                conn.execute(delete(t.metric_samples).where(
                    (t.metric_samples.c.series == series)
                    & (t.metric_samples.c.resolution == resolution)
                    & (t.metric_samples.c.ts == ts)))
            conn.execute(insert(t.metric_samples),
                         [{"series": s, "resolution": resolution, "ts": ts, "data": d}
                          for s, ts, d in rows])

    def samples(self, series: str, resolution: int, since: float, until: float
                ) -> list[tuple[float, dict[str, Any]]]:
        c = t.metric_samples.c
        q = (select(c.ts, c.data).where((c.series == series) & (c.resolution == resolution)
                                        & (c.ts >= since) & (c.ts <= until)).order_by(c.ts))
        with self._tx() as conn:
            return [(float(r.ts), dict(r.data)) for r in conn.execute(q)]

    def samples_between(self, resolution: int, since: float, until: float
                        ) -> list[tuple[str, float, dict[str, Any]]]:
        """Every series' rows of one resolution with ``since <= ts < until``."""
        c = t.metric_samples.c
        q = (select(c.series, c.ts, c.data)
             .where((c.resolution == resolution) & (c.ts >= since) & (c.ts < until))
             .order_by(c.series, c.ts))
        with self._tx() as conn:
            return [(r.series, float(r.ts), dict(r.data)) for r in conn.execute(q)]

    def last_sample_ts(self, resolution: int) -> float | None:
        c = t.metric_samples.c
        with self._tx() as conn:
            v = conn.execute(select(func.max(c.ts)).where(c.resolution == resolution)).scalar()
        return None if v is None else float(v)

    def delete_samples_before(self, resolution: int, before: float) -> int:
        c = t.metric_samples.c
        with self._tx() as conn:
            res = conn.execute(delete(t.metric_samples)
                               .where((c.resolution == resolution) & (c.ts < before)))
            return int(res.rowcount or 0)

    def count_samples(self, series: str | None = None) -> int:
        q = select(func.count()).select_from(t.metric_samples)
        if series is not None:
            q = q.where(t.metric_samples.c.series == series)
        with self._tx() as conn:
            return int(conn.execute(q).scalar_one())

    def series_names(self) -> list[str]:
        with self._tx() as conn:
            return list(conn.execute(select(t.metric_samples.c.series).distinct()
                                     .order_by(t.metric_samples.c.series)).scalars())

    # -- alert rules ----------------------------------------------------------------------
    @staticmethod
    def _rule(row: Any) -> AlertRule:
        return AlertRule(name=row.name, deployment=row.deployment, expr=row.expr,
                         for_s=row.for_s, severity=row.severity, notify=list(row.notify),
                         description=row.description, created_at=row.created_at)

    def create_rule(self, rule: AlertRule) -> AlertRule:
        try:
            with self._tx() as conn:
                conn.execute(insert(t.alert_rules).values(**rule.model_dump()))
        except IntegrityError as exc:
            raise Conflict(f"alert rule {rule.name!r} already exists; delete it first or "
                           "choose another --name") from exc
        return rule

    def list_rules(self) -> list[AlertRule]:
        with self._tx() as conn:
            rows = conn.execute(select(t.alert_rules).order_by(t.alert_rules.c.name)).all()
        return [self._rule(r) for r in rows]

    def get_rule(self, name: str) -> AlertRule:
        with self._tx() as conn:
            row = conn.execute(select(t.alert_rules)
                               .where(t.alert_rules.c.name == name)).first()
        if row is None:
            raise NotFound(f"alert rule {name!r} does not exist; `leptonic alert list` "
                           "shows the rules")
        return self._rule(row)

    def delete_rule(self, name: str) -> None:
        """Delete a rule, its states and its undelivered notifications."""
        with self._tx() as conn:
            res = conn.execute(delete(t.alert_rules).where(t.alert_rules.c.name == name))
            if res.rowcount == 0:
                raise NotFound(f"alert rule {name!r} does not exist")
            conn.execute(delete(t.alert_states).where(t.alert_states.c.rule == name))
            conn.execute(delete(t.alert_notifications).where(
                (t.alert_notifications.c.rule == name)
                & (t.alert_notifications.c.status == "pending")))

    # -- alert states ---------------------------------------------------------------------
    def states(self, rule: str | None = None) -> list[AlertInstance]:
        q = select(t.alert_states).order_by(t.alert_states.c.rule, t.alert_states.c.target)
        if rule is not None:
            q = q.where(t.alert_states.c.rule == rule)
        with self._tx() as conn:
            rows = conn.execute(q).all()
        return [AlertInstance(rule=r.rule, target=r.target, state=r.state, since=r.since,
                              value=r.value, fired_at=r.fired_at, resolved_at=r.resolved_at,
                              evaluated_at=r.evaluated_at) for r in rows]

    def put_state(self, rule: str, target: str, state: AlertState, now: float) -> None:
        values = {"state": state.state, "since": state.since, "value": state.value,
                  "fired_at": state.fired_at, "resolved_at": state.resolved_at,
                  "evaluated_at": now}
        with self._tx() as conn:
            t.upsert(conn, t.alert_states, {"rule": rule, "target": target}, values)

    def delete_state(self, rule: str, target: str) -> None:
        c = t.alert_states.c
        with self._tx() as conn:
            conn.execute(delete(t.alert_states).where((c.rule == rule) & (c.target == target)))

    # -- notification outbox --------------------------------------------------------------
    def enqueue(self, dedup_key: str, rule: str, target: str, destination: str,
                payload: dict[str, Any], now: float) -> bool:
        """Queue one notification; False when this very one was queued before."""
        try:
            with self._tx() as conn:
                conn.execute(insert(t.alert_notifications).values(
                    dedup_key=dedup_key[:400], rule=rule, target=target,
                    destination=destination, status="pending", payload=payload, attempts=0,
                    next_attempt_at=now, created_at=now))
        except IntegrityError:
            return False
        return True

    def due_notifications(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        c = t.alert_notifications.c
        q = (select(t.alert_notifications)
             .where((c.status == "pending") & (c.next_attempt_at <= now))
             .order_by(c.next_attempt_at, c.id).limit(limit))
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def next_notification_at(self) -> float | None:
        c = t.alert_notifications.c
        with self._tx() as conn:
            v = conn.execute(select(func.min(c.next_attempt_at))
                             .where(c.status == "pending")).scalar()
        return None if v is None else float(v)

    def notification_sent(self, nid: int, attempts: int, now: float) -> None:
        with self._tx() as conn:
            conn.execute(update(t.alert_notifications).where(t.alert_notifications.c.id == nid)
                         .values(status="sent", attempts=attempts, sent_at=now,
                                 last_error=None))

    def notification_failed(self, nid: int, attempts: int, error: str,
                            retry_at: float | None) -> None:
        """Record a failed attempt: retried at ``retry_at``, or given up when None."""
        values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000]}
        if retry_at is None:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = retry_at
        with self._tx() as conn:
            conn.execute(update(t.alert_notifications)
                         .where(t.alert_notifications.c.id == nid).values(values))

    def notifications(self, rule: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        c = t.alert_notifications.c
        q = select(t.alert_notifications).order_by(c.id.desc()).limit(limit)
        if rule is not None:
            q = q.where(c.rule == rule)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def prune_notifications(self, before: float) -> int:
        """Forget delivered or abandoned notifications older than ``before``."""
        c = t.alert_notifications.c
        with self._tx() as conn:
            res = conn.execute(delete(t.alert_notifications)
                               .where((c.status != "pending") & (c.created_at < before)))
            return int(res.rowcount or 0)
