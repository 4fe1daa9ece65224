"""Spec/status types shared by the API, the store and the controllers.

``*Spec`` is what a user asked for (written by the API); ``*Status`` and ``Replica`` are
what the controllers observed (written by controllers only).
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leptonic.errors import InvalidInput

NAME_RULE = (
    "names are 1-40 characters of lowercase letters, digits and '-', "
    "start with a letter and do not end with '-'"
)
_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")
MAX_REPLICAS = 64
DEFAULT_MEMORY_LIMIT_MB = 4096
DEFAULT_HANDLER_TIMEOUT_S = 60.0
DEFAULT_MAX_CONCURRENCY = 64
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_valid_name(value: str) -> bool:
    return bool(_NAME_RE.match(value))


def check_name(value: str, kind: str = "name") -> str:
    """Return ``value`` if it is a DNS-label-like slug, else raise InvalidInput naming the rule."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidInput(f"invalid {kind} {value!r}: {NAME_RULE}")
    return value


#: labels a deployment or job carries for usage and cost (``--by label:team``)
MAX_LABELS = 32
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Labels as Kubernetes writes them: keys of up to 63 letters, digits and ``_./-``,
    values of up to 63 characters; at most 32."""
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"{len(labels)} labels: at most {MAX_LABELS}")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise InvalidInput(f"invalid label key {key!r}: up to 63 letters, digits and "
                               "_./- starting with a letter or digit (team, cost-center)")
        if not isinstance(value, str) or len(value) > 63 or "\n" in value:
            raise InvalidInput(f"invalid value of label {key!r}: up to 63 characters on one "
                               "line")
    return labels


# What one deployment may put in its replicas' environment (docs/SECURITY.md).
MAX_ENV_VARS = 256
MAX_SECRETS = 64
MAX_ENV_BYTES = 256 * 1024     # UTF-8 bytes of env names + values + secret names


def check_env_bounds(env: dict[str, str], secrets: list[str]) -> None:
    """Raise InvalidInput naming the limit if ``env``/``secrets`` are too many or too big.

    Checked when the API admits a spec (create, and the merged spec of an update), not by
    a validator on DeploymentSpec: the store re-validates every stored spec on read, and a
    spec stored before these bounds existed must stay readable."""
    if len(env) > MAX_ENV_VARS:
        raise InvalidInput(f"{len(env)} environment variables: a deployment may set at "
                           f"most {MAX_ENV_VARS}")
    if len(secrets) > MAX_SECRETS:
        raise InvalidInput(f"{len(secrets)} secrets: a deployment may use at most "
                           f"{MAX_SECRETS}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items()) \
        + sum(len(s.encode()) for s in secrets)
    if size > MAX_ENV_BYTES:
        raise InvalidInput(f"environment variables and secret names take {size} bytes: a "
                           f"deployment may use at most {MAX_ENV_BYTES} bytes "
                           f"({MAX_ENV_BYTES // 1024} KiB) of names and values")


class PhotonRef(BaseModel):
    """``NAME`` (latest), ``NAME@N`` / ``NAME@vN`` (version N) or ``builtin:NAME``."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int | None = None
    builtin: bool = False

    @classmethod
    def parse(cls, text: str) -> PhotonRef:
        text = text.strip()
        if text.startswith("builtin:"):
            return cls(name=check_name(text[len("builtin:"):], "builtin photon name"),
                       builtin=True)
        name, sep, ver = text.partition("@")
        check_name(name, "photon name")
        if not sep:
            return cls(name=name)
        digits = ver[1:] if ver[:1] in ("v", "V") else ver
        if not digits.isdigit() or int(digits) < 1:
            raise InvalidInput(
                f"invalid photon reference {text!r}: use NAME, NAME@N or NAME@vN with N >= 1"
            )
        return cls(name=name, version=int(digits))

    def __str__(self) -> str:
        if self.builtin:
            return f"builtin:{self.name}"
        return self.name if self.version is None else f"{self.name}@{self.version}"


class ProbeResult(StrEnum):
    """What a replica's ``/readyz`` answered (controller/probes.py asks)."""

    READY = "ready"             # /readyz answered 200
    NOT_READY = "not-ready"     # it answered, but not 200: alive, no traffic for it
    NO_ANSWER = "no-answer"     # refused, reset or timed out: dead or hung


