"""Usage, prices and budgets as pure functions: what one metered interval of a replica or
job attempt costs, how intervals fall into hours and months, how usage rows add up by
deployment, job, user or label, and which budget thresholds a month's spend has crossed.

Cost follows OpenCost's allocation: each interval is billed at ``max(request, usage)`` of
each resource (cores, GiB of memory, GPUs) times the seconds times the resource's price,
so a replica that asks for nothing but burns two cores pays for two, and one that holds a
GPU pays for it whether it computes or not. Node capacity that no replica or attempt holds
is *idle* cost, reported beside the allocated cost and never inside it. Prices are per
second (per kWh for energy); a price change applies from the moment it is made, as a
bill would: what was already metered keeps the price it was metered at.

Times are Unix seconds and come in as values; hours and months are UTC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leptonic.errors import InvalidInput

HOUR_S = 3600.0
GIB_MB = 1024.0
JOULES_PER_KWH = 3.6e6

#: Default prices (USD). CPU, memory and a GPU of no priced model are OpenCost's defaults
#: for a cluster without a cloud bill (opencost configs/default.json: CPU 0.031611 per
#: core-hour, RAM 0.004237 per GiB-hour, GPU 0.95 per GPU-hour); the GPU models are
#: Replicate's per-second list prices of 2025 (T4 $0.000225/s, L40S $0.000975/s,
#: A100 80GB $0.001400/s, H100 $0.001525/s). Energy is 0: a compute price already pays
#: for the power; set a kWh price where power is billed apart (on premises).
DEFAULT_PRICES: Mapping[str, float] = {
    "cpu": 0.031611 / HOUR_S,          # per core-second
    "memory": 0.004237 / HOUR_S,       # per GiB-second
    "gpu": 0.95 / HOUR_S,              # per GPU-second, a model without its own price
    "gpu:T4": 0.000225,
    "gpu:L40S": 0.000975,
    "gpu:A100": 0.001400,
    "gpu:H100": 0.001525,
    "energy": 0.0,                     # per kWh
}
UNITS = {"cpu": "core-second", "memory": "GiB-second", "gpu": "GPU-second",
         "energy": "kWh"}
_RESOURCE = re.compile(r"^(cpu|memory|energy|gpu(:[A-Za-z0-9][A-Za-z0-9._-]{0,39})?)$")
MAX_PRICE = 1e6


def check_resource(name: str) -> str:
    """A priced resource's name: cpu, memory, energy, gpu or gpu:MODEL."""
    if not _RESOURCE.match(name):
        raise InvalidInput(f"unknown resource {name!r}: prices are for cpu (per core-second), "
                           "memory (per GiB-second), gpu or gpu:MODEL (per GPU-second, e.g. "
                           "gpu:A100) and energy (per kWh)")
    if name.startswith("gpu:"):
        return "gpu:" + name[4:].upper()
    return name


def check_price(name: str, value: float) -> float:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise InvalidInput(f"price of {name} is {value!r}: a price must be a number >= 0")
    if value > MAX_PRICE:
        raise InvalidInput(f"price of {name} is {value:g}: more than {MAX_PRICE:g} a unit is "
                           "surely a mistake")
    return float(value)


def money(v: object) -> str:
    """USD for people: ``$0.0000034``, ``$12.3456``, ``$1,234.57``; ``-`` for no figure."""
    if not isinstance(v, int | float):
        return "-"
    if 0 < abs(v) < 0.01:
        return f"${v:.2g}"
    return f"${v:,.4f}" if abs(v) < 100 else f"${v:,.2f}"


def unit_of(resource: str) -> str:
    return UNITS[resource.partition(":")[0]]


def gpu_price(prices: Mapping[str, float], model: str | None) -> float:
    """The price of one GPU-second of ``model``: its own (``gpu:A100`` matches
    ``A100-SXM4-80GB``, the longest priced prefix wins), else the plain ``gpu`` price."""
    name = (model or "").upper()
    best = None
    for key in prices:
        if key.startswith("gpu:") and name.startswith(key[4:]) and (
                best is None or len(key) > len(best)):
            best = key
    return prices[best] if best else prices.get("gpu", DEFAULT_PRICES["gpu"])


