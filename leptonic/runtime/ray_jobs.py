"""Job attempts on the Ray runtime (mixed into ``RayBackend``).

Each attempt is a named, detached actor (:class:`~leptonic.runtime.ray_attempt.
AttemptActor`, ``MARK.job:ATTEMPT``) with hard node affinity on the node the scheduler
chose, reserving the attempt's resources with Ray. The code folder goes to it through the
object store; it runs the command as a child that dies with it, and keeps the exit code
and the output folder after the command ends until :meth:`release_attempt`, so a
restarted control plane adopts an attempt that ended while nobody watched. The actor's
outstanding ``wait()`` wakes the controller the moment an attempt ends; the output comes
back as one tar through the object store; logs are shipped to
``DATA_DIR/logs/jobs/<attempt>.log`` as replicas' are.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leptonic.errors import BackendError, OutputTooLarge
from leptonic.observe.logs import tail_file
from leptonic.runtime.base import AttemptHandle, AttemptLaunch, ProcessState
from leptonic.runtime.local_jobs import attempt_env

if TYPE_CHECKING:
    from leptonic.config import DataDir

log = logging.getLogger(__name__)

JOB_PREFIX = "job:"         # after the platform's mark: an attempt's actor, not a replica's
START_TIMEOUT_S = 120


class RayAttemptsMixin:
    """Attempt methods of ``RayBackend`` (its connection, nodes, bundles and log shipper)."""

    layout: DataDir
    mark: str
    _attempts: dict[str, Any]
    _releasing: set[asyncio.Task[None]]
    #: called (from a Ray thread) when an attempt ends: the controller wakes at once
    on_attempt_exit: Callable[[], None] | None = None

    _ray: Callable[[], Any]
    _node: Callable[[str | None], Any]
    _node_alive: Callable[[str], bool]
    _bundle_ref: Callable[[str | None], Any]
    _pull_log: Callable[[Any], Any]
    isolation_spec: Callable[[str], dict[str, Any]]

    def attempt_actor_name(self, attempt_id: str) -> str:
        return f"{self.mark}.{JOB_PREFIX}{attempt_id}"

    def attempt_log_path(self, attempt_id: str) -> Path:
        return self.layout.logs / "jobs" / f"{attempt_id}.log"

    async def start_attempt(self, launch: AttemptLaunch) -> AttemptHandle:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from leptonic.runtime.ray import _Actor, _aref, _watch
        from leptonic.runtime.ray_attempt import AttemptActor

        ray = self._ray()
        node = self._node(launch.node)
        if launch.command is not None:
            argv = ["/bin/sh", "-c", launch.command]
        elif launch.entry is not None and launch.handler is not None:
            argv = ["{python}", "-m", "leptonic.photon.job_worker", "--entry", launch.entry,
                    "--handler", launch.handler]
        else:
            raise BackendError(f"attempt {launch.attempt_id}: neither a command nor a "
                               "photon handler to run")
        bundle = await asyncio.to_thread(self._bundle_ref, launch.bundle_dir)
        env = attempt_env(launch, Path("."), None)
        del env["LEPTONIC_OUTPUT_DIR"]      # the actor's own folder, on its node
        options: dict[str, Any] = {
            "name": self.attempt_actor_name(launch.attempt_id), "namespace": "leptonic",
            "lifetime": "detached", "max_restarts": 0, "max_concurrency": 16,
            "num_cpus": launch.cpu_request, "num_gpus": launch.gpu_request,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node.id, soft=False)}
        if launch.memory_request_mb:
            options["memory"] = launch.memory_request_mb * 2**20
        log_path = self.attempt_log_path(launch.attempt_id)
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        isolation = await asyncio.to_thread(self.isolation_spec, f"job:{launch.job}")
        handle = None
        try:
            handle = ray.remote(AttemptActor).options(**options).remote(
                launch.attempt_id, argv, bundle, launch.inputs, env, launch.memory_mb,
                isolation)
            pid = await asyncio.wait_for(_aref(handle.start.remote()), START_TIMEOUT_S)
        except Exception as exc:
            if handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
            raise BackendError(f"cannot start attempt {launch.attempt_id} on node "
                               f"{node.name}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        actor = _Actor(handle, launch.attempt_id, node.name, log_path=log_path)
        _watch(actor, handle.wait.remote(), self.on_attempt_exit)
        self._attempts[launch.attempt_id] = actor
        log.info("started attempt %s of job %s on node %s (%s) pid=%s", launch.attempt_id,
                 launch.job, node.name, node.address, pid)
        return AttemptHandle(launch.attempt_id, node.name, pid=pid, log_path=str(log_path),
                             memory_mb=launch.memory_mb)

    async def poll_attempt(self, attempt_id: str) -> ProcessState:
        actor = self._attempts.get(attempt_id)
        if actor is None:
            return ProcessState(attempt_id, alive=False, reason="Lost",
                                message="nothing of its actor is left")
        if actor.ended is None:
            if not self._node_alive(actor.node):
                return ProcessState(attempt_id, alive=False, reason="Lost",
                                    message=f"its node {actor.node} was lost")
            return ProcessState(attempt_id, alive=True)
        await self._pull_log(actor)          # its last lines, before anyone reads them
        res = actor.result
        if not isinstance(res, dict):
            return ProcessState(attempt_id, alive=False, reason="Lost",
                                message=f"its actor ended ({actor.ended})")
        return ProcessState(attempt_id, alive=False, exit_code=res.get("exit_code"),
                            reason=res.get("reason"), message=res.get("message"))

    async def stop_attempt(self, attempt_id: str, grace_s: float = 5.0) -> None:
        from leptonic.runtime.ray import _aref

        actor = self._attempts.get(attempt_id)
        if actor is not None and actor.ended is None and self._node_alive(actor.node):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_aref(actor.handle.stop.remote(grace_s)), grace_s + 2)
        await self.release_attempt(attempt_id)

    async def adopt_attempt(self, handle: AttemptHandle) -> bool:
        from leptonic.runtime.ray import _Actor, _aref, _watch

        if handle.attempt_id in self._attempts:
            return True
        ray = self._ray()
        try:
            found = ray.get_actor(self.attempt_actor_name(handle.attempt_id),
                                  namespace="leptonic")
            status = await asyncio.wait_for(_aref(found.status.remote()), 5)
        except Exception:
            return False
        if handle.pid is not None and status.get("pid") not in (None, handle.pid):
            return False
        path = self.attempt_log_path(handle.attempt_id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        offset = 0
        with contextlib.suppress(OSError):
            offset = path.stat().st_size
        actor = _Actor(found, handle.attempt_id, handle.node, log_offset=offset,
                       log_path=path)
        _watch(actor, found.wait.remote(), self.on_attempt_exit)
        self._attempts[handle.attempt_id] = actor
        log.info("adopted attempt %s on node %s (%s)", handle.attempt_id, handle.node,
                 "running" if status.get("alive") else f"ended, code {status['exit_code']}")
        return True

    async def collect_output(self, attempt_id: str, dest: str, max_bytes: int
                             ) -> tuple[int, int]:
        from leptonic.runtime.ray import _aref
        from leptonic.store.artifacts import extract_bundle

        actor = self._attempts.get(attempt_id)
        if actor is None:
            raise BackendError(f"attempt {attempt_id} is not known to this control plane")
        try:
            files, size, data = await asyncio.wait_for(
                _aref(actor.handle.output_tar.remote(max_bytes)), 60)
        except Exception as exc:
            raise BackendError(f"cannot fetch the output of attempt {attempt_id}: "
                               f"{type(exc).__name__}") from exc
        if data is None:
            raise OutputTooLarge(f"the attempt left more than {max_bytes // 2**20} MiB of "
                                 "output (its job's --max-output-mb)")
        if files:
            await asyncio.to_thread(extract_bundle, io.BytesIO(data), Path(dest),
                                    max_bytes + 1)
        return files, size

    async def release_attempt(self, attempt_id: str) -> None:
        """Forget it at once; its actor cleans its node and is killed in the background
        (``close`` waits for that), so a tick that ends many attempts does not wait."""
        actor = self._attempts.pop(attempt_id, None)
        if actor is None:
            return
        if self._node_alive(actor.node):
            await self._pull_log(actor)
        task = asyncio.get_running_loop().create_task(self._dispose(actor),
                                                      name=f"release-{attempt_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _dispose(self, actor: Any) -> None:
        from leptonic.runtime.ray import _aref

        if self._node_alive(actor.node):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_aref(actor.handle.release.remote()), 5)
        with contextlib.suppress(Exception):
            self._ray().kill(actor.handle, no_restart=True)

    async def wait_released(self) -> None:
        """Wait for the attempts released in the background to be gone."""
        if self._releasing:
            await asyncio.wait(list(self._releasing), timeout=10)

    def attempt_log_tail(self, attempt_id: str, lines: int = 20) -> list[str]:
        return tail_file(self.attempt_log_path(attempt_id), lines)

    async def kill_orphan_attempts(self, known: set[str]) -> int:
        ray = self._ray()
        prefix = f"{self.mark}.{JOB_PREFIX}"
        names = await asyncio.to_thread(ray.util.list_named_actors)
        victims = [n for n in names if n.startswith(prefix)
                   and n[len(prefix):] not in known and n[len(prefix):] not in self._attempts]
        for name in victims:
            log.warning("stopping orphaned attempt actor %s", name)
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name, namespace="leptonic"), no_restart=True)
        return len(victims)

    async def stop_all_attempts(self, grace_s: float = 5.0) -> None:
        await asyncio.gather(*(self.stop_attempt(a, grace_s) for a in list(self._attempts)))
