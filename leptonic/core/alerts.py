"""Alert rules, pure: parse an expression, evaluate it over looked-up values, step its state.

An expression compares two operands::

    p99_latency_ms > 500                   a metric against a number
    error_rate > 5%                        '%' divides by 100; 'ms' and 's' scale latencies
    replicas_ready < replicas_desired      two metrics
    increase(restarts[10m]) > 3            a function of a metric over a window
    avg(queue_depth[1m]) >= 100            functions: avg, max, min, increase
    node_up == 0                           node metrics make a rule per node

A rule's instance for one target (a deployment or a node) moves
``inactive -> pending -> firing -> resolved``: the condition must hold for ``for_s``
seconds before it fires (``for_s`` 0 fires at once), and a firing alert whose condition
no longer holds is resolved. Only the moves into ``firing`` and ``resolved`` notify.
Time comes in as ``now``; nothing here reads a clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from leptonic.errors import InvalidInput

#: metrics of one deployment a rule can use, with what they mean
DEPLOYMENT_METRICS: dict[str, str] = {
    "requests_per_s": "requests answered by the gateway per second",
    "errors_per_s": "5xx responses per second",
    "error_rate": "share of responses that were 5xx (0..1; write 5% or 0.05)",
    "p50_latency_ms": "median gateway-to-replica latency, ms",
    "p90_latency_ms": "90th percentile latency, ms",
    "p99_latency_ms": "99th percentile latency, ms",
    "in_flight": "requests being proxied now",
    "queue_depth": "requests waiting in the replicas' batch queues",
    "replicas_ready": "ready replicas",
    "replicas_desired": "replicas the deployment aims for (the autoscaler's count when it "
                        "autoscales)",
    "restarts": "replica restarts since the deployment was created (a counter)",
    "cpu_percent": "CPU of all replicas, percent of one core",
    "memory_mb": "resident memory of all replicas, MiB",
    "power_watts": "power attributed to the replicas (their share of their nodes'), W",
    "forecast_rps": "request rate the predictive autoscaler expects by a new replica's start",
    "energy_joules": "energy attributed to the replicas so far, J (a running total)",
    # a deployment of a registered model (--model), over the live window
    "accuracy": "live accuracy of the answers whose truth came back (0..1)",
    "f1": "live macro F1 of the answers whose truth came back (0..1)",
    "drift_share": "share of the model's features that drifted from its reference (0..1)",
    "labelled": "answers with their truth back, in the window",
    "predictions": "answers sampled for monitoring, in the window",
    "mae": "live mean absolute error of a regressor",
    "rmse": "live root mean squared error of a regressor",
    "r2": "live R2 of a regressor",
}
#: ``psi(FEATURE)``: the PSI of one feature of a model deployment (0.1 moderate, 0.25 major)
PSI_PREFIX = "psi:"
#: metrics of one node a rule can use
NODE_METRICS: dict[str, str] = {
    "node_up": "1 while the node sends heartbeats, 0 once it stopped (node down)",
    "node_cpu_percent": "CPU utilisation of the node, percent",
    "node_memory_percent": "memory utilisation of the node, percent",
    "node_power_watts": "power the node draws (its model at its allocation, or RAPL), W",
    "node_energy_joules": "energy the node drew so far, J (a running total)",
}
FUNCTIONS = ("avg", "max", "min", "increase")
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
MAX_WINDOW_S = 24 * 3600.0

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TOKEN_RE = re.compile(r"""
    \s*(?:
      (?P<cmp>>=|<=|==|!=|>|<)
    | psi\(\s*(?:"(?P<qfeat>[^"]{1,200})"|(?P<feat>[A-Za-z_][A-Za-z0-9_.\-]*))\s*\)
    | (?P<func>[a-z]+)\(\s*(?P<fmetric>[a-z_0-9]+)\s*\[\s*(?P<window>[^\]]+)\]\s*\)
    | (?P<number>-?\d+(?:\.\d+)?)\s*(?P<unit>%|ms|s)?
    | (?P<metric>[a-z_][a-z_0-9]*)
    )\s*""", re.VERBOSE)


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """``"90s"``, ``"2m"``, ``"1h"``, ``"7d"``, ``"250ms"`` or plain seconds -> seconds."""
    if isinstance(text, int | float):
        if text < 0 or math.isnan(text):
            raise InvalidInput(f"invalid {what} {text!r}: must be >= 0 seconds")
        return float(text)
    m = _DURATION_RE.match(text)
    if m is None:
        raise InvalidInput(f"invalid {what} {text!r}: write a number with a unit, "
                           "e.g. 30s, 2m, 1h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class Number:
    value: float

    def __str__(self) -> str:
        return f"{self.value:g}"


@dataclass(frozen=True)
class MetricRef:
    name: str
    func: str | None = None         # avg|max|min|increase over ``window_s``; None: latest
    window_s: float = 0.0

    def __str__(self) -> str:
        if self.func is None:
            return self.name
        return f"{self.func}({self.name}[{self.window_s:g}s])"


Operand = Number | MetricRef
#: lookup(metric) -> its value for one target, or None when there is no data
Lookup = Callable[[MetricRef], float | None]


@dataclass(frozen=True)
class AlertExpr:
    left: Operand
    op: str
    right: Operand
    scope: str                      # "deployment" or "node"
    text: str

    def metrics(self) -> list[MetricRef]:
        return [o for o in (self.left, self.right) if isinstance(o, MetricRef)]

    def evaluate(self, lookup: Lookup) -> tuple[bool, float | None]:
        """(condition holds, the value of the first metric). No data never fires."""
        left = _value(self.left, lookup)
        right = _value(self.right, lookup)
        shown = left if isinstance(self.left, MetricRef) else right
        if left is None or right is None or math.isnan(left) or math.isnan(right):
            return False, shown
        return COMPARATORS[self.op](left, right), shown


def _value(operand: Operand, lookup: Lookup) -> float | None:
    if isinstance(operand, Number):
        return operand.value
    return lookup(operand)


def _operand(match: re.Match[str], text: str) -> Operand:
    feature = match.group("qfeat") or match.group("feat")
    if feature is not None:
        return MetricRef(PSI_PREFIX + feature)
    if match.group("number") is not None:
        value = float(match.group("number"))
        unit = match.group("unit")
        if unit == "%":
            value /= 100.0
        elif unit == "s":
            value *= 1000.0           # latencies are in ms
        return Number(value)
    name = match.group("metric") or match.group("fmetric")
    if name not in DEPLOYMENT_METRICS and name not in NODE_METRICS:
        raise InvalidInput(
            f"unknown metric {name!r} in alert expression {text!r}; metrics are: "
            + ", ".join([*DEPLOYMENT_METRICS, *NODE_METRICS]))
    func = match.group("func")
    if func is None:
        return MetricRef(name)
    if func not in FUNCTIONS:
        raise InvalidInput(f"unknown function {func!r} in alert expression {text!r}; "
                           f"functions are: {', '.join(FUNCTIONS)}")
    window = parse_duration(match.group("window"), "window")
    if not 0 < window <= MAX_WINDOW_S:
        raise InvalidInput(f"the window of {func}({name}[...]) must be between 1s and 24h")
    return MetricRef(name, func, window)


def parse_expr(text: str) -> AlertExpr:
    """Parse ``OPERAND CMP OPERAND``; a clear InvalidInput says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("an alert expression is needed, e.g. 'p99_latency_ms > 500'")
    if len(text) > 500:
        raise InvalidInput("an alert expression is at most 500 characters")
    tokens: list[re.Match[str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidInput(f"cannot read alert expression {text!r} at "
                               f"{text[pos:pos + 20]!r}; write e.g. 'error_rate > 5%'")
        tokens.append(m)
        pos = m.end()
    shape = ["cmp" if t.group("cmp") else "operand" for t in tokens]
    if shape != ["operand", "cmp", "operand"]:
        raise InvalidInput(f"alert expression {text!r} must compare two things, "
                           "e.g. 'p99_latency_ms > 500' or 'replicas_ready < replicas_desired'")
    left, right = _operand(tokens[0], text), _operand(tokens[2], text)
    refs = [o for o in (left, right) if isinstance(o, MetricRef)]
    if not refs:
        raise InvalidInput(f"alert expression {text!r} compares no metric")
    node = {r.name in NODE_METRICS for r in refs}
    if len(node) > 1:
        raise InvalidInput(f"alert expression {text!r} mixes node and deployment metrics")
    return AlertExpr(left, tokens[1].group("cmp"), right,
                     "node" if node == {True} else "deployment", text.strip())


# -- state -------------------------------------------------------------------------------

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"


@dataclass(frozen=True)
class AlertState:
    """One rule's state for one target."""

    state: str = INACTIVE
    since: float = 0.0               # when it entered this state
    value: float | None = None
    fired_at: float | None = None    # start of the current (or last) firing episode
    resolved_at: float | None = None


def step(prev: AlertState | None, holds: bool, value: float | None, now: float,
         for_s: float) -> tuple[AlertState, str | None]:
    """The next state, and ``"firing"``/``"resolved"`` when that move must notify."""
    cur = prev or AlertState(since=now)
    if cur.state == FIRING:
        if holds:
            return replace(cur, value=value), None
        return AlertState(RESOLVED, now, value, cur.fired_at, now), RESOLVED
    if not holds:
        if cur.state == PENDING:
            return AlertState(INACTIVE, now, value, cur.fired_at, cur.resolved_at), None
        return replace(cur, value=value), None
    if cur.state == PENDING:
        if now - cur.since >= for_s:
            return AlertState(FIRING, now, value, now, None), FIRING
        return replace(cur, value=value), None
    # inactive or resolved, and the condition holds
    if for_s <= 0:
        return AlertState(FIRING, now, value, now, None), FIRING
    return AlertState(PENDING, now, value, cur.fired_at, cur.resolved_at), None