class ReplicaState(StrEnum):
    STARTING = "starting"   # process launched, /readyz not yet 200
    READY = "ready"         # serving; in the gateway's route table
    DRAINING = "draining"   # no new requests; in-flight ones finish, then it stops
    FAILED = "failed"       # exited or unhealthy; waits for its backoff to restart
    STOPPED = "stopped"     # stopped on purpose; row is removed by the controller


class DeploymentPhase(StrEnum):
    PENDING = "Pending"       # replicas asked for, none ready yet
    READY = "Ready"           # ready replicas == desired
    DEGRADED = "Degraded"     # some, not all, desired replicas ready
    CRASH_LOOP = "CrashLoop"  # replicas keep failing; see message/last_error
    STOPPED = "Stopped"       # scaled to zero replicas
    DELETING = "Deleting"     # delete asked; replicas being stopped
    UNSCHEDULABLE = "Unschedulable"   # no node fits a replica; the message says why


# -- where replicas run (parts of DeploymentSpec) ---------------------------------------

TIERS = ("datacenter", "edge")


class Tier(StrEnum):
    DATACENTER = "datacenter"   # core nodes for large work
    EDGE = "edge"               # light nodes near users, small latency-sensitive work
    ANY = "any"


class Resources(BaseModel):
    """What one replica asks of its node; placement counts it against the node's capacity
    (the Ray runtime also reserves it with Ray)."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(default=0.0, ge=0, le=4096)          # cores, fractions allowed
    memory_mb: int = Field(default=0, ge=0, le=16 * 1024 * 1024)
    # below 1: a share of one GPU (GPU sharing); from 1: that many whole GPUs
    gpu: float = Field(default=0.0, ge=0, le=64)

    @field_validator("gpu")
    @classmethod
    def _share_or_whole(cls, gpu: float) -> float:
        if gpu > 1 and gpu != int(gpu):
            raise ValueError(f"{gpu:g} GPUs: ask for a share of one GPU (below 1, e.g. 0.5) "
                             "or for whole GPUs (1, 2, ...)")
        return gpu

    def is_zero(self) -> bool:
        return not (self.cpu or self.memory_mb or self.gpu)


class PlacementPolicy(StrEnum):
    """How the scheduler scores the nodes that fit (core/scheduler.py says how each works)."""

    SPREAD = "spread"           # Kubernetes LeastAllocated, replicas of one owner apart
    PACK = "pack"               # Kubernetes MostAllocated
    RAY_HYBRID = "ray-hybrid"   # Ray's default: pack until 50% utilised, then spread
    ENERGY = "energy"           # fewest marginal watts, no waking, little fragmentation


#: the platform's default (docs/SCHEDULING.md gives the figures behind the choice)
DEFAULT_PLACEMENT = PlacementPolicy.SPREAD


class PlacementSpec(BaseModel):
    """Which nodes a deployment's replicas may run on, and how one is chosen."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier = Tier.ANY
    node_selector: dict[str, str] = Field(default_factory=dict)   # node labels to match
    gpu_models: list[str] = Field(default_factory=list, max_length=16)  # any of; empty: any
    policy: PlacementPolicy | None = None   # None: the platform's default


# -- how a deployment changes, scales and is checked (parts of DeploymentSpec) ----------

class StrategyType(StrEnum):
    ROLLING = "rolling"         # replace replicas a few at a time (max_surge/max_unavailable)
    BLUE_GREEN = "blue-green"   # a full new set beside the old; switch all traffic at once
    CANARY = "canary"           # shift traffic by steps, each gated by an analysis


_AMOUNT_RE = re.compile(r"^(\d{1,2}|100)%$|^\d{1,2}$")


class AnalysisSpec(BaseModel):
    """The checks a canary step must pass; defaults are Flagger's built-in metric checks."""

    model_config = ConfigDict(extra="forbid")

    min_success_rate: float = Field(default=0.99, ge=0.0, le=1.0)   # answers that are not 5xx
    max_p99_ms: float = Field(default=500.0, gt=0)                   # time to response headers
    # a step passes on fewer requests only if it cannot fail any more (see core.rollout)
    min_requests: int = Field(default=100, ge=1)


