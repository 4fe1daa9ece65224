"""The one narrow seam for side effects: every process start/stop goes through a Backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from leptonic.core.models import Node


@dataclass(frozen=True)
class ReplicaLaunch:
    """Everything a backend needs to start one replica."""

    replica_id: str
    deployment: str
    entry: str                  # "app.py:Echo" inside bundle_dir, or "builtin:NAME"
    bundle_dir: str | None      # unpacked photon bundle (None for builtin photons)
    env: dict[str, str] = field(default_factory=dict)
    memory_mb: int | None = None        # killed past it (reason OOMKilled)
    cpu: float | None = None            # cores, where the runtime can enforce it
    open_files: int | None = None
    processes: int | None = None
    handler_timeout_s: float | None = None
    max_concurrency: int | None = None
    debug_errors: bool = False
    node: str | None = None             # the node placement chose (None: the runtime's own)
    cpu_request: float = 0.0            # what placement counted on that node
    memory_request_mb: int = 0
    gpu_request: float = 0.0


@dataclass(frozen=True)
class ReplicaHandle:
    """Where a started replica lives."""

    replica_id: str
    node: str
    url: str
    pid: int | None = None
    port: int | None = None
    log_path: str | None = None
    memory_mb: int | None = None        # its memory limit, watched after an adoption too


@dataclass(frozen=True)
class ProcessState:
    """What the backend can tell about a replica's process without asking it over HTTP."""

    replica_id: str
    alive: bool
    exit_code: int | None = None
    reason: str | None = None       # why it ended, when the runtime knows (OOMKilled)
    message: str | None = None      # the figures behind the reason


@dataclass(frozen=True)
class AttemptLaunch:
    """Everything a backend needs to start one attempt of one index of a job."""

    attempt_id: str
    job: str
    index: int
    number: int = 1
    command: str | None = None          # run by /bin/sh -c in a copy of ``bundle_dir``
    bundle_dir: str | None = None       # the code folder, or the photon's bundle
    entry: str | None = None            # photon jobs: "app.py:Cls" in the bundle
    handler: str | None = None          # photon jobs: the handler called per input line
    inputs: bytes | None = None         # photon jobs: this index's lines of inputs.jsonl
    env: dict[str, str] = field(default_factory=dict)
    memory_mb: int | None = None        # killed past it (reason OOMKilled)
    open_files: int | None = 4096
    processes: int | None = 1024
    node: str | None = None
    cpu_request: float = 0.0
    memory_request_mb: int = 0
    gpu_request: float = 0.0


@dataclass(frozen=True)
class AttemptHandle:
    """Where a started attempt runs."""

    attempt_id: str
    node: str
    pid: int | None = None
    log_path: str | None = None
    memory_mb: int | None = None


#: the file an attempt's output lies in for the control plane to collect, when it is one
OUTPUT_NAME = "output"


class AttemptBackend(Protocol):
    """Job attempts: a command (or a photon's handler over inputs) that runs to its end.

    An attempt keeps its exit status and its output folder after it ends, even across a
    control-plane restart, until ``release_attempt``."""

    async def start_attempt(self, launch: AttemptLaunch) -> AttemptHandle:
        """Start it and return at once."""
        ...

    async def poll_attempt(self, attempt_id: str) -> ProcessState:
        """Running (alive), or ended with its exit code; ``reason`` OOMKilled when killed
        for memory, Lost when nothing of it is known any more."""
        ...

    async def stop_attempt(self, attempt_id: str, grace_s: float = 5.0) -> None:
        """Stop it (SIGTERM, SIGKILL after ``grace_s``) and release it."""
        ...

    async def adopt_attempt(self, handle: AttemptHandle) -> bool:
        """Take over an attempt started by an earlier control plane, running or ended
        with its status kept; False when nothing of it is left."""
        ...

    async def collect_output(self, attempt_id: str, dest: str, max_bytes: int
                             ) -> tuple[int, int]:
        """Copy the ended attempt's output folder into ``dest`` (regular files only);
        (files, bytes). Raises OutputTooLarge past ``max_bytes``."""
        ...

    async def release_attempt(self, attempt_id: str) -> None:
        """Forget an ended attempt: its work dir, status and output."""
        ...

    def attempt_log_tail(self, attempt_id: str, lines: int = 20) -> list[str]:
        ...

    async def kill_orphan_attempts(self, known: set[str]) -> int:
        """Stop attempts of this platform that no stored running attempt accounts for."""
        ...


class Backend(Protocol):
    name: str

    async def nodes(self) -> list[Node]:
        """Every node this runtime has now: name, id, tier, address, capacity, labels and
        whether it is alive (allocation and the admin's control are the controller's)."""
        ...

    async def start(self, launch: ReplicaLaunch) -> ReplicaHandle:
        """Launch a replica and return at once; readiness is probed over HTTP later."""
        ...

    async def stop(self, replica_id: str, grace_s: float = 10.0) -> None:
        """Stop a replica: SIGTERM, then SIGKILL after ``grace_s``. Unknown ids are a no-op."""
        ...

    async def poll(self, replica_id: str) -> ProcessState:
        """Is the replica's process alive; if not, its exit code when known."""
        ...

    async def adopt(self, handle: ReplicaHandle) -> bool:
        """Take over a replica started by an earlier control plane; False if it is gone."""
        ...

    def log_tail(self, replica_id: str, lines: int = 20) -> list[str]:
        """The last lines the replica wrote, for status messages."""
        ...

    async def kill_orphans(self, known: set[str]) -> int:
        """Stop replica processes of this platform that no stored replica accounts for."""
        ...

    async def stop_all(self, grace_s: float = 10.0) -> None:
        """Stop every replica this backend is tracking (platform shutdown)."""
        ...

    async def close(self) -> None:
        """Stop watching; does not stop replicas."""
        ...
