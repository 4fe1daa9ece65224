"""Evaluate alert rules over the latest samples, and deliver their notifications.

:class:`AlertEngine` runs after every sample: for each rule and each of its targets it
evaluates the expression (``core.alerts``), steps the state, persists it, and on a move to
``firing`` or ``resolved`` records an event and queues one notification per target in the
outbox. The queue key names the rule, the target, the move and the episode (when it
fired), so the same move is never queued twice, even after a control-plane restart.

:class:`Dispatcher` delivers the outbox: each notification is tried until it is sent or
``notify_attempts`` tries have failed, waiting ``backoff`` (doubling) between tries; the
outcome is recorded as an event on the alert's target.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from leptonic.config.observe import ObserveSettings
from leptonic.core.alerts import (
    FIRING,
    INACTIVE,
    RESOLVED,
    AlertExpr,
    AlertState,
    MetricRef,
    parse_expr,
    step,
)
from leptonic.core.observe import AlertRule
from leptonic.errors import LeptonicError
from leptonic.observe.notify import DeliveryError, Notifier, backoff, build_payload, redact
from leptonic.observe.series import Sample, window_value

if TYPE_CHECKING:
    from leptonic.store.observe import ObserveStore
    from leptonic.store.store import Store

log = logging.getLogger(__name__)


def _fmt(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


class AlertEngine:
    def __init__(self, store: Store, ostore: ObserveStore, settings: ObserveSettings,
                 clock: Callable[[], float], dashboard_url: str | None = None) -> None:
        self.store = store
        self.ostore = ostore
        self.settings = settings
        self.clock = clock
        self.dashboard_url = dashboard_url
        self._exprs: dict[str, AlertExpr] = {}
        self.queued = asyncio.Event()       # set when a notification was queued

    def _expr(self, rule: AlertRule) -> AlertExpr | None:
        expr = self._exprs.get(rule.expr)
        if expr is None:
            try:
                expr = self._exprs[rule.expr] = parse_expr(rule.expr)
            except LeptonicError as exc:     # stored before a grammar change: skip it
                log.warning("alert rule %s cannot be evaluated: %s", rule.name, exc.detail)
                return None
        return expr

    @staticmethod
    def targets(rule: AlertRule, expr: AlertExpr, latest: dict[str, Sample]) -> list[str]:
        if expr.scope == "node":
            return sorted(s for s in latest if s.startswith("node/"))
        if rule.deployment is not None:
            return [f"deployment/{rule.deployment}"]
        return sorted(s for s in latest if s.startswith("deployment/"))

    def evaluate(self, now: float, latest: dict[str, Sample]) -> None:
        """One evaluation of every rule (sync: runs in a worker thread)."""
        rules = self.ostore.list_rules()
        states = {(s.rule, s.target): s for s in self.ostore.states()}
        live_rules = {r.name for r in rules}
        for rule in rules:
            expr = self._expr(rule)
            if expr is None:
                continue
            targets = self.targets(rule, expr, latest)
            known = {t for (r, t) in states if r == rule.name}
            for target in sorted(set(targets) | known):
                inst = states.get((rule.name, target))
                prev = None if inst is None else AlertState(
                    inst.state, inst.since, inst.value, inst.fired_at, inst.resolved_at)
                if target in targets:
                    holds, value = expr.evaluate(self._lookup(target, latest, now))
                else:                      # the deployment or node is gone
                    holds, value = False, None
                new, move = step(prev, holds, value, now, rule.for_s)
                if target not in targets and new.state in (INACTIVE, RESOLVED) and not move:
                    self.ostore.delete_state(rule.name, target)
                    continue
                self.ostore.put_state(rule.name, target, new, now)
                if move is not None:
                    self._moved(rule, expr, target, new, move, now)
        for (rname, target) in states:
            if rname not in live_rules:
                self.ostore.delete_state(rname, target)

    def _lookup(self, target: str, latest: dict[str, Sample], now: float
                ) -> Callable[[MetricRef], float | None]:
        sample = latest.get(target, {})
        cache: dict[float, list[tuple[float, dict[str, Any]]]] = {}

        def lookup(ref: MetricRef) -> float | None:
            if ref.func is None:
                return sample.get(ref.name)
            rows = cache.get(ref.window_s)
            if rows is None:
                rows = cache[ref.window_s] = self.ostore.samples(
                    target, 0, now - ref.window_s - self.settings.interval_s / 2, now)
            return window_value(ref.func, [(ts, d.get(ref.name)) for ts, d in rows])
        return lookup

    def _moved(self, rule: AlertRule, expr: AlertExpr, target: str, state: AlertState,
               move: str, now: float) -> None:
        if move == FIRING:
            self.store.add_event(target, "AlertFiring",
                                 f"alert {rule.name} is firing: {expr.text} "
                                 f"(value {_fmt(state.value)})", kind="Warning", time=now)
        else:
            self.store.add_event(target, "AlertResolved",
                                 f"alert {rule.name} resolved: {expr.text} "
                                 f"(value {_fmt(state.value)})", time=now)
        name = target.partition("/")[2]
        dashboard = (f"{self.dashboard_url}/ui/deployments/{name}"
                     if self.dashboard_url and target.startswith("deployment/") else
                     self.dashboard_url)
        payload = build_payload(rule=rule.name, target=target, status=move, expr=expr.text,
                                severity=rule.severity, value=state.value,
                                started_at=state.fired_at, resolved_at=state.resolved_at,
                                description=rule.description, dashboard_url=dashboard)
        for destination in rule.notify:
            digest = hashlib.sha256(destination.encode()).hexdigest()[:16]
            key = f"{rule.name}|{target}|{move}|{state.fired_at}|{digest}"
            if self.ostore.enqueue(key, rule.name, target, destination, payload, now):
                self.queued.set()


class Dispatcher:
    """Delivers queued notifications with retries and backoff."""

    def __init__(self, store: Store, ostore: ObserveStore, settings: ObserveSettings,
                 notifier: Notifier, clock: Callable[[], float]) -> None:
        self.store = store
        self.ostore = ostore
        self.settings = settings
        self.notifier = notifier
        self.clock = clock

    async def deliver_due(self) -> int:
        """Try every notification that is due now; returns how many were tried."""
        due = await asyncio.to_thread(self.ostore.due_notifications, self.clock())
        await asyncio.gather(*(self._deliver(row) for row in due))
        return len(due)

    async def _deliver(self, row: dict[str, Any]) -> None:
        s = self.settings
        attempts = int(row["attempts"]) + 1
        channel = redact(row["destination"])
        what = f"{row['payload'].get('status', '?')} notification of alert {row['rule']}"
        try:
            await self.notifier.send(row["destination"], row["payload"])
        except DeliveryError as exc:
            now = self.clock()
            if attempts >= s.notify_attempts:
                await asyncio.to_thread(self.ostore.notification_failed, row["id"], attempts,
                                        str(exc), None)
                await asyncio.to_thread(
                    self.store.add_event, row["target"], "AlertNotifyFailed",
                    f"gave up on the {what} to {channel} after {attempts} tries: {exc}",
                    kind="Warning", time=now)
                log.warning("gave up on the %s to %s: %s", what, channel, exc)
                return
            delay = backoff(attempts, s.notify_backoff_s, s.notify_backoff_max_s)
            await asyncio.to_thread(self.ostore.notification_failed, row["id"], attempts,
                                    str(exc), now + delay)
            log.info("the %s to %s failed (%s); try %d in %.1fs", what, channel, exc,
                     attempts + 1, delay)
            return
        except Exception as exc:     # a bug in a sender must not stop the others
            log.exception("sending the %s to %s failed", what, channel)
            await asyncio.to_thread(self.ostore.notification_failed, row["id"], attempts,
                                    type(exc).__name__, None)
            return
        now = self.clock()
        await asyncio.to_thread(self.ostore.notification_sent, row["id"], attempts, now)
        await asyncio.to_thread(
            self.store.add_event, row["target"], "AlertNotified",
            f"sent the {what} to {channel}" + (f" (try {attempts})" if attempts > 1 else ""),
            time=now)

    async def next_due_in(self) -> float | None:
        at = await asyncio.to_thread(self.ostore.next_notification_at)
        return None if at is None else max(0.0, at - self.clock())