class StrategySpec(BaseModel):
    """How a new replica template (photon version, env) replaces the serving one."""

    model_config = ConfigDict(extra="forbid")

    type: StrategyType = StrategyType.ROLLING
    max_surge: str = "25%"            # rolling: replicas above desired, "N" or "N%" (round up)
    max_unavailable: str = "25%"      # rolling: desired replicas allowed not ready (round down)
    steps: list[int] = Field(default_factory=lambda: [10, 25, 50, 100])   # canary weights
    step_interval_s: float = Field(default=60.0, ge=0)       # canary: hold of each step
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    smoke_path: str | None = None     # blue-green: POSTed to every new replica before switching
    smoke_body: dict[str, Any] = Field(default_factory=dict)
    keep_old_s: float = Field(default=300.0, ge=0)           # blue-green: old set kept for rollback
    progress_deadline_s: float = Field(default=600.0, gt=0)  # no progress this long: roll back

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _amount(cls, v: str) -> str:
        v = str(v).strip()
        if not _AMOUNT_RE.match(v):
            raise ValueError(f"{v!r} is not a replica count (0-99) or a percentage (0%-100%)")
        return v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v or any(not 0 < w <= 100 for w in v) or any(
                a >= b for a, b in itertools.pairwise(v)):
            raise ValueError("canary steps are increasing traffic percentages in 1..100, "
                             "e.g. [10, 25, 50, 100]")
        return v if v[-1] == 100 else [*v, 100]

    @field_validator("smoke_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or any(c in v for c in " \r\n?#")):
            raise ValueError(f"smoke_path {v!r} must be a path such as '/echo'")
        return v


class AutoscalingPolicy(StrEnum):
    """How the autoscaler decides (core/autoscaler.py)."""

    REACTIVE = "reactive"       # the requests in flight now (Ray Serve's policy)
    PREDICTIVE = "predictive"   # the larger of that and the forecast rate (core/forecast.py)


class AutoscalingSpec(BaseModel):
    """Replicas follow the requests in flight; defaults are Ray Serve's."""

    model_config = ConfigDict(extra="forbid")

    policy: AutoscalingPolicy = AutoscalingPolicy.REACTIVE

    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max_replicas: int = Field(default=4, ge=1, le=MAX_REPLICAS)
    target_concurrency: float = Field(default=2.0, gt=0)    # requests in flight per replica
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    scale_to_zero_after_s: float = Field(default=600.0, ge=0)   # idle this long: 0 (min_replicas 0)
    look_back_s: float = Field(default=30.0, gt=0)           # in-flight requests averaged over this
    max_queued: int = Field(default=100, ge=0)      # requests the gateway holds while at zero
    queue_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas "
                             f"({self.max_replicas})")
        return self


class LimitsSpec(BaseModel):
    """What one replica may use. Memory is enforced by the runtime (killed past it, status
    ``OOMKilled``); open files and processes by rlimits; CPU by cgroup v2 where the
    platform may write it (reported when it cannot)."""

    memory_mb: int | None = Field(default=DEFAULT_MEMORY_LIMIT_MB, ge=16)   # None: no limit
    cpu: float | None = Field(default=None, gt=0, le=1024)                  # cores
    open_files: int = Field(default=4096, ge=64, le=1_048_576)
    processes: int = Field(default=1024, ge=16, le=1_048_576)               # and threads


class ProbeSpec(BaseModel):
    """Readiness/liveness probes of each replica (``GET /readyz``); Kubernetes probes every
    10 s and replaces a container after 3 failures, these defaults are ten times tighter."""

    model_config = ConfigDict(extra="forbid")

    period_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    readiness_failures: int = Field(default=1, ge=1)   # failed probes in a row: no more traffic
    liveness_failures: int = Field(default=3, ge=1)    # unanswered probes in a row: replaced


class ModelServing(BaseModel):
    """A deployment of a registered model version (``--model NAME@champion``): the
    reference as given, the version it resolved to, and the content-addressed bundle that
    holds a copy of its artifact (what the replicas load)."""

    ref: str                         # NAME@ALIAS or NAME@VERSION, as given
    model: str
    version: int = Field(ge=1)
    alias: str | None = None         # set: the deployment follows the alias's moves
    framework: str
    photon: str                      # the built-in server: builtin:sklearn, builtin:torch
    path_env: str                    # the variable it reads the file's path from
    artifact: str                    # the file's name inside the bundle
    digest: str                      # the bundle's artifact digest
    monitor: bool = True             # its answers are sampled for live monitoring


