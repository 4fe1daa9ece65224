"""The observability objects the API serves and the client parses."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AlertRule(BaseModel):
    """A rule as stored. ``notify`` holds the clear targets; the API shows them redacted."""

    name: str
    deployment: str | None = None      # None: every deployment (or every node)
    expr: str
    for_s: float = 0.0
    severity: str = "warning"          # "info" | "warning" | "critical"
    notify: list[str] = Field(default_factory=list)
    description: str = ""
    created_at: float = 0.0


class AlertInstance(BaseModel):
    """One rule's state for one target (``deployment/echo``, ``node/local``)."""

    rule: str
    target: str
    state: str                         # inactive | pending | firing | resolved
    since: float
    value: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    evaluated_at: float = 0.0


class Notification(BaseModel):
    """One notification of one alert transition to one target (redacted)."""

    id: int
    rule: str
    target: str
    channel: str                       # redacted: "webhook:http://host:port/…"
    event: str                         # "firing" | "resolved"
    status: str                        # pending | sent | failed
    attempts: int
    last_error: str | None = None
    created_at: float
    sent_at: float | None = None


class AlertView(BaseModel):
    """A rule with its current instances, as ``GET /alerts`` shows it."""

    name: str
    deployment: str | None
    expr: str
    for_s: float
    severity: str
    notify: list[str]                  # redacted
    description: str
    created_at: float
    scope: str                         # "deployment" | "node"
    instances: list[AlertInstance] = Field(default_factory=list)


class SeriesResult(BaseModel):
    """Points of one series, column-wise (what charting libraries take)."""

    series: str
    resolution_s: int                  # 0 = raw samples (one every interval)
    interval_s: float
    since: float
    until: float
    metrics: list[str]
    t: list[float]
    values: dict[str, list[float | None]]
