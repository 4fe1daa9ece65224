"""The job planner: given a job, its attempts and ``now``, what to do. Pure (STYLE 4).

A job has ``completions`` indexes (0..N-1, ``JOB_COMPLETION_INDEX``); at most
``parallelism`` of them run at once, lowest index first. An index succeeds once one of its
attempts exits 0; an attempt that fails (non-zero exit, killed, OOM, lost) is retried
after an exponential backoff, ``backoff_s * 2**(failures-1)`` capped at ``backoff_max_s``
(Kubernetes' 10 s doubling to 6 min by default), until the index has failed
``max_retries + 1`` times: the job then fails with ``BackoffLimitExceeded``. Attempts that
were stopped by the platform (preempted, a lost control plane's cleanup) do not count.

An index never has two attempts running at once: a new attempt is planned only for an
index none of whose attempts is ``running`` (the controller marks an attempt ended only
after its process is gone).

Jobs are queued by priority (higher first), then age; a job whose attempt finds no node
may preempt running attempts of lower-priority jobs (never serving replicas), the
lowest-priority and newest first, as few as free a node for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from leptonic.core.models import (
    SCALES,
    STORAGE_LABEL,
    AttemptState,
    Job,
    JobAttempt,
    JobPhase,
    JobReason,
    JobSpec,
    JobStatus,
    JobType,
    Node,
    PlacementPolicy,
    PlacementSpec,
    Resources,
    Tier,
)
from leptonic.core.scheduler import DEFAULT_POLICY, Placement, Request, place


def backoff(failures: int, base_s: float = 10.0, max_s: float = 360.0) -> float:
    """Delay before the next attempt of an index that failed ``failures`` times."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, base_s * 2.0 ** (failures - 1)))


def shares(count: int, completions: int) -> list[tuple[int, int]]:
    """The [start, stop) lines of ``count`` inputs each index handles: contiguous and as
    even as can be (the first ``count % completions`` indexes get one more)."""
    base, extra = divmod(count, completions)
    out, start = [], 0
    for i in range(completions):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


# -- where attempts run -----------------------------------------------------------------------

def attempt_resources(spec: JobSpec) -> Resources:
    """What one attempt asks of its node: the scale's shape, with explicit resources (any
    field set) over it."""
    if spec.scale is None:
        return spec.resources
    shape = SCALES[spec.scale]
    given = spec.resources.model_dump(exclude_defaults=True)
    return shape.model_copy(update=given)


def attempt_placement(spec: JobSpec, nodes: Sequence[Node] = ()) -> PlacementSpec:
    """The placement of an attempt: the type's tier unless the spec names one; a storage
    task prefers nodes labelled ``storage=true`` while one of them is alive."""
    where = spec.placement
    if spec.type is JobType.EDGE and where.tier is Tier.ANY:
        return where.model_copy(update={"tier": Tier.EDGE})
    if spec.type is JobType.COMPUTATION and where.tier is Tier.ANY:
        return where.model_copy(update={"tier": Tier.DATACENTER})
    if spec.type is JobType.STORAGE and not where.node_selector:
        key, value = STORAGE_LABEL
        if any(n.alive and n.labels.get(key) == value for n in nodes):
            return where.model_copy(update={"node_selector": {key: value}})
    return where


def request_of(job: Job, nodes: Sequence[Node] = ()) -> Request:
    return Request.of(job.name, attempt_resources(job.spec), attempt_placement(job.spec, nodes))


# -- one job ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IndexState:
    """One index as its attempts show it."""

    index: int
    succeeded: bool = False
    running: JobAttempt | None = None
    failures: int = 0               # attempts that failed (not those stopped by us)
    attempts: int = 0               # attempts so far (the next one is attempts + 1)
    retry_at: float = 0.0           # not before this (its backoff)
    last: JobAttempt | None = None  # the latest attempt


def index_states(spec: JobSpec, attempts: Iterable[JobAttempt]) -> list[IndexState]:
    by_index: dict[int, list[JobAttempt]] = {}
    for a in attempts:
        by_index.setdefault(a.index, []).append(a)
    out = []
    for i in range(spec.completions):
        mine = sorted(by_index.get(i, []), key=lambda a: (a.number, a.created_at))
        failed = [a for a in mine if a.state is AttemptState.FAILED]
        running = next((a for a in mine if a.state is AttemptState.RUNNING), None)
        last_end = max((a.finished_at or 0.0 for a in failed), default=0.0)
        out.append(IndexState(
            index=i, succeeded=any(a.state is AttemptState.SUCCEEDED for a in mine),
            running=running, failures=len(failed), attempts=max((a.number for a in mine),
                                                                 default=0),
            retry_at=last_end + backoff(len(failed), spec.backoff_s, spec.backoff_max_s)
            if failed else 0.0, last=mine[-1] if mine else None))
    return out