class DeploymentSpec(BaseModel):
    """What the user asked for. Written by the API only."""

    photon: str                      # photon name, or ``builtin:NAME``
    photon_version: int = Field(ge=0, default=0)  # resolved version (0 for builtin)
    replicas: int = Field(ge=0, le=MAX_REPLICAS, default=1)
    env: dict[str, str] = Field(default_factory=dict)
    # secrets injected as environment variables of the same name (values never stored here)
    secrets: list[str] = Field(default_factory=list)
    public: bool = False             # /run/<name> without a token when True
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    autoscaling: AutoscalingSpec | None = None     # None: exactly ``replicas`` replicas
    probes: ProbeSpec = Field(default_factory=ProbeSpec)
    drain_timeout_s: float = Field(default=30.0, ge=0)  # in-flight requests finish
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    # a handler call past this answers 504 (a handler's own ``timeout=`` wins)
    handler_timeout_s: float = Field(default=DEFAULT_HANDLER_TIMEOUT_S, gt=0, le=86_400)
    # requests in progress per replica; as many again wait briefly, then 503
    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1, le=10_000)
    debug_errors: bool = False       # a handler's exception message goes to its caller
    resources: Resources = Field(default_factory=Resources)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    model: ModelServing | None = None   # a registered model (photon: its built-in server)
    labels: dict[str, str] = Field(default_factory=dict)   # for usage: --by label:KEY
    created_by: str | None = None    # who created it (user:NAME, token:NAME); API-set


class AutoscaleState(BaseModel):
    """The autoscaler's memory between ticks (controller-written, survives a restart)."""

    replicas: int = 0                # replicas it scaled to
    proposal: int = 0                # what the load asks for right now
    proposal_since: float | None = None   # since when the load asks for more (or fewer)
    last_active_at: float = 0.0      # last time a request was seen
    in_flight: float = 0.0           # average requests in flight over the look-back
    # the predictive policy's figures (None: reactive, or nothing forecast yet)
    forecast_rate: float | None = None      # requests/s expected by a new replica's start
    forecast_upper: float | None = None     # its upper quantile
    forecast_error: float | None = None     # the forecast's recent weighted MAPE
    forecast_period_s: float | None = None  # the seasonal period it found
    service_s: float | None = None          # mean seconds a request is in flight
    why: str = ""                           # why the replica count is what it is


class DeploymentStatus(BaseModel):
    """What the controller observed. Written by controllers only."""

    phase: DeploymentPhase = DeploymentPhase.PENDING
    replicas: int = 0            # replicas that exist (any state but stopped)
    ready_replicas: int = 0
    restarts: int = 0            # total replica restarts since creation
    message: str = ""
    last_error: str | None = None    # last lines of a failing replica's log
    observed_generation: int = 0
    # The replica template (photon version + env) the controller last saw, and the
    # generation at which it last changed: replicas started for an older template are
    # replaced, while a spec change that only scales leaves running replicas alone.
    template_hash: str = ""
    template_generation: int = 0
    desired_replicas: int = 0        # what the controller aims for: spec or autoscaler
    autoscale: AutoscaleState | None = None
    rollout: str = ""                # phase of the latest rollout ("" before the first)
    updated_at: float = 0.0


class Replica(BaseModel):
    """One running copy of a photon. Status fields are written by controllers only."""

    id: str
    deployment: str
    photon_version: int = 0
    generation: int = 0             # the deployment's template_generation it runs
    node: str = "local"
    state: ReplicaState = ReplicaState.STARTING
    url: str | None = None
    pid: int | None = None
    port: int | None = None
    log_path: str | None = None
    restarts: int = 0               # times this replica slot was restarted
    failures: int = 0               # consecutive failures (reset once stable)
    exit_code: int | None = None
    reason: str | None = None        # why the process last ended: OOMKilled, Error, Hung
    last_error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ready_at: float | None = None
    next_restart_at: float | None = None
    probe_failures: int = 0         # probes failed in a row; no traffic while above 0
    resources: Resources | None = None   # what it holds on its node (placement counts it)


class Deployment(BaseModel):
    """A deployment row: the user's spec, the controller's status, and bookkeeping."""

    name: str
    spec: DeploymentSpec
    status: DeploymentStatus = Field(default_factory=DeploymentStatus)
    generation: int = 1              # +1 on every spec change
    deleting: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def desired_replicas(self) -> int:
        """What the deployment aims for, the one meaning of "desired" in alerts, gauges,
        series, dashboard and CLI: the autoscaler's count when it autoscales, else the
        spec's (``status.desired_replicas`` is that once the controller has seen it)."""
        if self.spec.autoscaling is not None:
            return self.status.desired_replicas
        return self.spec.replicas


