"""The local runtime: each replica is a subprocess of the photon runner on a loopback port.

Replicas run in their own session (process group) so they outlive a crashed control plane;
a restarted control plane re-adopts them by pid, after checking the process really is the
replica it recorded (its command line names the replica id). Every replica's stdout and
stderr go to ``DATA_DIR/logs/<replica-id>.log``.

Every replica is isolated as :mod:`leptonic.runtime.isolation` decides (own uid, sandbox,
work dir outside the data dir, clean environment). Its memory is watched on every poll:
past its limit the whole process group is killed and the exit's reason is ``OOMKilled``.
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
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from leptonic.config import DataDir
from leptonic.core.models import Node
from leptonic.errors import BackendError, LeptonicError
from leptonic.observe.logs import tail_file
from leptonic.runtime.base import ProcessState, ReplicaHandle, ReplicaLaunch
from leptonic.runtime.isolation import Isolation, Prepared
from leptonic.runtime.local_jobs import LocalAttemptsMixin, marked_processes

log = logging.getLogger(__name__)

OWNER_ARG = "--platform"    # on the runner's command line: marks replicas as ours
_TREE_REFRESH_S = 2.0       # how often a replica's process tree is listed again


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def local_node(name: str = "local") -> Node:
    return Node(name=name, id=name, tier="datacenter", address="127.0.0.1",
                capacity={"cpu": float(os.cpu_count() or 1),
                          "memory_mb": float(psutil.virtual_memory().total // 2**20),
                          "gpu": 0.0},
                labels={"hostname": socket.gethostname(), "tier": "datacenter"},
                alive=True, heartbeat_at=time.time())


def _runner_pid(popen: subprocess.Popen[bytes], timeout_s: float = 5.0) -> int:
    """The runner process under a sandbox wrapper (bwrap forks it), once it has exec'd."""
    deadline = time.monotonic() + timeout_s
    top = psutil.Process(popen.pid)
    while time.monotonic() < deadline and popen.poll() is None:
        with contextlib.suppress(psutil.Error):
            for child in top.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    cmd = child.cmdline()
                    if "leptonic.photon.runner" in cmd and "bwrap" not in Path(cmd[0]).name \
                            and "setpriv" not in Path(cmd[0]).name:
                        return int(child.pid)
        time.sleep(0.01)
    return popen.pid        # it died at once (the log says why) or is slow: the wrapper


def runner_args(launch: ReplicaLaunch) -> list[str]:
    """The runner's flags for a launch's limits, timeouts and error policy."""
    args: list[str] = []
    if launch.open_files:
        args += ["--limit-open-files", str(launch.open_files)]
    if launch.processes:
        args += ["--limit-processes", str(launch.processes)]
    if launch.handler_timeout_s:
        args += ["--handler-timeout", f"{launch.handler_timeout_s:g}"]
    if launch.max_concurrency:
        args += ["--max-concurrency", str(launch.max_concurrency)]
    if launch.debug_errors:
        args.append("--debug-errors")
    return args


