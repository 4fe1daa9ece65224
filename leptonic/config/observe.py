"""How often the platform samples, evaluates and rotates, and how much it keeps.

Defaults suit a laptop or a small cluster; every field can be set from the environment of
``leptonic up`` (``LEPTONIC_METRICS_INTERVAL=2s`` ...), which is also how the end-to-end
tests make the loops fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from leptonic.core.alerts import parse_duration
from leptonic.errors import InvalidInput


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


@dataclass(frozen=True)
class Tier:
    """Points of ``resolution_s`` seconds kept for ``retention_s`` seconds."""

    resolution_s: int
    retention_s: float


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)   # never logged
    sender: str = "leptonic@localhost"
    starttls: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class ObserveSettings:
    #: sampling and alert evaluation period; also the resolution of the raw series
    interval_s: float = 10.0
    #: raw samples are kept this long, then only the downsampled tiers
    raw_retention_s: float = 2 * 3600.0
    tiers: tuple[Tier, ...] = (Tier(60, 24 * 3600.0), Tier(600, 7 * 86400.0))
    #: replica /metrics scrape timeout
    scrape_timeout_s: float = 2.0
    #: a node whose heartbeat is older than this is down
    node_down_after_s: float = 30.0
    #: notification delivery: attempts, first backoff (doubling), longest backoff
    notify_attempts: int = 6
    notify_backoff_s: float = 2.0
    notify_backoff_max_s: float = 300.0
    notify_timeout_s: float = 10.0
    #: log files: rotate a replica log above this size, keep this many rotated files,
    #: cap the whole log directory, check this often
    log_max_bytes: int = 10 << 20
    log_backups: int = 3
    log_dir_max_bytes: int = 1 << 30
    log_check_s: float = 10.0
    #: live model figures (accuracy, F1, drift) in the series cover the answers this old
    model_window_s: float = 3600.0
    #: metering of replica-, attempt- and resource-seconds into usage and cost
    #: (docs/USAGE.md); off: nothing is metered (the benchmark's baseline)
    metering: bool = True
    #: hourly usage buckets are kept this long
    usage_retention_s: float = 400 * 86400.0
    #: budgets are checked against the month's spend this often (0: every cycle)
    budget_check_s: float = 60.0
    smtp: SmtpSettings = field(default_factory=SmtpSettings)

    @property
    def max_points_per_series(self) -> int:
        """The most rows one series can hold: the bound the retention test checks."""
        raw = int(self.raw_retention_s / self.interval_s) + 2
        return raw + sum(int(t.retention_s / t.resolution_s) + 2 for t in self.tiers)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ObserveSettings:
        """Defaults overridden by ``LEPTONIC_*`` variables (see docs/OBSERVABILITY.md)."""
        env = os.environ if env is None else env
        kw: dict[str, object] = {}
        durations = {"LEPTONIC_METRICS_INTERVAL": "interval_s",
                     "LEPTONIC_METRICS_RAW_RETENTION": "raw_retention_s",
                     "LEPTONIC_NODE_DOWN_AFTER": "node_down_after_s",
                     "LEPTONIC_NOTIFY_BACKOFF": "notify_backoff_s",
                     "LEPTONIC_NOTIFY_BACKOFF_MAX": "notify_backoff_max_s",
                     "LEPTONIC_LOG_CHECK_INTERVAL": "log_check_s",
                     "LEPTONIC_MODEL_WINDOW": "model_window_s",
                     "LEPTONIC_USAGE_RETENTION": "usage_retention_s",
                     "LEPTONIC_BUDGET_CHECK_INTERVAL": "budget_check_s"}
        for var, name in durations.items():
            if env.get(var):
                kw[name] = parse_duration(env[var], var)
        if kw.get("interval_s") == 0:
            raise InvalidInput("LEPTONIC_METRICS_INTERVAL must be above 0")
        sizes = {"LEPTONIC_LOG_MAX_BYTES": "log_max_bytes",
                 "LEPTONIC_LOG_DIR_MAX_BYTES": "log_dir_max_bytes"}
        for var, name in sizes.items():
            if env.get(var):
                kw[name] = _size(env[var])
        if env.get("LEPTONIC_LOG_BACKUPS"):
            kw["log_backups"] = int(env["LEPTONIC_LOG_BACKUPS"])
        if env.get("LEPTONIC_NOTIFY_ATTEMPTS"):
            kw["notify_attempts"] = int(env["LEPTONIC_NOTIFY_ATTEMPTS"])
        if env.get("LEPTONIC_METERING"):
            kw["metering"] = env["LEPTONIC_METERING"].lower() not in ("0", "false", "no", "off")
        if env.get("LEPTONIC_METRICS_TIERS"):     # "60s:1d,10m:7d"
            tiers = []
            for part in env["LEPTONIC_METRICS_TIERS"].split(","):
                res, _, keep = part.partition(":")
                tiers.append(Tier(int(parse_duration(res)), parse_duration(keep)))
            kw["tiers"] = tuple(tiers)
        if env.get("LEPTONIC_SMTP_HOST"):
            kw["smtp"] = SmtpSettings(
                host=env["LEPTONIC_SMTP_HOST"], port=int(env.get("LEPTONIC_SMTP_PORT", "25")),
                user=env.get("LEPTONIC_SMTP_USER") or None,
                password=env.get("LEPTONIC_SMTP_PASSWORD") or None,
                sender=env.get("LEPTONIC_SMTP_FROM", "leptonic@localhost"),
                starttls=env.get("LEPTONIC_SMTP_STARTTLS", "").lower() in ("1", "true", "yes"))
        return cls(**kw)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """The settings without secrets (for logs and the status page)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "smtp"}
        out["smtp_host"] = self.smtp.host
        return out