def replica_run(replica_id: str, restarts: int) -> str:
    """The run of a replica's process: a restart in its slot is a new run."""
    return f"{replica_id}#{restarts}"


# -- one metered interval --------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """What a run is billed for over an interval: ``max(request, usage)`` per resource."""

    cpu: float = 0.0             # cores
    memory_mb: float = 0.0
    gpu: float = 0.0             # GPUs (a share below 1)
    gpu_model: str | None = None

    @staticmethod
    def billed(request_cpu: float, request_mb: float, gpu: float, gpu_model: str | None,
               used_cpu: float | None = None, used_mb: float | None = None) -> Shape:
        return Shape(max(request_cpu, used_cpu or 0.0), max(request_mb, used_mb or 0.0),
                     gpu, gpu_model)


@dataclass
class Amounts:
    """What an interval (or a sum of them) used and cost."""

    seconds: float = 0.0          # replica- or attempt-seconds
    cpu_s: float = 0.0            # core-seconds
    memory_gib_s: float = 0.0
    gpu_s: float = 0.0
    energy_j: float = 0.0
    requests: float = 0.0
    errors: float = 0.0
    cost: float = 0.0

    FIELDS = ("seconds", "cpu_s", "memory_gib_s", "gpu_s", "energy_j", "requests", "errors",
              "cost")

    def add(self, other: Amounts | Mapping[str, Any]) -> Amounts:
        get = other.get if isinstance(other, Mapping) else other.__dict__.get
        for f in self.FIELDS:
            setattr(self, f, getattr(self, f) + float(get(f) or 0.0))
        return self

    def as_dict(self) -> dict[str, float]:
        return {f: getattr(self, f) for f in self.FIELDS}


def interval_amounts(shape: Shape, seconds: float, prices: Mapping[str, float]) -> Amounts:
    """Resource-seconds and cost of running ``shape`` for ``seconds``."""
    seconds = max(0.0, seconds)
    cpu_s = shape.cpu * seconds
    mem = shape.memory_mb / GIB_MB * seconds
    gpu_s = shape.gpu * seconds
    cost = (cpu_s * prices.get("cpu", 0.0) + mem * prices.get("memory", 0.0)
            + gpu_s * gpu_price(prices, shape.gpu_model))
    return Amounts(seconds=seconds, cpu_s=cpu_s, memory_gib_s=mem, gpu_s=gpu_s, cost=cost)


def energy_cost(joules: float, prices: Mapping[str, float]) -> float:
    return max(0.0, joules) / JOULES_PER_KWH * prices.get("energy", 0.0)


def hour_slices(start: float, end: float) -> list[tuple[float, float]]:
    """``[start, end)`` cut at UTC hour boundaries: ``(hour_start, seconds in it)``."""
    out = []
    t = start
    while t < end:
        hour = math.floor(t / HOUR_S) * HOUR_S
        stop = min(end, hour + HOUR_S)
        out.append((hour, stop - t))
        t = stop
    return out


# -- calendar months, UTC (no clock and no datetime in core/) ------------------------------

def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 -> (year, month, day); H. Hinnant's civil_from_days."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + (1 if m <= 2 else 0), m, d)


def _days(y: int, m: int, d: int) -> int:
    """(year, month, day) -> days since 1970-01-01; H. Hinnant's days_from_civil."""
    y -= 1 if m <= 2 else 0
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def month_of(ts: float) -> str:
    """``"2026-12"``: the UTC month ``ts`` falls in."""
    y, m, _ = _civil(math.floor(ts / 86400))
    return f"{y:04d}-{m:02d}"


def month_bounds(ts: float) -> tuple[float, float]:
    """Start and end (Unix seconds) of the UTC month ``ts`` falls in."""
    y, m, _ = _civil(math.floor(ts / 86400))
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return _days(y, m, 1) * 86400.0, _days(ny, nm, 1) * 86400.0


# -- adding usage up -------------------------------------------------------------------------

GROUPS = ("deployment", "job", "user", "node")


def parse_group(by: str) -> tuple[str, str | None]:
    """``deployment``, ``job``, ``user``, ``node`` or ``label:KEY``."""
    if by in GROUPS:
        return by, None
    if by.startswith("label:") and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,62}", by[6:]):
        return "label", by[6:]
    raise InvalidInput(f"cannot group usage by {by!r}: use deployment, job, user, node or "
                       "label:KEY")