# -- rollouts ------------------------------------------------------------------------------

class Template(BaseModel):
    """One replica template of a deployment: the spec its replicas were started from.
    ``generation`` names it (replicas carry it); equal ``hash`` means interchangeable."""

    generation: int
    hash: str
    spec: DeploymentSpec

    @property
    def label(self) -> str:
        spec = self.spec
        if spec.photon.startswith("builtin:") or not spec.photon_version:
            return f"{spec.photon} (generation {self.generation})"
        return f"{spec.photon}@{spec.photon_version} (generation {self.generation})"


class RolloutPhase(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"      # the target serves all traffic
    ROLLED_BACK = "RolledBack"   # a check failed; the stable template serves again
    ABORTED = "Aborted"          # a user aborted; the stable template serves again


DONE_PHASES = frozenset({RolloutPhase.SUCCEEDED, RolloutPhase.ROLLED_BACK,
                         RolloutPhase.ABORTED})


class CheckResult(BaseModel):
    """One analysis check: the canary's figure beside the stable set's, and the verdict."""

    name: str                        # "success-rate", "latency-p99", "smoke", "health"
    value: float | None = None       # the canary's figure (None: no requests yet)
    stable: float | None = None      # the stable set's figure, for comparison
    threshold: float | None = None
    unit: str = ""                   # "%" or "ms"
    requests: int = 0                # canary requests in the window
    stable_requests: int = 0
    passed: bool | None = None       # None: not enough requests to tell yet
    detail: str = ""


class RolloutStatus(BaseModel):
    """The state of one rollout, written by the controller only and kept in the store, so a
    restarted control plane carries on from here."""

    id: int                          # 1, 2, ... per deployment (0: the first template)
    strategy: StrategySpec
    phase: RolloutPhase = RolloutPhase.PROGRESSING
    stable: Template                 # what served before; serves again on rollback
    target: Template                 # what the spec asks for
    previous: Template | None = None     # blue-green: the old set, kept until keep_until
    keep_until: float | None = None
    step: int = -1                   # canary: index of the held weight; blue-green: 1 switched
    weights: dict[str, int] = Field(default_factory=dict)  # generation -> traffic %
    desired: dict[str, int] = Field(default_factory=dict)  # generation -> replicas
    started_at: float = 0.0
    step_started_at: float = 0.0    # also the start of the analysis window
    waiting_since: float | None = None   # waiting on new replicas, with no progress, since
    target_ready: int = 0            # ready replicas of the target at the last decision
    finished_at: float | None = None
    analysis: list[CheckResult] = Field(default_factory=list)
    message: str = ""
    reason: str = ""                 # why it was rolled back or aborted


class RolloutControl(BaseModel):
    """What a user asked of a rollout (written by the API only); applies to rollout ``id``."""

    id: int = 0
    paused: bool = False
    promote: bool = False
    abort: bool = False


class Rollout(BaseModel):
    """``GET /deployments/{name}/rollout``: the controller's state and the user's requests."""

    deployment: str
    status: RolloutStatus
    control: RolloutControl = Field(default_factory=RolloutControl)


class HandlerInfo(BaseModel):
    """One handler of a photon as the inspector saw it."""

    name: str
    path: str                        # route path on the replica, e.g. "/echo"
    stream: bool = False
    batch: int | None = None         # max batch size, None when not batched
    max_wait_ms: float | None = None


class PhotonVersion(BaseModel):
    """One stored, content-addressed version of a photon."""

    name: str
    version: int
    entry: str                       # "app.py:Echo" inside the bundle
    digest: str                      # sha256 of the bundle's canonical archive
    class_name: str
    handlers: list[HandlerInfo] = Field(default_factory=list)
    requirements: list[str] = Field(default_factory=list)
    # the default of deployments that give no resources (and no GPU models): a classic
    # photon's deployment_template resource_shape (leptonic.compat.shapes); None: none
    resources: Resources | None = None
    gpu_models: list[str] = Field(default_factory=list)
    created_at: float = 0.0


class Event(BaseModel):
    id: int = 0
    time: float
    object: str                      # "deployment/echo", "replica/echo-1a2b", "photon/echo"
    kind: str = "Normal"             # "Normal" | "Warning"
    reason: str                      # CamelCase: "Created", "ReplicaCrashed", "Scaled"
    message: str = ""


class NodeState(StrEnum):
    READY = "Ready"             # alive and takes new replicas
    NOT_READY = "NotReady"      # not answering: its replicas are replaced elsewhere
    CORDONED = "Cordoned"       # alive, takes no new replicas, keeps its own
    DRAINING = "Draining"       # alive, takes no new replicas, its own are moved elsewhere
    STANDBY = "Standby"         # alive, nothing placed; powered down (or idle) until needed


class NodeControl(BaseModel):
    """What an admin asked of a node (written by the API only)."""

    cordoned: bool = False
    draining: bool = False


class Node(BaseModel):
    """A machine (or Ray node) that runs replicas. Observed by the controller from the
    runtime; ``control`` is the admin's half, stored apart so neither overwrites the other.

    ``capacity`` and ``allocated`` use the keys ``cpu`` (cores), ``memory_mb`` and ``gpu``.
    """

    name: str
    id: str = ""                     # the runtime's own id (Ray node id)
    tier: str = "datacenter"         # "datacenter" | "edge", from the node label ``tier``
    address: str = ""                # where its replicas listen (IP)
    capacity: dict[str, float] = Field(default_factory=dict)
    allocated: dict[str, float] = Field(default_factory=dict)   # by leptonic's replicas
    gpu_model: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    alive: bool = True
    status: str = "Ready"            # NodeState, from alive + control
    heartbeat_at: float = 0.0        # last time the runtime saw it alive
    control: NodeControl = Field(default_factory=NodeControl)
    # controller-written: nothing placed and let go to standby by consolidation; it takes
    # work again when needed (placement prices waking it)
    standby: bool = False
    # the admin's power override (core.power.check_override), API-written like ``control``;
    # None: the defaults for its CPUs and GPU model (core.power.node_power)
    power: dict[str, Any] | None = None

    def state(self) -> NodeState:
        if not self.alive:
            return NodeState.NOT_READY
        if self.control.draining:
            return NodeState.DRAINING
        if self.control.cordoned:
            return NodeState.CORDONED
        if self.standby:
            return NodeState.STANDBY
        return NodeState.READY


# -- jobs (core/jobs.py plans them, controller/jobs.py runs them) -----------------------

class JobType(StrEnum):
    """What kind of task a job is; it decides where its attempts may run."""

    COMPUTATION = "computation"   # datacenter nodes
    STORAGE = "storage"           # I/O with little CPU: nodes labelled storage=true, else any
    EDGE = "edge"                 # edge nodes


class JobScale(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


#: the resource shape of each scale, per attempt (docs/JOBS.md); explicit resources win
SCALES: dict[JobScale, Resources] = {
    JobScale.SMALL: Resources(cpu=0.5, memory_mb=512),
    JobScale.MEDIUM: Resources(cpu=1.0, memory_mb=2048),
    JobScale.LARGE: Resources(cpu=2.0, memory_mb=8192),
}
#: the node label a storage task prefers (``leptonic up``'s Ray nodes: ``--labels``)
STORAGE_LABEL = ("storage", "true")
MAX_COMPLETIONS = 100_000
DEFAULT_MAX_OUTPUT_MB = 256


class JobPhase(StrEnum):
    QUEUED = "Queued"           # no attempt running: waiting for capacity or a backoff
    RUNNING = "Running"         # at least one attempt running
    SUCCEEDED = "Succeeded"     # every index succeeded
    FAILED = "Failed"           # see reason


class JobReason(StrEnum):
    """Why a job failed (``JobStatus.reason`` of a Failed job)."""

    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"   # an index failed past max_retries
    DEADLINE_EXCEEDED = "DeadlineExceeded"            # deadline_s after creation
    CANCELLED = "Cancelled"
    OUTPUT_TOO_LARGE = "OutputTooLarge"               # past max_output_mb
    REGISTER_FAILED = "RegisterFailed"                # a train job's model was refused


class ModelTaskRef(BaseModel):
    """A job the model registry started: on success, ``train`` registers its output as
    the next version of ``model``; ``evaluate`` records its report on ``model@version``."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(pattern="^(train|evaluate)$")
    model: str
    version: int | None = Field(default=None, ge=1)
    by: str | None = None            # who started it: the version's created_by


class JobSpec(BaseModel):
    """What the user asked for: a command in a copy of a code folder, or a photon's handler
    over lines of inputs; ``completions`` indexes, ``parallelism`` at a time. API-written."""

    model_config = ConfigDict(extra="forbid")

    type: JobType = JobType.COMPUTATION
    scale: JobScale | None = None
    command: str | None = Field(default=None, max_length=16_384)   # run by /bin/sh -c
    code: str | None = None          # artifact digest of the uploaded code folder
    photon: str | None = None        # stored photon name
    photon_version: int = Field(default=0, ge=0)
    handler: str | None = None
    inputs: str | None = None        # artifact digest of the folder holding inputs.jsonl
    inputs_count: int = Field(default=0, ge=0)
    completions: int = Field(default=1, ge=1, le=MAX_COMPLETIONS)
    parallelism: int = Field(default=1, ge=1, le=1024)
    max_retries: int = Field(default=3, ge=0, le=100)             # per index
    backoff_s: float = Field(default=10.0, ge=0, le=3600)         # first retry's delay
    backoff_max_s: float = Field(default=360.0, ge=0, le=86_400)  # doubling stops here
    deadline_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    ttl_after_finished_s: float | None = Field(default=None, ge=0, le=365 * 86_400)
    priority: int = Field(default=0, ge=-1000, le=1000)           # higher first
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)       # per attempt
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    memory_limit_mb: int | None = Field(default=DEFAULT_MEMORY_LIMIT_MB, ge=16)
    max_output_mb: int = Field(default=DEFAULT_MAX_OUTPUT_MB, ge=0, le=100 * 1024)
    model_task: ModelTaskRef | None = None    # set by the registry's train/evaluate only
    labels: dict[str, str] = Field(default_factory=dict)   # for usage: --by label:KEY
    created_by: str | None = None    # who created it (user:NAME, token:NAME); API-set

    @model_validator(mode="after")
    def _work(self) -> JobSpec:
        if self.command is None and self.photon is None:
            raise ValueError("a job needs a command (with --path for its code folder) or a "
                             "photon and a handler (with --inputs)")
        if self.command is not None and self.photon is not None:
            raise ValueError("a job runs either a command or a photon's handler, not both")
        if self.command is not None and not self.command.strip():
            raise ValueError("the command is empty")
        if self.photon is not None and not self.handler:
            raise ValueError("a photon job needs the handler to call (--handler)")
        return self


class JobStatus(BaseModel):
    """What the controller observed. Counts are of indexes; controller-written."""

    phase: JobPhase = JobPhase.QUEUED
    reason: str = ""                 # Failed: a JobReason; Queued: why it waits
    message: str = ""
    active: int = 0                  # indexes with an attempt running
    succeeded: int = 0
    failed: int = 0                  # indexes that ran out of retries
    attempts: int = 0                # attempts started, all indexes
    retries: int = 0                 # failed attempts (each one retried or final)
    last_error: str | None = None    # last log lines of the last failed attempt
    started_at: float | None = None  # first attempt
    finished_at: float | None = None
    output_bytes: int = 0
    output_files: int = 0
    updated_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED)


class Job(BaseModel):
    """A job row: the spec, the controller's status, the user's cancel/delete."""

    name: str
    spec: JobSpec
    status: JobStatus = Field(default_factory=JobStatus)
    cancelled: bool = False          # API-written: stop it, Failed/Cancelled
    deleting: bool = False           # API-written: stop it and remove it
    created_at: float = 0.0
    updated_at: float = 0.0


class AttemptState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"       # counts against the index's retries
    STOPPED = "stopped"     # preempted, cancelled, past the deadline: not its own fault


class JobAttempt(BaseModel):
    """One run of one index of a job. Controller-written."""

    id: str
    job: str
    index: int
    number: int = 1                  # 1, 2, ... per index
    state: AttemptState = AttemptState.RUNNING
    node: str = "local"
    pid: int | None = None
    log_path: str | None = None
    exit_code: int | None = None
    reason: str | None = None        # Error, OOMKilled, Lost, Preempted, Cancelled, ...
    message: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    resources: Resources | None = None   # what it holds on its node
    priority: int = 0                # its job's, so preemption needs no job lookup
    output: str | None = None        # artifact digest of what it left in its output dir
    output_bytes: int = 0
    output_files: int = 0
