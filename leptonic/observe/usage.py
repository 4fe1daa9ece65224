"""Metering: usage records of every replica and job attempt, priced into cost; budgets.

Every observability cycle the meter takes what the cycle read (replicas, the gateway's
counters, process stats, the energy accounting) and writes, in one transaction:

- for each *run* (a replica's process, ``REPLICA_ID#RESTARTS``, or a job attempt) that
  holds resources: the seconds since its row's mark, billed at ``max(request, usage)`` of
  cores and memory (usage from the process's CPU time and RSS where the runtime is local)
  plus its GPUs, split at UTC hours into its buckets (store/usage.py);
- for each deployment: the requests and errors (5xx) its gateway answered, and its energy
  (observe/energy.py), priced at the kWh price;
- for each node: the capacity nobody held, priced the same way, as *idle* cost.

A run that ends is closed where it ended: the controller closes a replica's run when it
sees the process exit or stops it; an attempt closes at its ``finished_at``; a run whose row
vanished unseen closes at its last mark (at most one interval short). A restart of the
control plane goes on from each run's mark, so the time it was down is metered for runs
that outlived it, and no second is metered twice.

Then the budgets: each one's spend this UTC month, against its thresholds; a threshold
crossed is recorded and notified exactly once per month (its row and its notifications
are written in one transaction), and ``scale-to-zero`` at 100% scales the deployments in
scope to zero replicas.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leptonic.core.alerts import parse_duration
from leptonic.core.models import (
    AttemptState,
    Deployment,
    Job,
    JobAttempt,
    Node,
    Replica,
    ReplicaState,
)
from leptonic.core.usage import (
    HOUR_S,
    JOULES_PER_KWH,
    Amounts,
    BudgetSpec,
    Shape,
    crossed,
    energy_cost,
    in_scope,
    interval_amounts,
    month_bounds,
    month_of,
    replica_run,
    summarize,
)
from leptonic.errors import InvalidInput
from leptonic.observe.notify import build_payload
from leptonic.observe.series import GatewayCounts, ReplicaStat
from leptonic.store.usage import Bucket, Run, UsageStore

if TYPE_CHECKING:
    from leptonic.store.base import Repository
    from leptonic.store.store import Store

log = logging.getLogger(__name__)

#: replica states whose process holds its resources (and is billed)
BILLED = frozenset({ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DRAINING})


@dataclass
class _Seen:
    cpu_seconds: float
    at: float


class Meter:
    """Writes usage each cycle; evaluates budgets. Synchronous: run it off the loop."""

    def __init__(self, store: Store, *, max_gap_s: float, dashboard_url: str = "") -> None:
        self.store = store
        self.usage = UsageStore(store)
        self.max_gap_s = max_gap_s
        self.dashboard_url = dashboard_url
        self._cpu: dict[str, _Seen] = {}          # run -> last CPU time seen
        self._requests: dict[str, tuple[float, float]] = {}   # deployment -> (all, 5xx)
        self._energy: dict[str, float] | None = None         # deployment -> joules seen
        self._last: float | None = None                      # the previous tick

    # -- one tick -------------------------------------------------------------------------
    def tick(self, now: float, deployments: list[Deployment], replicas: list[Replica],
             nodes: list[Node], stats: Iterable[ReplicaStat],
             gateway: Mapping[str, GatewayCounts],
             energy: Mapping[str, tuple[float, float]]) -> float:
        """Meter everything up to ``now``; returns the run-seconds added."""
        prices = self.usage.prices()
        owners = {d.name: d for d in deployments}
        by_node = {n.name: n for n in nodes}
        cpu_used = {s.replica: s for s in stats}
        runs: list[Run] = []
        held: dict[str, Shape] = {}
        live_runs: set[str] = set()
        for r in replicas:
            if r.state not in BILLED:
                continue
            d = owners.get(r.deployment)
            key = replica_run(r.id, r.restarts)
            live_runs.add(key)
            stat = cpu_used.get(r.id)
            req = r.resources
            node = by_node.get(r.node)
            shape = Shape.billed(req.cpu if req else 0.0, req.memory_mb if req else 0.0,
                                 req.gpu if req else 0.0,
                                 node.gpu_model if node and req and req.gpu else None,
                                 self._cores(key, stat, now), stat.rss_bytes / 2**20
                                 if stat and stat.rss_bytes else None)
            _hold(held, r.node, shape)
            runs.append(Run(key, "replica", "deployment", r.deployment,
                            d.spec.created_by if d else None, d.spec.labels if d else {},
                            r.node, r.started_at or r.created_at, shape, now))
        open_runs = self.usage.open_runs()
        runs += self._attempts(now, by_node, held, live_runs, open_runs)
        runs += self._vanished(live_runs, open_runs)
        self._cpu = {k: v for k, v in self._cpu.items() if k in live_runs}
        buckets = self._traffic(now, owners, gateway, energy, prices)
        buckets += self._idle(now, nodes, held, prices)
        self._last = now
        return self.usage.meter(runs, buckets, prices)

    def _cores(self, run: str, stat: ReplicaStat | None, now: float) -> float | None:
        """Cores the run's process used since the last tick (None: not known yet)."""
        if stat is None or stat.cpu_seconds is None:
            return None
        seen = self._cpu.get(run)
        self._cpu[run] = _Seen(stat.cpu_seconds, now)
        if seen is None or now <= seen.at:
            return None
        return max(0.0, stat.cpu_seconds - seen.cpu_seconds) / (now - seen.at)

    def _attempts(self, now: float, nodes: Mapping[str, Node], held: dict[str, Shape],
                  live: set[str], open_runs: list[dict[str, Any]]) -> list[Run]:
        runs = []
        jobs: dict[str, Job] = {j.name: j for j in self.store.list_jobs(live=True)}
        running = self.store.list_attempts(running=True)
        ids = {a.id for a in running}
        gone = {r["run"]: r for r in open_runs
                if r["kind"] == "attempt" and r["run"] not in ids}
        ended: list[JobAttempt] = []
        for job in sorted({r["owner"] for r in gone.values()}):
            ended += [a for a in self.store.list_attempts(job) if a.id in gone]
        for run in set(gone) - {a.id for a in ended}:      # its job was deleted
            runs.append(_closed_at_mark(gone[run]))
        for a in [*running, *ended]:
            job_row = jobs.get(a.job)
            req = a.resources
            node = nodes.get(a.node)
            shape = Shape.billed(req.cpu if req else 0.0, req.memory_mb if req else 0.0,
                                 req.gpu if req else 0.0,
                                 node.gpu_model if node and req and req.gpu else None)
            done = a.state is not AttemptState.RUNNING
            if not done:
                _hold(held, a.node, shape)
                live.add(a.id)
            runs.append(Run(a.id, "attempt", "job", a.job,
                            job_row.spec.created_by if job_row else None,
                            job_row.spec.labels if job_row else {}, a.node,
                            a.started_at or a.created_at, shape,
                            (a.finished_at or now) if done else now, closing=done))
        return runs

    @staticmethod
    def _vanished(live: set[str], open_runs: list[dict[str, Any]]) -> list[Run]:
        """Open runs seen no more (their row is gone): closed at their last mark."""
        out = []
        for row in open_runs:
            # an attempt closes from its row, which outlives it (with its job)
            if row["run"] in live or row["kind"] == "attempt":
                continue
            out.append(_closed_at_mark(row))
        return out

    def _traffic(self, now: float, owners: Mapping[str, Deployment],
                 gateway: Mapping[str, GatewayCounts],
                 energy: Mapping[str, tuple[float, float]],
                 prices: Mapping[str, float]) -> list[Bucket]:
        hour = (now // HOUR_S) * HOUR_S
        out = []
        first = self._energy is None
        seen_j = self._energy or {}
        for name, d in owners.items():
            counts = gateway.get(name)
            total = counts.total if counts else 0.0
            errors = sum(v for c, v in counts.codes.items() if c.startswith("5")) \
                if counts else 0.0
            before = self._requests.get(name, (0.0, 0.0))   # counters start with the process
            self._requests[name] = (total, errors)
            joules = energy.get(name, (0.0, 0.0))[1]
            dj = 0.0 if first or name not in seen_j else max(0.0, joules - seen_j[name])
            seen_j[name] = joules
            amounts = Amounts(requests=max(0.0, total - before[0]) if total >= before[0]
                              else total,
                              errors=max(0.0, errors - before[1]) if errors >= before[1]
                              else errors,
                              energy_j=dj, cost=energy_cost(dj, prices))
            if amounts.requests or amounts.errors or amounts.energy_j:
                out.append(Bucket(f"deployment:{name}", hour, "deployment", name,
                                  d.spec.created_by, d.spec.labels, "", amounts))
        # the baselines of deleted deployments are kept: the gateway's counters of a name
        # live as long as the process, so a deployment made again under it starts from them
        self._energy = seen_j
        return out

    def _idle(self, now: float, nodes: list[Node], held: Mapping[str, Shape],
              prices: Mapping[str, float]) -> list[Bucket]:
        """Capacity no run held since the last tick, per node (standby nodes draw little
        and are not counted)."""
        if self._last is None or not (0 < now - self._last <= self.max_gap_s):
            return []
        dt = now - self._last
        hour = (now // HOUR_S) * HOUR_S
        out = []
        for n in nodes:
            if not n.alive or n.standby:
                continue
            h = held.get(n.name, Shape())
            free = Shape(max(0.0, n.capacity.get("cpu", 0.0) - h.cpu),
                         max(0.0, n.capacity.get("memory_mb", 0.0) - h.memory_mb),
                         max(0.0, n.capacity.get("gpu", 0.0) - h.gpu), n.gpu_model)
            amounts = interval_amounts(free, dt, prices)
            out.append(Bucket(f"node:{n.name}", hour, "node", n.name, None, {}, n.name,
                              amounts))
        return out

    # -- budgets --------------------------------------------------------------------------
    def budgets(self, now: float) -> list[tuple[str, float]]:
        """Check every budget this month; ``(budget, threshold)`` of each one notified."""
        budgets = self.usage.list_budgets()
        if not budgets:
            return []
        rows = month_rows(self.usage, now)
        month = month_of(now)
        fired = []
        for b in budgets:
            spec: BudgetSpec = b["spec"]
            spent = spent_of(rows, spec)
            done = [n["threshold"] for n in self.usage.notices(spec.name)
                    if n["month"] == month]
            for threshold in crossed(spent, spec.monthly, spec.alerts, done):
                if self._notify(spec, month, threshold, spent, now):
                    fired.append((spec.name, threshold))
                    if spec.action == "scale-to-zero" and threshold >= 100:
                        self._scale_to_zero(spec, rows, now)
        return fired

    def _notify(self, spec: BudgetSpec, month: str, threshold: float, spent: float,
                now: float) -> bool:
        text = (f"budget {spec.name} ({spec.scope}): {spent:.2f} of {spec.monthly:.2f} "
                f"spent in {month}, {threshold:g}% reached")
        payload = build_payload(rule=f"budget:{spec.name}", target=f"budget/{spec.name}",
                                status="firing", expr=f"cost >= {threshold:g}% of "
                                f"{spec.monthly:g}", severity="warning", value=spent,
                                started_at=now, resolved_at=None, description=text,
                                dashboard_url=f"{self.dashboard_url}/ui/usage"
                                if self.dashboard_url else "")
        payload.update({"budget": spec.name, "scope": spec.scope, "month": month,
                        "threshold_percent": threshold, "spent": spent,
                        "monthly": spec.monthly})
        notes = []
        for destination in spec.notify:
            digest = hashlib.sha256(destination.encode()).hexdigest()[:16]
            notes.append((f"budget|{spec.name}|{month}|{threshold:g}|{digest}", destination,
                          payload))
        if not self.usage.notify_budget(spec.name, month, threshold, spent, now, notes):
            return False
        self.store.add_event(f"budget/{spec.name}", "BudgetReached", text, kind="Warning",
                             time=now)
        log.warning("%s", text)
        return True

    def _scale_to_zero(self, spec: BudgetSpec, rows: list[dict[str, Any]],
                       now: float) -> None:
        names = sorted({r["owner"] for r in rows if r["owner_kind"] == "deployment"
                        and in_scope(spec.scope, r)})
        for name in names:
            try:
                d = self.store.get_deployment(name)
            except Exception:           # deleted meanwhile
                continue
            if d.deleting or (d.spec.replicas == 0 and d.spec.autoscaling is None):
                continue
            spec0 = d.spec.model_copy(update={"replicas": 0, "autoscaling": None})
            self.store.update_deployment_spec(name, spec0, expected_generation=d.generation)
            self.store.add_event(f"deployment/{name}", "BudgetScaledToZero",
                                 f"scaled to zero replicas: budget {spec.name} reached "
                                 f"100% of {spec.monthly:g} this month (scale it up again "
                                 "with `leptonic deployment scale`)", kind="Warning",
                                 time=now)


# -- reading usage back ---------------------------------------------------------------------

SINCE_FORMS = ("a duration (90m, 12h, 30d) or a UTC date or time (2026-12-01, "
               "2026-12-01T08:00)")
MAX_WINDOW_S = 400 * 86400.0


def parse_when(text: str, now: float, what: str = "since") -> float:
    """A duration back from ``now`` or an ISO date/time (UTC unless it says otherwise)."""
    text = text.strip()
    try:
        return now - parse_duration(text, what)
    except InvalidInput:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"invalid {what} {text!r}: give {SINCE_FORMS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def window(since: str, until: str | None, now: float) -> tuple[float, float]:
    """The hours a usage query covers: from the start of the hour ``since`` falls in."""
    start = parse_when(since, now)
    end = now if until is None else parse_when(until, now, "until")
    if not math.isfinite(start) or not math.isfinite(end) or end <= start:
        raise InvalidInput(f"the window is empty: since ({since!r}) must be before until "
                           f"({until or 'now'!r})")
    if end - start > MAX_WINDOW_S:
        raise InvalidInput(f"a window of at most {MAX_WINDOW_S / 86400:g} days (usage is kept "
                           "that long)")
    return (start // HOUR_S) * HOUR_S, end


def _figures(a: Amounts) -> dict[str, float]:
    return {"replica_seconds": a.seconds, "cpu_seconds": a.cpu_s,
            "memory_gib_seconds": a.memory_gib_s, "gpu_seconds": a.gpu_s,
            "energy_kwh": a.energy_j / JOULES_PER_KWH, "requests": a.requests,
            "errors": a.errors, "cost": a.cost}


def report(store: Repository, since: str, until: str | None, by: str, now: float
           ) -> dict[str, Any]:
    """``GET /usage``: the items of ``by`` over the window, the totals, the idle cost and
    the cost per hour."""
    start, end = window(since, until, now)
    rows = UsageStore(store).buckets(start, end)
    items, total, idle = summarize(rows, by)
    group = by.partition(":")[0]
    return {
        "since": start, "until": end, "by": by, "currency": "USD",
        "items": [{group: i.key, "key": i.key, **_figures(i.amounts),
                   "owners": sorted(i.owners)} for i in items],
        "total": _figures(total),
        "idle": {"cost": idle.cost, "cpu_seconds": idle.cpu_s,
                 "memory_gib_seconds": idle.memory_gib_s, "gpu_seconds": idle.gpu_s},
        "hourly": _hourly(rows, start, end),
    }


def _hourly(rows: list[dict[str, Any]], start: float, end: float) -> list[dict[str, float]]:
    """Allocated and idle cost of every hour of the window, 0 where nothing was metered
    (the dashboard's chart)."""
    hours: dict[float, list[float]] = {}
    h = start
    while h < end:
        hours[h] = [0.0, 0.0]
        h += HOUR_S
    for r in rows:
        cell = hours.setdefault(float(r["hour"]), [0.0, 0.0])
        cell[1 if r["owner_kind"] == "node" else 0] += float(r["cost"])
    return [{"hour": t, "cost": c, "idle": i} for t, (c, i) in sorted(hours.items())]


def month_rows(ustore: UsageStore, now: float) -> list[dict[str, Any]]:
    """The usage buckets of the UTC month ``now`` is in, up to now: what budgets count."""
    start, _ = month_bounds(now)
    return ustore.buckets(start, now + HOUR_S)


def spent_of(rows: Iterable[Mapping[str, Any]], spec: BudgetSpec) -> float:
    """The cost of the rows in the budget's scope."""
    return sum(float(r["cost"]) for r in rows if in_scope(spec.scope, r))


def _closed_at_mark(row: Mapping[str, Any]) -> Run:
    return Run(row["run"], row["kind"], row["owner_kind"], row["owner"], row["user"],
               row["labels"] or {}, row["node"], float(row["started_at"]), Shape(),
               float(row["until"]), closing=True)


def _hold(held: dict[str, Shape], node: str, s: Shape) -> None:
    h = held.get(node, Shape())
    held[node] = Shape(h.cpu + s.cpu, h.memory_mb + s.memory_mb, h.gpu + s.gpu)


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00",
                                                                                 "Z")


def cloudevents(rows: Iterable[Mapping[str, Any]], source: str) -> list[dict[str, Any]]:
    """Usage buckets as CloudEvents 1.0 (structured JSON): one event per run and hour,
    its ``id`` stable, so a consumer (OpenMeter) that sees one twice counts it once."""
    out = []
    for r in rows:
        kind = "idle" if r["owner_kind"] == "node" else r["owner_kind"]
        out.append({
            "specversion": "1.0",
            "type": f"dev.leptonic.usage.{kind}",
            "source": source,
            "id": f"{r['run']}@{int(r['hour'])}",
            "time": iso(float(r["hour"])),
            "subject": f"{r['owner_kind']}/{r['owner']}",
            "datacontenttype": "application/json",
            "data": {"run": r["run"], "owner_kind": r["owner_kind"], "owner": r["owner"],
                     "user": r["user"], "labels": r["labels"] or {}, "node": r["node"],
                     "hour_start": iso(float(r["hour"])),
                     **{f: float(r[f]) for f in Amounts.FIELDS}},
        })
    return out