@dataclass(frozen=True)
class StartAttempt:
    """Start attempt ``number`` of ``index`` (placed by the controller)."""

    job: str
    index: int
    number: int


@dataclass(frozen=True)
class StopAttempt:
    attempt_id: str
    reason: str                     # Cancelled, DeadlineExceeded, BackoffLimitExceeded...
    message: str


@dataclass(frozen=True)
class RemoveJob:
    """Deleted, or finished longer than its TTL, and nothing runs: drop it and its output."""

    job: str
    why: str


JobAction = StartAttempt | StopAttempt | RemoveJob


@dataclass(frozen=True)
class JobPlan:
    status: JobStatus
    actions: list[JobAction] = field(default_factory=list)

    @property
    def starts(self) -> list[StartAttempt]:
        return [a for a in self.actions if isinstance(a, StartAttempt)]


def _counts(states: list[IndexState], attempts: Sequence[JobAttempt]) -> dict[str, int]:
    return {"active": sum(1 for s in states if s.running is not None),
            "succeeded": sum(1 for s in states if s.succeeded),
            "attempts": len(attempts),
            "retries": sum(1 for a in attempts if a.state is AttemptState.FAILED)}


def _last_error(attempts: Sequence[JobAttempt]) -> str | None:
    failed = [a for a in attempts if a.state is AttemptState.FAILED]
    if not failed:
        return None
    last = max(failed, key=lambda a: (a.finished_at or 0.0, a.id))
    return last.message or f"attempt {last.id} failed ({last.reason}, exit code " \
                           f"{last.exit_code})"


def plan_job(job: Job, attempts: Sequence[JobAttempt], now: float,
             waiting: str | None = None) -> JobPlan:
    """The job's new status and the actions that move it on, at ``now``.

    ``attempts`` are all of the job's attempts; ``waiting`` is why the controller could not
    place an attempt last time (shown while the job is queued)."""
    spec, prev = job.spec, job.status
    states = index_states(spec, attempts)
    running = [s.running for s in states if s.running is not None]
    counts = _counts(states, attempts)
    base = prev.model_copy(update={**counts, "last_error": _last_error(attempts)
                                   or prev.last_error, "updated_at": now})
    if base.started_at is None and attempts:
        base = base.model_copy(update={"started_at": min(a.created_at for a in attempts)})

    if job.deleting:
        if running:
            return JobPlan(base, [StopAttempt(a.id, "Deleted", "the job was deleted")
                                  for a in running])
        return JobPlan(base, [RemoveJob(job.name, "deleted")])

    if prev.finished:
        stops: list[JobAction] = [StopAttempt(a.id, prev.reason or "Finished",
                                              f"the job {prev.phase.value.lower()}")
                                  for a in running]
        ttl = spec.ttl_after_finished_s
        if not running and ttl is not None and prev.finished_at is not None \
                and now >= prev.finished_at + ttl:
            stops.append(RemoveJob(job.name, f"finished {ttl:g}s ago (ttl-after-finished)"))
        status = base.model_copy(update={"phase": prev.phase, "reason": prev.reason,
                                         "message": prev.message})
        return JobPlan(status, stops)

    def fail(reason: JobReason, message: str, failed: int = 0) -> JobPlan:
        status = base.model_copy(update={
            "phase": JobPhase.FAILED, "reason": reason.value, "message": message,
            "failed": failed, "finished_at": now})
        return JobPlan(status, [StopAttempt(a.id, reason.value, message) for a in running])

    if job.cancelled:
        return fail(JobReason.CANCELLED, "cancelled by a user")
    too_large = next((a for a in attempts if a.reason == JobReason.OUTPUT_TOO_LARGE.value), None)
    if too_large is not None:
        return fail(JobReason.OUTPUT_TOO_LARGE, too_large.message or
                    f"index {too_large.index} left more than {spec.max_output_mb} MiB of "
                    "output")
    if spec.deadline_s is not None and now >= job.created_at + spec.deadline_s:
        return fail(JobReason.DEADLINE_EXCEEDED,
                    f"not finished within its deadline of {spec.deadline_s:g}s "
                    f"({counts['succeeded']}/{spec.completions} indexes succeeded)")
    exhausted = [s for s in states if not s.succeeded and s.failures > spec.max_retries]
    if exhausted:
        worst = exhausted[0]
        why = worst.last.message if worst.last is not None and worst.last.message else ""
        return fail(JobReason.BACKOFF_LIMIT_EXCEEDED,
                    f"index {worst.index} failed {worst.failures} time(s), more than "
                    f"--max-retries {spec.max_retries}" + (f": {why.splitlines()[0]}"
                                                           if why else ""),
                    failed=len(exhausted))
    if counts["succeeded"] == spec.completions:
        status = base.model_copy(update={
            "phase": JobPhase.SUCCEEDED, "reason": "", "finished_at": now,
            "message": f"{spec.completions}/{spec.completions} indexes succeeded"})
        return JobPlan(status)

    # room for more: the lowest indexes whose backoff has passed
    room = spec.parallelism - len(running)
    starts: list[JobAction] = []
    backing_off: list[IndexState] = []
    for s in states:
        if room <= 0:
            break
        if s.succeeded or s.running is not None:
            continue
        if s.retry_at > now:
            backing_off.append(s)
            continue
        starts.append(StartAttempt(job.name, s.index, s.attempts + 1))
        room -= 1
    done = f"{counts['succeeded']}/{spec.completions} succeeded"
    if running:
        phase, reason = JobPhase.RUNNING, ""
        message = f"{len(running)} running, {done}"
    else:
        phase = JobPhase.QUEUED
        if waiting and starts:
            reason, message = "Unschedulable", f"{done}; waiting for capacity: {waiting}"
        elif backing_off and not starts:
            nxt = min(backing_off, key=lambda s: s.retry_at)
            reason = "BackoffWait"
            message = (f"{done}; index {nxt.index} failed {nxt.failures} time(s), retried "
                       f"in {max(0.0, nxt.retry_at - now):.0f}s")
        else:
            reason, message = "", f"{done}; starting"
    if running and waiting and starts:
        message += f"; more wait for capacity: {waiting}"
    status = base.model_copy(update={"phase": phase, "reason": reason, "message": message,
                                     "failed": 0})
    return JobPlan(status, starts)


