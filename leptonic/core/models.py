"""Spec/status types shared by the API, the store and the controllers.

``*Spec`` is what a user asked for (written by the API); ``*Status`` and ``Replica`` are
what the controllers observed (written by controllers only).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from leptonic.errors import InvalidInput

NAME_RULE = (
    "names are 1-40 characters of lowercase letters, digits and '-', "
    "start with a letter and do not end with '-'"
)
_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")
MAX_REPLICAS = 64
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_valid_name(value: str) -> bool:
    return bool(_NAME_RE.match(value))


def check_name(value: str, kind: str = "name") -> str:
    """Return ``value`` if it is a DNS-label-like slug, else raise InvalidInput naming the rule."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidInput(f"invalid {kind} {value!r}: {NAME_RULE}")
    return value


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


class DeploymentSpec(BaseModel):
    """What the user asked for. Written by the API only."""

    photon: str                      # photon name, or ``builtin:NAME``
    photon_version: int = Field(ge=0, default=0)  # resolved version (0 for builtin)
    replicas: int = Field(ge=0, le=MAX_REPLICAS, default=1)
    env: dict[str, str] = Field(default_factory=dict)
    # secrets injected as environment variables of the same name (values never stored here)
    secrets: list[str] = Field(default_factory=list)
    public: bool = False             # /run/<name> without a token when True


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
    last_error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ready_at: float | None = None
    next_restart_at: float | None = None


class Deployment(BaseModel):
    """A deployment row: the user's spec, the controller's status, and bookkeeping."""

    name: str
    spec: DeploymentSpec
    status: DeploymentStatus = Field(default_factory=DeploymentStatus)
    generation: int = 1              # +1 on every spec change
    deleting: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0


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
    created_at: float = 0.0


class Event(BaseModel):
    id: int = 0
    time: float
    object: str                      # "deployment/echo", "replica/echo-1a2b", "photon/echo"
    kind: str = "Normal"             # "Normal" | "Warning"
    reason: str                      # CamelCase: "Created", "ReplicaCrashed", "Scaled"
    message: str = ""


class Node(BaseModel):
    name: str
    tier: str = "datacenter"         # "datacenter" | "edge"
    capacity: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    status: str = "Ready"
    heartbeat_at: float = 0.0
