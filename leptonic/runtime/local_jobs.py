"""Job attempts on the local runtime (mixed into ``LocalBackend``).

Each attempt is ``python -m leptonic.runtime.attempt`` (the platform's own process, in a
session of its own so it outlives a crashed control plane) running the user's command
isolated as replicas are (own uid, sandbox, a copy of the code folder as cwd, a clean
environment), plus an empty ``WORK/<attempt>/output`` folder it alone may write
(``LEPTONIC_OUTPUT_DIR``). The parent writes the command's exit status to
``DATA_DIR/attempts/<attempt>.status``, so an attempt that ended while no control plane
watched is still known to have succeeded or failed. Logs go to
``DATA_DIR/logs/jobs/<attempt>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from leptonic.errors import BackendError, OutputTooLarge
from leptonic.observe.logs import tail_file
from leptonic.runtime.base import AttemptHandle, AttemptLaunch, ProcessState

if TYPE_CHECKING:
    from leptonic.config import DataDir

log = logging.getLogger(__name__)

ATTEMPT_MODULE = "leptonic.runtime.attempt"
_CHUNK = 1 << 20


def marked_processes(module: str, flag: str, owner_mark: str
                     ) -> list[tuple[psutil.Process, str]]:
    """This platform's processes running ``module`` (its ``owner_mark`` on the command
    line), each with the id that follows ``flag`` there."""
    found = []
    for ps in psutil.process_iter(["pid", "cmdline"]):
        cmd = ps.info.get("cmdline") or []
        if module not in cmd or flag not in cmd or owner_mark not in cmd:
            continue
        at = cmd.index(flag) + 1
        found.append((ps, cmd[at] if at < len(cmd) else ""))
    return found


def attempt_env(launch: AttemptLaunch, output: Path, inputs: Path | None) -> dict[str, str]:
    """The platform's variables of an attempt, over the job's own env and secrets."""
    env = {**launch.env, "JOB_COMPLETION_INDEX": str(launch.index),
           "LEPTONIC_JOB": launch.job, "LEPTONIC_ATTEMPT": str(launch.number),
           "LEPTONIC_ATTEMPT_ID": launch.attempt_id, "LEPTONIC_OUTPUT_DIR": str(output)}
    if inputs is not None:
        env["LEPTONIC_INPUTS"] = str(inputs)
    return env


def worker_argv(python: str, launch: AttemptLaunch) -> list[str]:
    """What the attempt runs: the command, or the photon job worker."""
    if launch.command is not None:
        return ["/bin/sh", "-c", launch.command]
    if launch.entry is None or launch.handler is None:
        raise BackendError(f"attempt {launch.attempt_id}: neither a command nor a photon "
                           "handler to run")
    return [python, "-m", "leptonic.photon.job_worker", "--entry", launch.entry,
            "--handler", launch.handler]


def copy_output(src: Path, dest: Path, max_bytes: int) -> tuple[int, int]:
    """Copy the regular files under ``src`` into ``dest`` (0600 files, 0700 folders),
    never following a link; (files, bytes). OutputTooLarge past ``max_bytes``."""
    files = total = 0
    if not src.is_dir():
        return 0, 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = Path(dirpath).relative_to(src)
        for d in dirnames:
            if not os.path.islink(os.path.join(dirpath, d)):
                (dest / rel / d).mkdir(mode=0o700, exist_ok=True)
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue                # a link, or gone: not output
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    continue
                out_fd = os.open(dest / rel / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                 0o600)
                with os.fdopen(out_fd, "wb") as out:
                    while chunk := f.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise OutputTooLarge(
                                f"the attempt left more than {max_bytes // 2**20} MiB of "
                                "output (its job's --max-output-mb)")
                        out.write(chunk)
            files += 1
    return files, total


class LocalAttemptsMixin:
    """Attempt methods of ``LocalBackend`` (its layout, isolation, python and procs)."""

    layout: DataDir
    node: str
    #: called (from a thread) when an attempt's process ends: the controller wakes at once
    on_attempt_exit: Callable[[], None] | None = None
    python: str
    isolation: Any
    _attempts: dict[str, Any]

    def _attempt_state(self) -> dict[str, Any]:
        if not hasattr(self, "_attempts"):
            self._attempts = {}
        return self._attempts

    def attempt_log_path(self, attempt_id: str) -> Path:
        return Path(self.layout.logs) / "jobs" / f"{attempt_id}.log"

    def _status_path(self, attempt_id: str) -> Path:
        return Path(self.layout.root) / "attempts" / f"{attempt_id}.status"

    def _work(self, attempt_id: str) -> Path:
        return Path(self.isolation.work_root) / attempt_id

    async def start_attempt(self, launch: AttemptLaunch) -> AttemptHandle:
        from leptonic.runtime.local import _Proc

        try:
            popen, pid = await asyncio.to_thread(self._spawn_attempt, launch)
        except OSError as exc:
            raise BackendError(f"cannot start attempt {launch.attempt_id}: {exc}") from exc
        handle = AttemptHandle(launch.attempt_id, self.node, pid=pid,
                               log_path=str(self.attempt_log_path(launch.attempt_id)),
                               memory_mb=launch.memory_mb)
        proc = _Proc(popen, None, None, launch.memory_mb)  # type: ignore[arg-type]
        proc.pgid = popen.pid
        self._attempt_state()[launch.attempt_id] = proc
        if self.on_attempt_exit is not None:
            threading.Thread(target=self._notify_exit, args=(popen, self.on_attempt_exit),
                             name=f"attempt-{launch.attempt_id}", daemon=True).start()
        log.info("started attempt %s of job %s on node %s pid=%s", launch.attempt_id,
                 launch.job, self.node, popen.pid)
        return handle

    @staticmethod
    def _notify_exit(popen: subprocess.Popen[bytes], notify: Callable[[], None]) -> None:
        with contextlib.suppress(Exception):
            popen.wait()
            notify()

    def _spawn_attempt(self, launch: AttemptLaunch) -> tuple[subprocess.Popen[bytes], int]:
        from leptonic.runtime.local import OWNER_ARG

        iso = self.isolation
        key = launch.attempt_id
        wd = Path(iso.work_root) / key
        status = self._status_path(key)
        status.parent.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            status.unlink()
        inputs = wd / "home" / "inputs.jsonl" if launch.inputs is not None else None
        env = attempt_env(launch, wd / "output", inputs)
        if launch.open_files:
            env["LEPTONIC_LIMIT_OPEN_FILES"] = str(launch.open_files)
        argv = worker_argv(self.python, launch)
        bundle = Path(launch.bundle_dir) if launch.bundle_dir else None
        prepared = iso.prepare(key, f"job:{launch.job}", argv, env, bundle, output=True)
        # `python` in a command is the platform's own (with leptonic and what it has)
        prepared.env["PATH"] = f"{Path(self.python).parent}:{prepared.env.get('PATH', '')}"
        if inputs is not None and launch.inputs is not None:
            inputs.write_bytes(launch.inputs)
            ids = iso.ids_for(f"job:{launch.job}") if iso.mode != "none" else None
            if ids is not None:
                os.chown(inputs, *ids)
        wrapper = [self.python, "-m", ATTEMPT_MODULE, "--attempt-id", key, OWNER_ARG,
                   iso.owner_mark, "--status", str(status)]
        if prepared.user is not None:
            wrapper += ["--uid", str(prepared.user), "--gid", str(prepared.group)]
        log_path = self.attempt_log_path(key)
        log_path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(f"--- leptonic: starting attempt {key} (index {launch.index}, "
                      f"attempt {launch.number})\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(
                    [*wrapper, "--", *prepared.argv], stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=prepared.env, cwd=prepared.cwd,
                    start_new_session=True, close_fds=True, umask=0o077)
            except BaseException:
                iso.release(key, force=True)
                raise
        return popen, popen.pid

    def _read_status(self, attempt_id: str) -> int | None:
        try:
            data = json.loads(self._status_path(attempt_id).read_text())
        except (OSError, ValueError):
            return None
        code = data.get("exit_code") if isinstance(data, dict) else None
        return int(code) if isinstance(code, int) else None

    async def poll_attempt(self, attempt_id: str) -> ProcessState:
        proc = self._attempt_state().get(attempt_id)
        if proc is None:
            code = self._read_status(attempt_id)
            if code is not None:
                return ProcessState(attempt_id, alive=False, exit_code=code)
            return ProcessState(attempt_id, alive=False, reason="Lost",
                                message="nothing of its process is left")
        alive, rc = proc.returncode()
        if alive and proc.memory_mb and proc.killed is None:
            used = proc.rss_mb(time.monotonic())
            if used > proc.memory_mb:
                proc.killed = ("OOMKilled", f"used {used:.0f} MiB of memory, over its limit "
                                            f"of {proc.memory_mb} MiB; killed")
                log.warning("attempt %s %s", attempt_id, proc.killed[1])
                proc.killpg(signal.SIGKILL)
                alive = False
        if alive:
            return ProcessState(attempt_id, alive=True)
        proc.killpg(signal.SIGKILL)         # nothing it started may linger
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.popen.wait, 2)
        if proc.killed is not None:
            return ProcessState(attempt_id, alive=False, exit_code=-signal.SIGKILL,
                                reason=proc.killed[0], message=proc.killed[1])
        code = self._read_status(attempt_id)
        if code is None:                    # its parent was killed before it could say
            if rc is None:
                return ProcessState(attempt_id, alive=False, reason="Lost",
                                    message="its process ended without an exit status")
            code = rc
        return ProcessState(attempt_id, alive=False, exit_code=code)

    async def stop_attempt(self, attempt_id: str, grace_s: float = 5.0) -> None:
        proc = self._attempt_state().get(attempt_id)
        if proc is not None:
            proc.killpg(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            while loop.time() < deadline and proc.returncode()[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            proc.killpg(signal.SIGKILL)
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.popen.wait, 5)
        await self.release_attempt(attempt_id)

    def _is_attempt(self, ps: psutil.Process, attempt_id: str) -> bool:
        try:
            cmd = ps.cmdline()
        except psutil.Error:
            return False
        return ATTEMPT_MODULE in cmd and attempt_id in cmd and \
            self.isolation.owner_mark in cmd

    async def adopt_attempt(self, handle: AttemptHandle) -> bool:
        from leptonic.runtime.local import _Proc

        attempts = self._attempt_state()
        if handle.attempt_id in attempts:
            return True
        if handle.pid is not None:
            with contextlib.suppress(psutil.Error):
                ps = psutil.Process(handle.pid)
                if self._is_attempt(ps, handle.attempt_id):
                    proc = _Proc(None, ps, None, handle.memory_mb)  # type: ignore[arg-type]
                    proc.pgid = handle.pid
                    attempts[handle.attempt_id] = proc
                    log.info("adopted attempt %s pid=%s", handle.attempt_id, handle.pid)
                    return True
        # ended while nobody watched: its status (and output) are still there
        return self._read_status(handle.attempt_id) is not None

    async def collect_output(self, attempt_id: str, dest: str, max_bytes: int
                             ) -> tuple[int, int]:
        src = self._work(attempt_id) / "output"
        return await asyncio.to_thread(copy_output, src, Path(dest), max_bytes)

    async def release_attempt(self, attempt_id: str) -> None:
        self._attempt_state().pop(attempt_id, None)
        with contextlib.suppress(FileNotFoundError):
            self._status_path(attempt_id).unlink()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.isolation.release, attempt_id, force=True)

    def attempt_log_tail(self, attempt_id: str, lines: int = 20) -> list[str]:
        return tail_file(self.attempt_log_path(attempt_id), lines)

    def attempt_orphans(self, known: set[str]) -> list[psutil.Process]:
        mine = self._attempt_state()
        return [ps for ps, aid in marked_processes(ATTEMPT_MODULE, "--attempt-id",
                                                   self.isolation.owner_mark)
                if aid not in known and aid not in mine]

    async def kill_orphan_attempts(self, known: set[str]) -> int:
        victims = await asyncio.to_thread(self.attempt_orphans, known)
        for ps in victims:
            log.warning("stopping orphaned job attempt pid=%s", ps.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(ps.pid), signal.SIGKILL)
        return len(victims)

    async def stop_all_attempts(self, grace_s: float = 5.0) -> None:
        await asyncio.gather(*(self.stop_attempt(a, grace_s)
                               for a in list(self._attempt_state())))
