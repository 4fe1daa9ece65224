"""The replica actor of the Ray runtime: it runs the photon runner on its node.

The actor unpacks the bundle it was handed through the object store (never a shared
filesystem) into a folder of its own on its node, and starts the same photon runner as the
local runtime, serving HTTP on the node's address, as a child the kernel kills when the
actor's process ends (``PR_SET_PDEATHSIG``): when the node goes, so does the replica;
nothing of it outlives its raylet. The gateway talks to it straight over HTTP (no Ray proxy
hop). What the runner prints goes to a log file the control plane ships home
(:meth:`ReplicaActor.read_log`).

Ray imports this module in its worker processes, so it must import without side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("leptonic.runtime.ray_replica")

MAX_LOG_CHUNK = 1 << 20
MEMORY_CHECK_S = 0.5       # how often a replica's memory is checked against its limit


class ReplicaActor:
    """One replica. Created detached and named, so a restarted control plane finds it."""

    def __init__(self, replica_id: str, deployment: str, entry: str, bundle: bytes | None,
                 env: dict[str, str], host: str, options: dict[str, Any]) -> None:
        self.replica_id = replica_id
        self.deployment = deployment
        self.entry = entry
        self.host = host
        self.options = options
        self.root = Path(tempfile.mkdtemp(prefix=f"leptonic-{replica_id}-"))
        self.log_path = self.root / "replica.log"
        self.bundle_dir: Path | None = None
        if bundle is not None:
            from leptonic.store.artifacts import extract_bundle

            self.bundle_dir = self.root / "bundle"
            self.bundle_dir.mkdir()
            extract_bundle(io.BytesIO(bundle), self.bundle_dir, max_bytes=1 << 31)
        self.env = {**env, "LEPTONIC_REPLICA_ID": replica_id, "LEPTONIC_DEPLOYMENT": deployment}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runner_pid: int | None = None
        self.iso: Any = None
        self._out = self.log_path.open("ab", buffering=0)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Start the photon runner on this node; returns where, once it listens.

        The runner is the same process as on the local runtime (uvloop on its main thread,
        its rlimits set before user code loads), a child of this actor that the kernel
        kills the moment the actor's process ends (``PR_SET_PDEATHSIG``): when the node
        goes, so does the replica."""
        opts = self.options
        port = _free_port(self.host)
        runner = [sys.executable, "-m", "leptonic.photon.runner", "--entry", self.entry,
                  "--host", self.host, "--port", str(port), "--replica-id", self.replica_id]
        for flag, key in (("--handler-timeout", "handler_timeout_s"),
                          ("--max-concurrency", "max_concurrency"),
                          ("--limit-open-files", "open_files"),
                          ("--limit-processes", "processes")):
            if opts.get(key):
                runner += [flag, str(opts[key])]
        if opts.get("debug_errors"):
            runner.append("--debug-errors")
        prepared = await asyncio.to_thread(self._prepare, runner)
        self._line(f"--- leptonic: starting replica {self.replica_id} on {self.host}:{port} "
                   f"(ray actor pid {os.getpid()}, {self.iso.describe()})")
        # forked on the actor's own loop thread, which lives as long as the actor: the
        # kernel ties PR_SET_PDEATHSIG to the forking thread, not to the process
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "leptonic.runtime.ray_replica", "--", *prepared.argv],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=prepared.env, cwd=prepared.cwd, start_new_session=True, close_fds=True,
            user=prepared.user, group=prepared.group,
            extra_groups=[] if prepared.user is not None else None, umask=0o077)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.replica_id} exited with code "
                                   f"{self.proc.returncode} before it listened")
            try:
                with socket.create_connection((self.host, port), timeout=0.2):
                    break
            except OSError:
                await asyncio.sleep(0.02)
        if prepared.argv[0] != runner[0]:          # in a sandbox: the runner is a grandchild
            from leptonic.runtime.local import _runner_pid

            self.runner_pid = await asyncio.to_thread(_runner_pid, self.proc)
        return {"port": port, "pid": self.pid(), "host": self.host,
                "uid": prepared.run_uid}

    def _prepare(self, runner: list[str]) -> Any:
        """Isolate the runner on this node as the control plane asked (own uid where Ray's
        workers are root, a bubblewrap sandbox where installed: the platform's data dir
        hidden, the bundle read-only, a clean environment, no Ray or leptonic settings);
        the bundle copy in the work dir is its cwd."""
        from leptonic.runtime.isolation import on_node

        spec = self.options.get("isolation") or {"mode": "auto", "data_dir": "/nonexistent"}
        try:
            self.iso = on_node(spec)
        except Exception as exc:            # one line back to the control plane
            detail = getattr(exc, "detail", None) or str(exc)
            raise RuntimeError(f"cannot isolate the replica on this node: {detail}") from exc
        return self.iso.prepare(self.replica_id, self.deployment, runner, self.env,
                                self.bundle_dir, die_with_parent=True)

    async def wait(self) -> dict[str, Any]:
        """Returns when the runner exits (killed past its memory limit: reason
        ``OOMKilled``); a control plane keeps one call outstanding to learn of the
        replica's end (or, raising, of the actor's)."""
        proc = self.proc
        if proc is None:
            return {"message": "not started", "reason": None}
        limit = float(self.options.get("memory_mb") or 0)
        reason = None
        message = None
        if not limit:
            await asyncio.to_thread(proc.wait)
        while proc.poll() is None:
            used = _tree_rss_mb(proc.pid)
            if used > limit:
                reason = "OOMKilled"
                message = (f"used {used:.0f} MiB of memory, over its limit of {limit:g} MiB; "
                           "killed")
                self._line(f"--- leptonic: replica {self.replica_id} {message}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.sleep(MEMORY_CHECK_S)
        return {"message": message or f"exited with code {proc.returncode}",
                "reason": reason}

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.root / "bundle", ignore_errors=True)
        if self.iso is not None:
            await asyncio.to_thread(self.iso.release, self.replica_id)

    def pid(self) -> int:
        """The runner's pid (inside a sandbox, the grandchild that runs the photon)."""
        if self.runner_pid is not None:
            return self.runner_pid
        return self.proc.pid if self.proc is not None else os.getpid()

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def ping(self) -> str:
        return self.replica_id

    # -- logs --------------------------------------------------------------------------------
    def read_log(self, offset: int) -> tuple[int, bytes]:
        """Bytes of the replica's log from ``offset`` (at most 1 MiB); the new offset."""
        try:
            with self.log_path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset > size:       # rotated under us: start again
                    offset = 0
                f.seek(offset)
                data = f.read(MAX_LOG_CHUNK)
        except OSError:
            return offset, b""
        return offset + len(data), data

    def _line(self, text: str) -> None:
        self._out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and everything under it (the sandbox's runner)."""
    from leptonic.runtime.ray_attempt import _tree_rss_mb as tree

    return tree(pid)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent_then_exec(argv: list[str]) -> None:
    """Ask the kernel to SIGKILL this process when its parent (the actor) ends, then become
    the runner. Checked after the call, so a parent already gone is not missed."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:        # PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)
    os.execv(argv[0], argv)


if __name__ == "__main__":        # python -m leptonic.runtime.ray_replica -- RUNNER ARGS...
    _die_with_parent_then_exec(sys.argv[sys.argv.index("--") + 1:])
