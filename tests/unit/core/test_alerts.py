"""Alert expressions and the alert state machine, as tables."""

from __future__ import annotations

import pytest

from leptonic.core.alerts import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    MetricRef,
    Number,
    parse_duration,
    parse_expr,
    step,
)
from leptonic.errors import InvalidInput


@pytest.mark.parametrize(("text", "left", "op", "right", "scope"), [
    ("p99_latency_ms > 500", MetricRef("p99_latency_ms"), ">", Number(500), "deployment"),
    ("error_rate > 5%", MetricRef("error_rate"), ">", Number(0.05), "deployment"),
    ("p99_latency_ms >= 0.5s", MetricRef("p99_latency_ms"), ">=", Number(500), "deployment"),
    ("replicas_ready < replicas_desired", MetricRef("replicas_ready"), "<",
     MetricRef("replicas_desired"), "deployment"),
    ("increase(restarts[10m]) > 3", MetricRef("restarts", "increase", 600), ">", Number(3),
     "deployment"),
    ("avg(queue_depth[1m])>=100", MetricRef("queue_depth", "avg", 60), ">=", Number(100),
     "deployment"),
    ("node_up == 0", MetricRef("node_up"), "==", Number(0), "node"),
    ("  90 < node_cpu_percent ", Number(90), "<", MetricRef("node_cpu_percent"), "node"),
    ("accuracy < 0.9", MetricRef("accuracy"), "<", Number(0.9), "deployment"),
    ("f1 < 85%", MetricRef("f1"), "<", Number(0.85), "deployment"),
    ("drift_share > 0.5", MetricRef("drift_share"), ">", Number(0.5), "deployment"),
    ("psi(petal_width) > 0.25", MetricRef("psi:petal_width"), ">", Number(0.25),
     "deployment"),
    ('psi( "sepal length (cm)" ) >= 0.1', MetricRef("psi:sepal length (cm)"), ">=",
     Number(0.1), "deployment"),
])
def test_parse(text: str, left: object, op: str, right: object, scope: str) -> None:
    expr = parse_expr(text)
    assert (expr.left, expr.op, expr.right, expr.scope) == (left, op, right, scope)


@pytest.mark.parametrize(("text", "says"), [
    ("", "is needed"),
    ("p99_latency_ms", "must compare two things"),
    ("p99 > 3", "unknown metric 'p99'"),
    ("1 > 2", "compares no metric"),
    ("node_up > replicas_ready", "mixes node and deployment"),
    ("median(restarts[5m]) > 1", "unknown function 'median'"),
    ("increase(restarts[2d]) > 1", "between 1s and 24h"),
    ("error_rate > 5% and restarts > 1", "must compare two things"),
    ("error_rate > 5 # x", "cannot read"),
    ("error_rate >> 5", "must compare two things"),
    ("psi() > 0.25", "cannot read"),
    ("psi(a b) > 0.25", "cannot read"),
])
def test_parse_rejects_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_expr(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("2m", 120), ("1h", 3600), ("7d", 604800), ("250ms", 0.25), ("45", 45),
    (12, 12),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 weeks", "-1s", "m5", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_evaluate_compares_looked_up_values_and_never_fires_without_data() -> None:
    expr = parse_expr("replicas_ready < replicas_desired")
    values = {"replicas_ready": 1.0, "replicas_desired": 2.0}
    assert expr.evaluate(lambda ref: values.get(ref.name)) == (True, 1.0)
    values["replicas_ready"] = 2.0
    assert expr.evaluate(lambda ref: values.get(ref.name)) == (False, 2.0)
    assert parse_expr("p99_latency_ms > 1").evaluate(lambda ref: None) == (False, None)


# (previous state, condition holds, now, for_s) -> (state, notification)
@pytest.mark.parametrize(("prev", "holds", "now", "for_s", "state", "move"), [
    (None, False, 10, 60, INACTIVE, None),
    (None, True, 10, 60, PENDING, None),
    (None, True, 10, 0, FIRING, FIRING),
    (AlertState(PENDING, 10), True, 40, 60, PENDING, None),
    (AlertState(PENDING, 10), True, 70, 60, FIRING, FIRING),
    (AlertState(PENDING, 10), False, 40, 60, INACTIVE, None),
    (AlertState(FIRING, 70, fired_at=70), True, 80, 60, FIRING, None),
    (AlertState(FIRING, 70, fired_at=70), False, 90, 60, RESOLVED, RESOLVED),
    (AlertState(RESOLVED, 90, fired_at=70, resolved_at=90), False, 95, 60, RESOLVED, None),
    (AlertState(RESOLVED, 90, fired_at=70, resolved_at=90), True, 95, 60, PENDING, None),
])
def test_step(prev: AlertState | None, holds: bool, now: float, for_s: float, state: str,
              move: str | None) -> None:
    new, note = step(prev, holds, 1.0, now, for_s)
    assert (new.state, note) == (state, move)


def test_an_episode_keeps_when_it_fired_until_it_resolves() -> None:
    s, _ = step(None, True, 5.0, 100, 0)
    s, _ = step(s, True, 6.0, 110, 0)
    assert (s.fired_at, s.value) == (100, 6.0)
    s, note = step(s, False, 0.0, 120, 0)
    assert (note, s.fired_at, s.resolved_at) == (RESOLVED, 100, 120)