class _Proc:
    """A replica process we started (Popen) or adopted (psutil)."""

    def __init__(self, popen: subprocess.Popen[bytes] | None, ps: psutil.Process | None,
                 handle: ReplicaHandle, memory_mb: int | None = None) -> None:
        self.popen = popen
        self.ps = ps
        self.handle = handle
        self.memory_mb = memory_mb
        self.pgid: int | None = None        # the process group: sandbox and runner alike
        self.killed: tuple[str, str] | None = None     # (reason, message) once we killed it
        self._tree: list[psutil.Process] = []
        self._tree_at = -1e9

    def rss_mb(self, now: float) -> float:
        """Resident memory of the replica's whole process tree (sandbox and all), MiB."""
        if now - self._tree_at > _TREE_REFRESH_S:
            self._tree_at = now
            try:
                top = psutil.Process(self.pgid or self.pid)
                self._tree = [top, *top.children(recursive=True)]
            except psutil.Error:
                self._tree = []
        total = 0
        for p in self._tree:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    @property
    def pid(self) -> int:
        if self.popen is not None:
            return self.popen.pid
        assert self.ps is not None
        return int(self.ps.pid)

    def killpg(self, sig: int) -> None:
        """Signal the replica's whole process group (sandbox, runner, its children)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.pgid is None:
                self.pgid = os.getpgid(self.pid)
            os.killpg(self.pgid, sig)

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


class LocalBackend(LocalAttemptsMixin):
    """Runs replicas as local subprocesses of ``python -m leptonic.photon.runner``, and
    job attempts (``local_jobs``)."""

    name = "local"

    def __init__(self, layout: DataDir, *, node: str = "local", host: str = "127.0.0.1",
                 python: str | None = None,
                 isolation: Isolation | Callable[[], Isolation] | None = None) -> None:
        self.layout = layout
        self.node = node
        self.host = host
        self.python = python or sys.executable
        self._isolation = isolation
        self._procs: dict[str, _Proc] = {}
        self._attempts: dict[str, _Proc] = {}

    @property
    def isolation(self) -> Isolation:
        iso = self._isolation
        if iso is None:
            iso = self._isolation = Isolation(self.layout.root)
        elif not isinstance(iso, Isolation):
            iso = self._isolation = iso()
        return iso

    async def nodes(self) -> list[Node]:
        """This machine, as the one node: its real capacity, always alive while we run."""
        return [local_node(self.node)]

    def log_path(self, replica_id: str) -> Path:
        return self.layout.logs / f"{replica_id}.log"

    async def start(self, launch: ReplicaLaunch) -> ReplicaHandle:
        port = free_port(self.host)
        log_path = self.log_path(launch.replica_id)
        iso = self.isolation
        cmd = [self.python, "-m", "leptonic.photon.runner", "--entry", launch.entry,
               "--host", self.host, "--port", str(port), "--replica-id", launch.replica_id,
               OWNER_ARG, iso.owner_mark, *runner_args(launch)]
        env = {**launch.env, "LEPTONIC_REPLICA_ID": launch.replica_id,
               "LEPTONIC_DEPLOYMENT": launch.deployment}
        bundle = Path(launch.bundle_dir) if launch.bundle_dir else None
        try:
            popen, prepared = await asyncio.to_thread(
                self._spawn, iso, cmd, env, bundle, log_path, launch, port)
        except OSError as exc:
            raise BackendError(f"cannot start replica {launch.replica_id}: {exc}") from exc
        # the runner's own pid (inside a sandbox it is a grandchild of the one started)
        pid = await asyncio.to_thread(_runner_pid, popen) if prepared.argv[0] != cmd[0] \
            else popen.pid
        handle = ReplicaHandle(replica_id=launch.replica_id, node=self.node,
                               url=f"http://{self.host}:{port}", pid=pid, port=port,
                               log_path=str(log_path))
        self._procs[launch.replica_id] = _Proc(popen, None, handle, launch.memory_mb)
        self._procs[launch.replica_id].pgid = popen.pid
        log.info("started replica %s pid=%s port=%s uid=%s", launch.replica_id, popen.pid,
                 port, prepared.run_uid if prepared.run_uid is not None else os.getuid())
        return handle

    def _spawn(self, iso: Isolation, cmd: list[str], env: dict[str, str],
               bundle: Path | None, log_path: Path, launch: ReplicaLaunch, port: int
               ) -> tuple[subprocess.Popen[bytes], Prepared]:
        # copy and fork/exec off the event loop: it carries gateway traffic too
        prepared = iso.prepare(launch.replica_id, launch.deployment, cmd, env, bundle)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(f"--- leptonic: starting replica {launch.replica_id} on port {port}"
                      "\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(
                    prepared.argv, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=prepared.env, cwd=prepared.cwd,
                    start_new_session=True, close_fds=True, user=prepared.user,
                    group=prepared.group,
                    extra_groups=[] if prepared.user is not None else None, umask=0o077)
            except BaseException:
                iso.release(launch.replica_id)
                raise
        return popen, prepared

    async def stop(self, replica_id: str, grace_s: float = 10.0) -> None:
        proc = self._procs.pop(replica_id, None)
        if proc is None:        # gone already (e.g. lost across a restart): its work dir too
            with contextlib.suppress(LeptonicError, OSError):
                await asyncio.to_thread(self.isolation.release, replica_id)
            return
        proc.killpg(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + grace_s
        while asyncio.get_running_loop().time() < deadline:
            alive, _ = proc.returncode()
            if not alive:
                break
            await asyncio.sleep(0.05)
        else:
            log.warning("replica %s did not stop within %.1fs; killing", replica_id, grace_s)
            proc.killpg(signal.SIGKILL)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.popen.wait, 5)
        await asyncio.to_thread(self.isolation.release, replica_id)

    async def poll(self, replica_id: str) -> ProcessState:
        proc = self._procs.get(replica_id)
        if proc is None:
            return ProcessState(replica_id, alive=False)
        alive, rc = proc.returncode()
        if alive and proc.memory_mb and proc.killed is None:
            used = proc.rss_mb(time.monotonic())
            if used > proc.memory_mb:
                proc.killed = ("OOMKilled", f"used {used:.0f} MiB of memory, over its limit "
                                            f"of {proc.memory_mb} MiB; killed")
                log.warning("replica %s %s", replica_id, proc.killed[1])
                proc.killpg(signal.SIGKILL)
                alive, rc = False, -signal.SIGKILL
        if not alive and proc.killed is not None:
            return ProcessState(replica_id, alive=False, exit_code=rc,
                                reason=proc.killed[0], message=proc.killed[1])
        return ProcessState(replica_id, alive=alive, exit_code=rc)

    def _is_ours(self, ps: psutil.Process, replica_id: str) -> bool:
        try:
            cmd = ps.cmdline()
        except psutil.Error:
            return False
        return "leptonic.photon.runner" in cmd and replica_id in cmd and \
            self.isolation.owner_mark in cmd

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
        self._procs[handle.replica_id] = _Proc(None, ps, handle, handle.memory_mb)
        log.info("adopted replica %s pid=%s", handle.replica_id, handle.pid)
        return True

    def orphans(self, known: set[str]) -> list[psutil.Process]:
        """Runner processes of this data dir that no replica row accounts for."""
        return [ps for ps, rid in marked_processes("leptonic.photon.runner", "--replica-id",
                                                   self.isolation.owner_mark)
                if rid not in known and rid not in self._procs]

    async def kill_orphans(self, known: set[str]) -> int:
        victims = await asyncio.to_thread(self.orphans, known)
        for ps in victims:
            log.warning("stopping orphaned replica process pid=%s", ps.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(ps.pid), signal.SIGKILL)
            cmd = ps.info.get("cmdline") or []
            if "--replica-id" in cmd and cmd.index("--replica-id") + 1 < len(cmd):
                await asyncio.to_thread(self.isolation.release,
                                        cmd[cmd.index("--replica-id") + 1])
        return len(victims)

    def log_tail(self, replica_id: str, lines: int = 20) -> list[str]:
        return tail_file(self.log_path(replica_id), lines)

    async def stop_all(self, grace_s: float = 10.0) -> None:
        await asyncio.gather(*(self.stop(rid, grace_s) for rid in list(self._procs)))

    async def close(self) -> None:
        self._procs.clear()
