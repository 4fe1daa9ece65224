"""The local runtime: each replica is a subprocess of the photon runner on a loopback port.

Replicas run in their own session (process group) so they outlive a crashed control plane;
a restarted control plane re-adopts them by pid, after checking the process really is the
replica it recorded (its command line names the replica id). Every replica's stdout and
stderr go to ``DATA_DIR/logs/<replica-id>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from leptonic.config import DataDir
from leptonic.errors import BackendError
from leptonic.observe.logs import tail_file
from leptonic.runtime.base import ProcessState, ReplicaHandle, ReplicaLaunch

log = logging.getLogger(__name__)

OWNER_ENV = "LEPTONIC_OWNER"   # marks replicas as ours, to find orphans after a crash


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Proc:
    """A replica process we started (Popen) or adopted (psutil)."""

    def __init__(self, popen: subprocess.Popen[bytes] | None, ps: psutil.Process | None,
                 handle: ReplicaHandle) -> None:
        self.popen = popen
        self.ps = ps
        self.handle = handle

    @property
    def pid(self) -> int:
        if self.popen is not None:
            return self.popen.pid
        assert self.ps is not None
        return self.ps.pid

    def returncode(self) -> tuple[bool, int | None]:
        if self.popen is not None:
            rc = self.popen.poll()
            return rc is None, rc
        assert self.ps is not None
        try:
            alive = self.ps.is_running() and self.ps.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        return alive, None


class LocalBackend:
    """Runs replicas as local subprocesses of ``python -m leptonic.photon.runner``."""

    name = "local"

    def __init__(self, layout: DataDir, *, node: str = "local", host: str = "127.0.0.1",
                 python: str | None = None) -> None:
        self.layout = layout
        self.node = node
        self.host = host
        self.python = python or sys.executable
        self._procs: dict[str, _Proc] = {}

    def log_path(self, replica_id: str) -> Path:
        return self.layout.logs / f"{replica_id}.log"

    async def start(self, launch: ReplicaLaunch) -> ReplicaHandle:
        port = free_port(self.host)
        log_path = self.log_path(launch.replica_id)
        cmd = [self.python, "-m", "leptonic.photon.runner", "--entry", launch.entry,
               "--host", self.host, "--port", str(port), "--replica-id", launch.replica_id]
        if launch.bundle_dir:
            cmd += ["--bundle", launch.bundle_dir]
        env = {**os.environ, **launch.env,
               "LEPTONIC_REPLICA_ID": launch.replica_id,
               "LEPTONIC_DEPLOYMENT": launch.deployment,
               OWNER_ENV: str(self.layout.root),
               "PYTHONUNBUFFERED": "1"}
        # the platform's own credentials are not the replica's business
        env.pop("LEPTONIC_TOKEN", None)
        try:
            popen = await asyncio.to_thread(self._spawn, cmd, env, log_path,
                                            launch.bundle_dir, launch.replica_id, port)
        except OSError as exc:
            raise BackendError(f"cannot start replica {launch.replica_id}: {exc}") from exc
        handle = ReplicaHandle(replica_id=launch.replica_id, node=self.node,
                               url=f"http://{self.host}:{port}", pid=popen.pid, port=port,
                               log_path=str(log_path))
        self._procs[launch.replica_id] = _Proc(popen, None, handle)
        log.info("started replica %s pid=%s port=%s", launch.replica_id, popen.pid, port)
        return handle

    def _spawn(self, cmd: list[str], env: dict[str, str], log_path: Path, cwd: str | None,
               replica_id: str, port: int) -> subprocess.Popen[bytes]:
        # fork/exec off the event loop: it carries gateway traffic too
        with log_path.open("ab") as out:
            out.write(f"--- leptonic: starting replica {replica_id} on port {port}\n".encode())
            out.flush()
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=cwd or str(self.layout.root), start_new_session=True, close_fds=True)

    async def stop(self, replica_id: str, grace_s: float = 10.0) -> None:
        proc = self._procs.pop(replica_id, None)
        if proc is None:
            return
        pid = proc.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + grace_s
        while asyncio.get_running_loop().time() < deadline:
            alive, _ = proc.returncode()
            if not alive:
                break
            await asyncio.sleep(0.05)
        else:
            log.warning("replica %s did not stop within %.1fs; killing", replica_id, grace_s)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.popen.wait, 5)

    async def poll(self, replica_id: str) -> ProcessState:
        proc = self._procs.get(replica_id)
        if proc is None:
            return ProcessState(replica_id, alive=False)
        alive, rc = proc.returncode()
        return ProcessState(replica_id, alive=alive, exit_code=rc)

    def _is_ours(self, ps: psutil.Process, replica_id: str) -> bool:
        try:
            cmd = ps.cmdline()
        except psutil.Error:
            return False
        return "leptonic.photon.runner" in cmd and replica_id in cmd

    async def adopt(self, handle: ReplicaHandle) -> bool:
        if handle.replica_id in self._procs:
            return True
        if handle.pid is None:
            return False
        try:
            ps = psutil.Process(handle.pid)
        except psutil.Error:
            return False
        if not self._is_ours(ps, handle.replica_id):
            return False
        self._procs[handle.replica_id] = _Proc(None, ps, handle)
        log.info("adopted replica %s pid=%s", handle.replica_id, handle.pid)
        return True

    def orphans(self, known: set[str]) -> list[psutil.Process]:
        """Runner processes of this data dir that no replica row accounts for."""
        found = []
        for ps in psutil.process_iter(["pid", "cmdline"]):
            cmd = ps.info.get("cmdline") or []
            if "leptonic.photon.runner" not in cmd or "--replica-id" not in cmd:
                continue
            rid = cmd[cmd.index("--replica-id") + 1] if cmd.index("--replica-id") + 1 < len(
                cmd) else ""
            if rid in known or rid in self._procs:
                continue
            try:
                if ps.environ().get(OWNER_ENV) != str(self.layout.root):
                    continue
            except psutil.Error:
                continue
            found.append(ps)
        return found

    async def kill_orphans(self, known: set[str]) -> int:
        victims = await asyncio.to_thread(self.orphans, known)
        for ps in victims:
            log.warning("stopping orphaned replica process pid=%s", ps.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(ps.pid, signal.SIGKILL)
        return len(victims)

    def log_tail(self, replica_id: str, lines: int = 20) -> list[str]:
        return tail_file(self.log_path(replica_id), lines)

    async def stop_all(self, grace_s: float = 10.0) -> None:
        await asyncio.gather(*(self.stop(rid, grace_s) for rid in list(self._procs)))

    async def close(self) -> None:
        self._procs.clear()
