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
        home = self.root / "home"
        home.mkdir()
        # the replica's own environment, before any of its code is imported
        for key in [k for k in os.environ if k.startswith("LEPTONIC_")]:
            del os.environ[key]
        os.environ.update(env)
        os.environ.update({"LEPTONIC_REPLICA_ID": replica_id,
                           "LEPTONIC_DEPLOYMENT": deployment, "HOME": str(home),
                           "TMPDIR": str(home), "PYTHONUNBUFFERED": "1"})
        self.proc: subprocess.Popen[bytes] | None = None
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
        cmd = [sys.executable, "-m", "leptonic.runtime.ray_replica", "--",
               sys.executable, "-m", "leptonic.photon.runner", "--entry", self.entry,
               "--host", self.host, "--port", str(port), "--replica-id", self.replica_id]
        if self.bundle_dir is not None:
            cmd += ["--bundle", str(self.bundle_dir)]
        for flag, key in (("--handler-timeout", "handler_timeout_s"),
                          ("--max-concurrency", "max_concurrency"),
                          ("--limit-open-files", "open_files")):
            if opts.get(key):
                cmd += [flag, str(opts[key])]
        if opts.get("debug_errors"):
            cmd.append("--debug-errors")
        self._line(f"--- leptonic: starting replica {self.replica_id} on {self.host}:{port} "
                   f"(ray actor pid {os.getpid()})")
        # forked on the actor's own loop thread, which lives as long as the actor: the
        # kernel ties PR_SET_PDEATHSIG to the forking thread, not to the process
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,  # noqa: ASYNC220
                                     stdin=subprocess.DEVNULL, env=dict(os.environ),
                                     cwd=str(self.bundle_dir or self.root / "home"),
                                     start_new_session=True)
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
        return {"port": port, "pid": self.proc.pid, "host": self.host}

    async def wait(self) -> str:
        """Returns when the runner exits; a control plane keeps one call outstanding to
        learn of the replica's end (or, raising, of the actor's)."""
        if self.proc is None:
            return "not started"
        code = await asyncio.to_thread(self.proc.wait)
        return f"exited with code {code}"

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

    def pid(self) -> int:
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
