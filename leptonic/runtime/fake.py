"""An in-memory backend for unit tests: records calls, lets the test kill replicas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leptonic.runtime.base import ProcessState, ReplicaHandle, ReplicaLaunch


def _fake_node() -> Any:
    from leptonic.core.models import Node

    return Node(name="fake", tier="datacenter", address="fake",
                capacity={"cpu": 64.0, "memory_mb": 256 * 1024.0, "gpu": 0.0})


@dataclass
class FakeBackend:
    name: str = "fake"
    started: list[ReplicaLaunch] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    alive: dict[str, bool] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    adoptable: set[str] = field(default_factory=set)
    logs: dict[str, list[str]] = field(default_factory=dict)
    fail_start: bool = False
    attempts: dict[str, Any] = field(default_factory=dict)          # running, by id
    attempt_exits: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    outputs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    stopped_attempts: list[str] = field(default_factory=list)
    _next_pid: int = 1000
    # one big node unless a test sets its own cluster
    cluster: list[Any] = field(default_factory=lambda: [_fake_node()])

    async def nodes(self) -> list[Any]:
        return list(self.cluster)

    async def start(self, launch: ReplicaLaunch) -> ReplicaHandle:
        if self.fail_start:
            from leptonic.errors import BackendError
            raise BackendError(f"cannot start replica {launch.replica_id}: fake failure")
        self.started.append(launch)
        self.alive[launch.replica_id] = True
        self._next_pid += 1
        port = 20000 + self._next_pid
        return ReplicaHandle(launch.replica_id, launch.node or "fake", f"http://fake:{port}",
                             pid=self._next_pid, port=port)

    async def stop(self, replica_id: str, grace_s: float = 10.0) -> None:
        self.stopped.append(replica_id)
        self.alive[replica_id] = False

    async def poll(self, replica_id: str) -> ProcessState:
        alive = self.alive.get(replica_id, False)
        return ProcessState(replica_id, alive, None if alive else self.exit_codes.get(replica_id))

    async def adopt(self, handle: ReplicaHandle) -> bool:
        if handle.replica_id in self.adoptable:
            self.alive[handle.replica_id] = True
            return True
        return False

    def kill(self, replica_id: str, exit_code: int = -9) -> None:
        self.alive[replica_id] = False
        self.exit_codes[replica_id] = exit_code

    def log_tail(self, replica_id: str, lines: int = 20) -> list[str]:
        return self.logs.get(replica_id, [])[-lines:]

    async def kill_orphans(self, known: set[str]) -> int:
        return 0

    async def stop_all(self, grace_s: float = 10.0) -> None:
        for rid, alive in list(self.alive.items()):
            if alive:
                await self.stop(rid, grace_s)

    async def close(self) -> None:
        return None

    # -- job attempts -------------------------------------------------------------------------
    # ``attempts`` holds what was started; a test ends one with ``finish(id, code)`` and
    # gives it output with ``outputs[id] = {"file": b"..."}``.
    async def start_attempt(self, launch: Any) -> Any:
        from leptonic.runtime.base import AttemptHandle

        if self.fail_start:
            from leptonic.errors import BackendError
            raise BackendError(f"cannot start attempt {launch.attempt_id}: fake failure")
        self.attempts[launch.attempt_id] = launch
        self.attempt_exits.pop(launch.attempt_id, None)
        self._next_pid += 1
        return AttemptHandle(launch.attempt_id, launch.node or "fake", pid=self._next_pid,
                             log_path=f"/fake/{launch.attempt_id}.log")

    def finish(self, attempt_id: str, code: int = 0, reason: str | None = None) -> None:
        self.attempt_exits[attempt_id] = (code, reason)

    async def poll_attempt(self, attempt_id: str) -> ProcessState:
        if attempt_id in self.attempt_exits:
            code, reason = self.attempt_exits[attempt_id]
            return ProcessState(attempt_id, False, code, reason)
        if attempt_id in self.attempts:
            return ProcessState(attempt_id, True)
        return ProcessState(attempt_id, False, None, "Lost", "nothing of it is left")

    async def stop_attempt(self, attempt_id: str, grace_s: float = 5.0) -> None:
        self.stopped_attempts.append(attempt_id)
        self.attempts.pop(attempt_id, None)
        self.attempt_exits.pop(attempt_id, None)

    async def adopt_attempt(self, handle: Any) -> bool:
        return handle.attempt_id in self.attempts or handle.attempt_id in self.attempt_exits

    async def collect_output(self, attempt_id: str, dest: str, max_bytes: int
                             ) -> tuple[int, int]:
        from pathlib import Path

        from leptonic.errors import OutputTooLarge

        files = self.outputs.get(attempt_id, {})
        total = sum(len(v) for v in files.values())
        if total > max_bytes:
            raise OutputTooLarge(f"the attempt left more than {max_bytes} bytes of output")
        for name, data in files.items():
            (Path(dest) / name).write_bytes(data)
        return len(files), total

    async def release_attempt(self, attempt_id: str) -> None:
        self.attempts.pop(attempt_id, None)
        self.attempt_exits.pop(attempt_id, None)

    def attempt_log_tail(self, attempt_id: str, lines: int = 20) -> list[str]:
        return self.logs.get(attempt_id, [])[-lines:]

    async def kill_orphan_attempts(self, known: set[str]) -> int:
        return 0


@dataclass
class FakeProber:
    """Answers probes of fake replicas: every url is ready unless listed in ``down`` (no
    answer: dead or hung) or ``unready`` (answers 503); smoke checks fail for urls in
    ``smoke_fails`` (url -> why)."""

    down: set[str] = field(default_factory=set)
    unready: set[str] = field(default_factory=set)
    smoke_fails: dict[str, str] = field(default_factory=dict)
    smoked: list[str] = field(default_factory=list)
    calls: int = 0

    async def probe(self, url: str, timeout_s: float = 1.0) -> Any:
        from leptonic.core.models import ProbeResult

        self.calls += 1
        if url in self.down:
            return ProbeResult.NO_ANSWER
        if url in self.unready:
            return ProbeResult.NOT_READY
        return ProbeResult.READY

    async def ready(self, url: str) -> bool:
        return str(await self.probe(url)) == "ready"

    async def smoke(self, url: str, path: str, body: Any, timeout_s: float = 5.0
                    ) -> str | None:
        self.smoked.append(url)
        return self.smoke_fails.get(url)

    async def aclose(self) -> None:
        return None
