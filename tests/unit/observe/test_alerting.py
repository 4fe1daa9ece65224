"""The alert engine and the notification dispatcher over a real (SQLite) store, with a
fake notifier and a fake clock: transitions notify once, deliveries are retried with
backoff, given up after the configured tries, and recorded as events."""

from __future__ import annotations

from typing import Any

import pytest

from leptonic.config.observe import ObserveSettings
from leptonic.core.observe import AlertRule
from leptonic.observe.alerts import AlertEngine, Dispatcher
from leptonic.observe.notify import (
    DeliveryError,
    backoff,
    build_payload,
    check_target,
    check_targets,
    redact,
)
from leptonic.store.observe import ObserveStore
from leptonic.store.store import Store

HOOK = "webhook:https://hooks.example.com/services/T000/B000/SECRETTOKEN?x=1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeNotifier:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.tries = 0

    async def send(self, destination: str, payload: dict[str, Any]) -> None:
        self.tries += 1
        if self.failures:
            self.failures -= 1
            raise DeliveryError(f"{redact(destination)}: HTTP 503")
        self.sent.append((destination, payload))

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(("target", "shown"), [
    (HOOK, "webhook:https://hooks.example.com/…"),
    ("slack:http://127.0.0.1:9000", "slack:http://127.0.0.1:9000"),
    ("email:ops@example.com", "email:ops@example.com"),
])
def test_redact_hides_paths_and_queries(target: str, shown: str) -> None:
    assert redact(check_target(target)) == shown


@pytest.mark.parametrize("bad", ["webhook:ftp://x", "pager:123", "email:not-an-address",
                                 "webhook:", "webhook:https:///nohost"])
def test_bad_targets_are_refused_without_echoing_secrets(bad: str) -> None:
    from leptonic.errors import InvalidInput
    with pytest.raises(InvalidInput) as info:
        check_target(bad)
    assert "SECRETTOKEN" not in info.value.detail
    with pytest.raises(InvalidInput, match="at most 10"):
        check_targets([HOOK] * 11)


def test_payload_is_slack_compatible() -> None:
    body = build_payload(rule="slow", target="deployment/echo", status="firing",
                         expr="p99_latency_ms > 500", severity="critical", value=812.5,
                         started_at=0.0, resolved_at=None, description="p99 too high",
                         dashboard_url="http://127.0.0.1:8080/ui/deployments/echo")
    assert body["text"].startswith(":rotating_light: [FIRING] slow on deployment/echo")
    assert "812.5" in body["text"]
    assert body["started_at"] == "1970-01-01T00:00:00+00:00"


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 2.0, 30.0) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def _engine(store: Store, ostore: ObserveStore, clock: Clock,
            settings: ObserveSettings) -> AlertEngine:
    return AlertEngine(store, ostore, settings, clock, dashboard_url="http://dash")


def test_a_rule_fires_after_for_then_resolves_and_notifies_each_move_once(
        store: Store, ostore: ObserveStore) -> None:
    clock, settings = Clock(), ObserveSettings(interval_s=10)
    ostore.create_rule(AlertRule(name="slow", deployment="echo", expr="p99_latency_ms > 500",
                                 for_s=30, notify=[HOOK, "email:ops@example.com"]))
    engine = _engine(store, ostore, clock, settings)

    def tick(p99: float | None, dt: float = 10) -> str:
        clock.now += dt
        engine.evaluate(clock.now, {"deployment/echo": {"p99_latency_ms": p99}})
        [inst] = ostore.states("slow")
        return inst.state

    assert [tick(800), tick(800), tick(800)] == ["pending", "pending", "pending"]
    assert tick(800) == "firing"
    assert [tick(900), tick(900)] == ["firing", "firing"], "no repeat while firing"
    assert tick(None) == "resolved", "no data any more: resolved"
    assert tick(100) == "resolved"
    rows = ostore.notifications("slow")
    assert sorted((r["payload"]["status"], r["destination"]) for r in rows) == [
        ("firing", "email:ops@example.com"), ("firing", HOOK),
        ("resolved", "email:ops@example.com"), ("resolved", HOOK)]
    reasons = [e.reason for e in store.list_events("deployment/echo")]
    assert reasons == ["AlertResolved", "AlertFiring"]
    # evaluating the same moment again (a restart) queues nothing new
    firing = next(r for r in rows if r["payload"]["status"] == "firing")
    assert not ostore.enqueue(firing["dedup_key"], "slow", "deployment/echo", HOOK, {},
                              clock.now)