@dataclass
class Item:
    key: str
    amounts: Amounts = field(default_factory=Amounts)
    owners: set[str] = field(default_factory=set)


def summarize(rows: Iterable[Mapping[str, Any]], by: str) -> tuple[list[Item], Amounts,
                                                                   Amounts]:
    """Usage rows (``owner_kind, owner, user, labels, node`` and the amounts) grouped by
    ``by``: the items (most costly first), the allocated total and the idle total. Rows of
    kind ``idle`` are node capacity nobody held: they go to the idle total only."""
    kind, label = parse_group(by)
    items: dict[str, Item] = {}
    total, idle = Amounts(), Amounts()
    for row in rows:
        if row["owner_kind"] == "node":
            idle.add(row)
            continue
        total.add(row)
        if kind in ("deployment", "job"):
            if row["owner_kind"] != kind:
                continue
            key = row["owner"]
        elif kind == "user":
            key = row.get("user") or "(unknown)"
        elif kind == "node":
            key = row.get("node") or "(none)"
        else:
            key = (row.get("labels") or {}).get(label or "", "(none)")
        item = items.setdefault(key, Item(key))
        item.amounts.add(row)
        item.owners.add(f"{row['owner_kind']}/{row['owner']}")
    ordered = sorted(items.values(), key=lambda i: (-i.amounts.cost, i.key))
    return ordered, total, idle


# -- budgets ---------------------------------------------------------------------------------

SCOPE = re.compile(r"^(all|(deployment|job|user|label):(.{1,128}))$")


class BudgetSpec(BaseModel):
    """A monthly budget: the scope it counts, the amount, the thresholds (percent) that
    notify, and what to do at 100%."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    scope: str = Field(description="all, deployment:NAME, job:NAME, user:NAME or label:K=V")
    monthly: float = Field(description="the month's amount (USD)")
    alerts: list[float] = Field(default_factory=lambda: [80.0, 100.0],
                                description="percentages of the amount that notify")
    action: str = Field(default="notify", pattern="^(notify|scale-to-zero)$")
    notify: list[str] = Field(default_factory=list, description="webhook:URL, slack:URL, "
                              "email:ADDR")

    @field_validator("scope")
    @classmethod
    def _scope(cls, scope: str) -> str:
        m = SCOPE.match(scope)
        if m is None or (m.group(2) == "label" and "=" not in (m.group(3) or "")):
            raise ValueError(f"unknown scope {scope!r}: use all, deployment:NAME, job:NAME, "
                             "user:NAME (user:alice or token:ci) or label:KEY=VALUE")
        return scope

    @field_validator("monthly")
    @classmethod
    def _monthly(cls, monthly: float) -> float:
        if math.isnan(monthly) or monthly <= 0:
            raise ValueError(f"monthly budget {monthly!r}: must be an amount > 0")
        return monthly

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, alerts: list[float]) -> list[float]:
        if not alerts or len(alerts) > 10:
            raise ValueError("give 1 to 10 alert thresholds (percent), e.g. 80,100")
        for a in alerts:
            if math.isnan(a) or a <= 0 or a > 1000:
                raise ValueError(f"alert threshold {a!r}: a percentage in (0, 1000]")
        return sorted(set(alerts))


def in_scope(scope: str, row: Mapping[str, Any]) -> bool:
    """Whether a usage row counts against a budget of ``scope`` (idle cost never does)."""
    if row["owner_kind"] == "node":
        return False
    if scope == "all":
        return True
    kind, _, value = scope.partition(":")
    if kind in ("deployment", "job"):
        return bool(row["owner_kind"] == kind and row["owner"] == value)
    if kind == "user":
        return bool(row.get("user") == value or row.get("user") == f"user:{value}")
    key, _, want = value.partition("=")
    return bool((row.get("labels") or {}).get(key) == want)


def crossed(spent: float, monthly: float, alerts: Iterable[float],
            notified: Iterable[float]) -> list[float]:
    """Thresholds (percent) the spend has reached that were not notified yet this month."""
    done = set(notified)
    return [a for a in sorted(alerts) if spent >= monthly * a / 100.0 and a not in done]
