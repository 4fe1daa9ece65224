"""The attempt actor of the Ray runtime: one job attempt, run to its end on its node.

The actor unpacks the code folder it was handed through the object store on its node, and,
isolated as the replicas are (:mod:`leptonic.runtime.isolation`: its own uid where Ray's
workers are root, a sandbox where bubblewrap is installed), copies it into a work dir of
its own (the attempt's cwd), gives it an empty ``output/`` folder (``LEPTONIC_OUTPUT_DIR``)
and runs the command (``/bin/sh -c``, or the photon job worker)
as a child the kernel kills when the actor's process ends (``PR_SET_PDEATHSIG``, through
``leptonic.runtime.ray_replica``), in a session of its own so one ``killpg`` stops all of
it. It keeps the exit code and the output after the command ends, until the control plane
releases it; the output goes back as one tar through the object store
(:meth:`AttemptActor.output_tar`), the log as the replicas' does (:meth:`read_log`).

Ray imports this module in its worker processes, so it must import without side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

MAX_LOG_CHUNK = 1 << 20
MEMORY_CHECK_S = 0.5


class AttemptActor:
    """One attempt. Created detached and named, so a restarted control plane finds it."""

    def __init__(self, attempt_id: str, argv: list[str], bundle: bytes | None,
                 inputs: bytes | None, env: dict[str, str], memory_mb: int | None,
                 isolation: dict[str, Any] | None = None) -> None:
        self.attempt_id = attempt_id
        self.root = Path(tempfile.mkdtemp(prefix=f"leptonic-{attempt_id}-"))
        self.log_path = self.root / "attempt.log"
        self.staged: Path | None = None
        if bundle is not None:
            from leptonic.store.artifacts import extract_bundle

            self.staged = self.root / "bundle"
            self.staged.mkdir()
            extract_bundle(io.BytesIO(bundle), self.staged, max_bytes=1 << 31)
        self.inputs = inputs
        self.spec = isolation or {"mode": "auto", "data_dir": "/nonexistent"}
        self.iso: Any = None
        self.output = self.root / "output"      # the work dir's, once prepared
        self.user_env = dict(env)
        self.argv = [sys.executable if a == "{python}" else a for a in argv]
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.code: int | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self._out = self.log_path.open("ab", buffering=0)

    async def start(self) -> int:
        """Start the command; its pid. Forked on the actor's loop thread, which lives as
        long as the actor (``PR_SET_PDEATHSIG`` is tied to the forking thread)."""
        prepared = await asyncio.to_thread(self._prepare)
        self._line(f"--- leptonic: starting attempt {self.attempt_id} "
                   f"(ray actor pid {os.getpid()}, {self.iso.describe()})")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "leptonic.runtime.ray_replica", "--", *prepared.argv],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=prepared.env, cwd=prepared.cwd, start_new_session=True, close_fds=True,
            user=prepared.user, group=prepared.group,
            extra_groups=[] if prepared.user is not None else None, umask=0o077)
        return self.proc.pid

    def _prepare(self) -> Any:
        """Isolate the command on this node as the control plane asked (as the replicas
        are): a work dir of its own with the code (its cwd), ``home/`` and an empty
        ``output/`` only it can write, a clean environment."""
        from leptonic.runtime.isolation import on_node

        try:
            self.iso = on_node(self.spec)
        except Exception as exc:            # one line back to the control plane
            detail = getattr(exc, "detail", None) or str(exc)
            raise RuntimeError(f"cannot isolate the attempt on this node: {detail}") from exc
        key = self.attempt_id
        wd = self.iso.work_root / key
        env = {**self.user_env, "LEPTONIC_OUTPUT_DIR": str(wd / "output")}
        inputs_path = wd / "home" / "inputs.jsonl"
        if self.inputs is not None:
            env["LEPTONIC_INPUTS"] = str(inputs_path)
        prepared = self.iso.prepare(key, "job", self.argv, env, self.staged,
                                    die_with_parent=True, output=True)
        # `python` in a command is the node's leptonic Python (with what it has installed)
        python_bin = str(Path(sys.executable).parent)
        prepared.env["PATH"] = f"{python_bin}:{prepared.env.get('PATH', '')}"
        self.output = wd / "output"
        if self.inputs is not None:
            inputs_path.write_bytes(self.inputs)
            if prepared.run_uid is not None:
                os.chown(inputs_path, prepared.run_uid, prepared.run_uid)
        return prepared

    async def wait(self) -> dict[str, Any]:
        """Returns when the command ends (killed past its memory limit: OOMKilled); a
        control plane keeps one call outstanding to learn of it at once."""
        proc = self.proc
        if proc is None:
            return self.status()
        if not self.memory_mb:
            await asyncio.to_thread(proc.wait)
        while proc.poll() is None:
            if self.memory_mb and _tree_rss_mb(proc.pid) > self.memory_mb:
                used = _tree_rss_mb(proc.pid)
                self.reason = "OOMKilled"
                self.message = (f"used {used:.0f} MiB of memory, over its limit of "
                                f"{self.memory_mb} MiB; killed")
                self._killpg(signal.SIGKILL)
            await asyncio.sleep(MEMORY_CHECK_S)
        self._killpg(signal.SIGKILL)        # nothing it started may linger
        if self.code is None:
            self.code = proc.returncode
            self._line(f"--- leptonic: attempt {self.attempt_id} exited with code "
                       f"{self.code}")
        return self.status()

    def status(self) -> dict[str, Any]:
        running = self.proc is not None and self.proc.poll() is None
        return {"pid": self.proc.pid if self.proc else None, "alive": running,
                "exit_code": None if running else self.code,
                "reason": self.reason, "message": self.message}

    async def stop(self, grace_s: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._killpg(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, grace_s)
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)

    async def release(self) -> None:
        """Stop what is left and remove the attempt's folders from the node."""
        await self.stop(1.0)
        self._out.close()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.iso is not None:
            await asyncio.to_thread(self.iso.release, self.attempt_id, force=True)

    def output_tar(self, max_bytes: int) -> tuple[int, int, bytes | None]:
        """The output folder's regular files (never a link) as one tar: (files, bytes,
        tar); the tar is None past ``max_bytes``."""
        buf = io.BytesIO()
        files = total = 0
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for dirpath, _dirs, names in os.walk(self.output, followlinks=False):
                for name in sorted(names):
                    path = os.path.join(dirpath, name)
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    except OSError:
                        continue
                    with os.fdopen(fd, "rb") as f:
                        st = os.fstat(f.fileno())
                        if not stat.S_ISREG(st.st_mode):
                            continue
                        total += st.st_size
                        if total > max_bytes:
                            return files, total, None
                        info = tarfile.TarInfo(os.path.relpath(path, self.output))
                        info.size, info.mode, info.mtime = st.st_size, 0o600, int(st.st_mtime)
                        tar.addfile(info, f)
                    files += 1
        return files, total, buf.getvalue()

    def read_log(self, offset: int) -> tuple[int, bytes]:
        """Bytes of the attempt's log from ``offset`` (at most 1 MiB); the new offset."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                data = f.read(MAX_LOG_CHUNK)
        except OSError:
            return offset, b""
        return offset + len(data), data

    def _killpg(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def _line(self, text: str) -> None:
        with contextlib.suppress(ValueError):
            self._out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())


def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20