# -- many jobs --------------------------------------------------------------------------------

def queue_order(jobs: Iterable[Job]) -> list[Job]:
    """The order the controller serves jobs in: higher priority first, then older, then
    by name (deterministic)."""
    return sorted(jobs, key=lambda j: (-j.spec.priority, j.created_at, j.name))


@dataclass(frozen=True)
class Held:
    """Work holding resources on a node: a replica (never preempted) or a job attempt."""

    key: str
    node: str
    request: Request
    priority: int | None = None     # None: a replica; else the attempt's job priority
    started_at: float = 0.0


@dataclass(frozen=True)
class Preemption:
    node: str | None                # where the attempt fits once the victims are gone
    victims: list[str] = field(default_factory=list)   # attempt ids to stop
    reason: str = ""


def place_attempt(nodes: Sequence[Node], request: Request, held: Sequence[Held],
                  spread: Mapping[str, int] | None = None,
                  policy: PlacementPolicy | None = None) -> Placement:
    """The scheduler's choice for one attempt among what is ``held`` now (by the job's
    ``--placement`` policy, else the platform's default)."""
    return place(nodes, request, spread, policy or DEFAULT_POLICY,
                 [(h.node, h.request) for h in held])


def preemption(nodes: Sequence[Node], request: Request, priority: int, held: Sequence[Held],
               spread: Mapping[str, int] | None = None) -> Preemption:
    """The fewest attempts of lower-priority jobs to stop so that ``request`` fits.

    Candidates go lowest priority first, then newest (least work lost); replicas are
    never candidates. Only the victims on the node the attempt then lands on are named.
    """
    candidates = sorted((h for h in held if h.priority is not None and h.priority < priority),
                        key=lambda h: (h.priority, -h.started_at, h.key))
    if not candidates:
        return Preemption(None, reason="no lower-priority attempt to preempt")
    gone: set[str] = set()
    for victim in candidates:
        gone.add(victim.key)
        rest = [h for h in held if h.key not in gone]
        placed = place_attempt(nodes, request, rest, spread)
        if placed.node is not None:
            victims = [h.key for h in candidates if h.key in gone and h.node == placed.node]
            return Preemption(placed.node, victims,
                              f"preempting {len(victims)} attempt(s) of lower priority on "
                              f"node {placed.node}")
    return Preemption(None, reason="preempting every lower-priority attempt would not make "
                                   "room")