def test_global_rules_follow_deployments_and_node_rules_nodes(
        store: Store, ostore: ObserveStore) -> None:
    clock, settings = Clock(), ObserveSettings()
    ostore.create_rule(AlertRule(name="errors", expr="error_rate > 5%"))
    ostore.create_rule(AlertRule(name="down", expr="node_up == 0"))
    engine = _engine(store, ostore, clock, settings)
    latest = {"deployment/a": {"error_rate": 0.5}, "deployment/b": {"error_rate": 0.0},
              "node/local": {"node_up": 0.0}}
    engine.evaluate(clock.now, latest)
    states = {(s.rule, s.target): s.state for s in ostore.states()}
    assert states == {("errors", "deployment/a"): "firing",
                      ("errors", "deployment/b"): "inactive",
                      ("down", "node/local"): "firing"}
    # deployment a is deleted while firing: its alert resolves and is then forgotten
    del latest["deployment/a"]
    clock.now += 10
    engine.evaluate(clock.now, latest)
    assert ("errors", "deployment/a", "resolved") in {
        (s.rule, s.target, s.state) for s in ostore.states()}
    clock.now += 10
    engine.evaluate(clock.now, latest)
    assert "deployment/a" not in {s.target for s in ostore.states()}


def test_window_functions_read_the_stored_samples(store: Store, ostore: ObserveStore) -> None:
    clock, settings = Clock(), ObserveSettings(interval_s=10)
    for i, restarts in enumerate([0, 0, 1, 3, 5]):
        ostore.add_samples(clock.now + i * 10, {"deployment/echo": {"restarts": restarts}})
    clock.now += 40
    ostore.create_rule(AlertRule(name="flapping", deployment="echo",
                                 expr="increase(restarts[1m]) > 3"))
    _engine(store, ostore, clock, settings).evaluate(
        clock.now, {"deployment/echo": {"restarts": 5.0}})
    [inst] = ostore.states("flapping")
    assert (inst.state, inst.value) == ("firing", 5.0)


async def test_dispatcher_retries_with_backoff_then_records_the_delivery(
        store: Store, ostore: ObserveStore) -> None:
    clock = Clock()
    settings = ObserveSettings(notify_attempts=4, notify_backoff_s=2, notify_backoff_max_s=60)
    notifier = FakeNotifier(failures=2)
    d = Dispatcher(store, ostore, settings, notifier, clock)   # type: ignore[arg-type]
    assert ostore.enqueue("k1", "slow", "deployment/echo", HOOK, {"status": "firing"},
                          clock.now)
    assert await d.deliver_due() == 1
    assert await d.next_due_in() == 2.0
    assert await d.deliver_due() == 0, "not due before its backoff"
    clock.now += 2
    await d.deliver_due()
    assert await d.next_due_in() == 4.0
    clock.now += 4
    await d.deliver_due()
    assert notifier.tries == 3
    assert len(notifier.sent) == 1
    [row] = ostore.notifications("slow")
    assert (row["status"], row["attempts"]) == ("sent", 3)
    [event] = store.list_events("deployment/echo")
    assert event.reason == "AlertNotified"
    assert "SECRETTOKEN" not in event.message
    assert "(try 3)" in event.message


async def test_dispatcher_gives_up_after_the_configured_tries(
        store: Store, ostore: ObserveStore) -> None:
    clock = Clock()
    settings = ObserveSettings(notify_attempts=2, notify_backoff_s=1)
    notifier = FakeNotifier(failures=99)
    d = Dispatcher(store, ostore, settings, notifier, clock)   # type: ignore[arg-type]
    ostore.enqueue("k1", "slow", "deployment/echo", HOOK, {"status": "resolved"}, clock.now)
    await d.deliver_due()
    clock.now += 1
    await d.deliver_due()
    clock.now += 100
    assert await d.deliver_due() == 0
    [row] = ostore.notifications("slow")
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"] == "webhook:https://hooks.example.com/…: HTTP 503"
    [event] = store.list_events("deployment/echo")
    assert (event.reason, event.kind) == ("AlertNotifyFailed", "Warning")
    assert "SECRETTOKEN" not in event.message
