"""The Ray runtime: replicas as Ray actors pinned to the nodes leptonic chose.

Every alive Ray node is a leptonic node (tier from its label ``tier``, ``datacenter`` when
absent). A replica is a named, detached actor (:class:`~leptonic.runtime.ray_replica.
ReplicaActor`) created with hard node affinity on the node placement picked, reserving the
deployment's resources with Ray; it serves HTTP itself on its node's address, so the
gateway sends traffic straight to it. The bundle travels through Ray's object store.

Ray needs ~15 s (health checks every 3 s, 5 misses) to call a node dead. leptonic does not
wait: every node's raylet port is checked on each look at the nodes (a refused connection
is a lost node at once), the controller fails the replicas of a lost node and places them
elsewhere, and its probes take a replica that stops answering out of the routes within a
probe period. Replica logs are shipped to ``DATA_DIR/logs/<replica>.log`` once a second, so
``deployment logs`` (tail, grep, follow) works as for local replicas. Job attempts are
actors too (:mod:`leptonic.runtime.ray_jobs`).

All Ray calls of the platform are in this module and its attempts' half,
:mod:`leptonic.runtime.ray_jobs` (STYLE 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leptonic.config import DataDir
from leptonic.core.models import Node
from leptonic.errors import BackendError
from leptonic.observe.logs import tail_file
from leptonic.runtime.base import ProcessState, ReplicaHandle, ReplicaLaunch
from leptonic.runtime.isolation import Isolation
from leptonic.runtime.ray_jobs import JOB_PREFIX, RayAttemptsMixin

log = logging.getLogger(__name__)

NAMESPACE = "leptonic"
NODES_TTL_S = 0.5           # a look at the nodes is reused this long
RAYLET_CHECK_S = 0.3        # connect timeout of the raylet liveness check
LOG_SHIP_S = 1.0


@dataclass
class _Actor:
    handle: Any
    replica_id: str
    node: str
    watch: Any = None           # an outstanding ``wait()`` call: done when the actor ends
    log_offset: int = 0
    ended: str | None = None    # why it ended, once known
    result: Any = None          # what ``wait()`` returned
    log_path: Path | None = None    # where its log is shipped (None: the replica's)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:      # pragma: no cover - the [ray] extra is missing
        raise BackendError("the Ray runtime needs Ray: pip install 'leptonic[ray]'") from exc
    return ray


def _reachable(address: str, timeout_s: float = 3.0) -> bool:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return False
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


class RayBackend(RayAttemptsMixin):
    """Runs replicas (and job attempts) as actors on a Ray cluster (``address``), or on a
    one-node head it starts on 127.0.0.1 when ``address`` is None."""

    name = "ray"

    def __init__(self, layout: DataDir, *, address: str | None = None,
                 owner_mark: str = "leptonic",
                 isolation: Callable[[], Isolation] | None = None) -> None:
        self.layout = layout
        self._isolation = isolation
        self.address = address
        self.mark = owner_mark
        self._actors: dict[str, _Actor] = {}
        self._starting: dict[str, Any] = {}        # replica id -> actor whose start() runs
        self._attempts: dict[str, _Actor] = {}
        self._releasing: set[asyncio.Task[None]] = set()
        self._bundles: dict[str, Any] = {}          # bundle dir -> ObjectRef of its tar
        self._nodes: tuple[float, list[Node]] = (0.0, [])
        self._lock = threading.Lock()
        self._ship: asyncio.Task[None] | None = None
        self.ray: Any = None

    def isolation_spec(self, owner: str) -> dict[str, Any]:
        """How the actor isolates ``owner``'s process on its node
        (:func:`leptonic.runtime.isolation.on_node`): the platform's isolation mode, its
        data dir, the uid allocated for ``owner``. Calls the store: not on the loop."""
        if self._isolation is None:
            return {"mode": "auto", "data_dir": str(self.layout.root), "uid": None,
                    "run_as": None}
        return self._isolation().node_spec(owner)

    # -- connection --------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the cluster (or start a one-node head). Raises BackendError in one line."""
        ray = _import_ray()
        if ray.is_initialized():
            self.ray = ray
            return
        if self.address and self.address != "auto" and not _reachable(self.address):
            raise BackendError(f"cannot reach the Ray cluster at {self.address}: nothing "
                               "answers there (start it with `ray start --head`, or check "
                               "--ray-address)")
        kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False,
                                  "configure_logging": False}
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                         labels={"tier": "datacenter"}, **kwargs)
        except Exception as exc:
            raise BackendError(f"cannot connect to the Ray cluster at "
                               f"{self.address or 'a new local head'}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        self.ray = ray
        log.info("connected to Ray %s at %s (%d node(s))", ray.__version__,
                 self.address or "a local head on 127.0.0.1", len(ray.nodes()))

    def _ray(self) -> Any:
        if self.ray is None:
            self.connect()
        return self.ray

    # -- nodes ---------------------------------------------------------------------------------
    async def nodes(self) -> list[Node]:
        at, cached = self._nodes
        if time.monotonic() - at < NODES_TTL_S:
            return cached
        nodes = await asyncio.to_thread(self._read_nodes)
        self._nodes = (time.monotonic(), nodes)
        if self._ship is None or self._ship.done():
            self._ship = asyncio.get_running_loop().create_task(self._ship_logs(),
                                                                name="ray-log-shipper")
        return nodes

    def _read_nodes(self) -> list[Node]:
        ray = self._ray()
        out = []
        for n in ray.nodes():
            labels = {k: str(v) for k, v in (n.get("Labels") or {}).items()
                      if not k.startswith("ray.io/")}
            res = n.get("Resources") or {}
            node_id = n["NodeID"]
            address = n.get("NodeManagerAddress", "")
            alive = bool(n.get("Alive")) and _raylet_answers(address,
                                                             n.get("NodeManagerPort"))
            gpu_model = next((k.split(":", 1)[1] for k in res
                              if k.startswith("accelerator_type:")), None)
            out.append(Node(
                name=labels.get("name") or f"{n.get('NodeManagerHostname', 'ray')}-"
                                           f"{node_id[:6]}",
                id=node_id, tier=labels.get("tier", "datacenter"), address=address,
                capacity={"cpu": float(res.get("CPU", 0.0)),
                          "memory_mb": float(res.get("memory", 0.0)) // 2**20,
                          "gpu": float(res.get("GPU", 0.0))},
                gpu_model=gpu_model, labels=labels, alive=alive))
        # a node Ray lists twice (dead, then back with a new id) keeps the alive entry
        by_name: dict[str, Node] = {}
        for node in out:
            if node.name not in by_name or node.alive:
                by_name[node.name] = node
        return list(by_name.values())

    def _node_alive(self, name: str) -> bool:
        return any(n.alive for n in self._nodes[1] if n.name == name)

    def _node(self, name: str | None) -> Node:
        nodes = self._nodes[1] or self._read_nodes()
        for n in nodes:
            if n.name == name or n.id == name:
                return n
        raise BackendError(f"node {name!r} is not in the Ray cluster (any more)")

    # -- replicas ------------------------------------------------------------------------------
    async def start(self, launch: ReplicaLaunch) -> ReplicaHandle:
        ray = self._ray()
        node = self._node(launch.node)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from leptonic.runtime.ray_replica import ReplicaActor

        bundle = await asyncio.to_thread(self._bundle_ref, launch.bundle_dir)
        options: dict[str, Any] = {
            "name": self._actor_name(launch.replica_id), "namespace": NAMESPACE,
            "lifetime": "detached", "max_restarts": 0, "max_concurrency": 1000,
            "num_cpus": launch.cpu_request, "num_gpus": launch.gpu_request,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node.id, soft=False),
        }
        if launch.memory_request_mb:
            options["memory"] = launch.memory_request_mb * 2**20
        run = {"handler_timeout_s": launch.handler_timeout_s,
               "max_concurrency": launch.max_concurrency, "debug_errors": launch.debug_errors,
               "open_files": launch.open_files, "processes": launch.processes,
               "memory_mb": launch.memory_mb,
               "isolation": await asyncio.to_thread(self.isolation_spec, launch.deployment)}
        handle = None
        try:
            handle = ray.remote(ReplicaActor).options(**options).remote(
                launch.replica_id, launch.deployment, launch.entry, bundle, dict(launch.env),
                node.address, run)
            self._starting[launch.replica_id] = handle
            info = await asyncio.wait_for(_aref(handle.start.remote()), 120)
            if self._starting.pop(launch.replica_id, None) is None:
                raise RuntimeError("stopped while it started")     # by stop or stop_all
        except Exception as exc:
            self._starting.pop(launch.replica_id, None)
            if handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
            raise BackendError(f"cannot start replica {launch.replica_id} on node "
                               f"{node.name}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        actor = _Actor(handle, launch.replica_id, node.name)
        _watch(actor, handle.wait.remote())
        self._actors[launch.replica_id] = actor
        log.info("started replica %s on node %s (%s) pid=%s port=%s", launch.replica_id,
                 node.name, node.address, info["pid"], info["port"])
        return ReplicaHandle(replica_id=launch.replica_id, node=node.name,
                             url=f"http://{info['host']}:{info['port']}", pid=info["pid"],
                             port=info["port"], log_path=str(self.log_path(launch.replica_id)))

    def _actor_name(self, replica_id: str) -> str:
        return f"{self.mark}.{replica_id}"

    def _bundle_ref(self, bundle_dir: str | None) -> Any:
        """The bundle as one tar in the object store, put once per bundle."""
        if bundle_dir is None:
            return None
        with self._lock:
            ref = self._bundles.get(bundle_dir)
        if ref is None:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                root = Path(bundle_dir)
                for path in sorted(root.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=path.relative_to(root).as_posix())
            ref = self._ray().put(buf.getvalue())
            with self._lock:
                self._bundles[bundle_dir] = ref
        return ref

    async def stop(self, replica_id: str, grace_s: float = 10.0) -> None:
        starting = self._starting.pop(replica_id, None)
        if starting is not None:          # its start() sees it gone and fails
            with contextlib.suppress(Exception):
                self._ray().kill(starting, no_restart=True)
        actor = self._actors.pop(replica_id, None)
        if actor is None:
            return
        ray = self._ray()
        # on a lost node there is nobody to ask: calls would only wait for their timeout
        reachable = actor.ended is None and self._node_alive(actor.node)
        if grace_s > 0 and reachable:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_aref(actor.handle.stop.remote(grace_s)), grace_s + 2)
        if reachable:
            await self._pull_log(actor)
        with contextlib.suppress(Exception):
            ray.kill(actor.handle, no_restart=True)

    async def poll(self, replica_id: str) -> ProcessState:
        actor = self._actors.get(replica_id)
        if actor is None:
            return ProcessState(replica_id, alive=False)
        if actor.ended is not None:
            result = actor.result if isinstance(actor.result, dict) else {}
            return ProcessState(replica_id, alive=False, exit_code=None,
                                reason=result.get("reason"),
                                message=result.get("message") or actor.ended)
        return ProcessState(replica_id, alive=True)

    async def adopt(self, handle: ReplicaHandle) -> bool:
        if handle.replica_id in self._actors:
            return True
        ray = self._ray()
        try:
            actor = ray.get_actor(self._actor_name(handle.replica_id), namespace=NAMESPACE)
            pid = await asyncio.wait_for(_aref(actor.pid.remote()), 5)
        except Exception:
            return False
        if handle.pid is not None and pid != handle.pid:
            return False
        offset = 0
        with contextlib.suppress(OSError):
            offset = self.log_path(handle.replica_id).stat().st_size
        adopted = _Actor(actor, handle.replica_id, handle.node, log_offset=offset)
        _watch(adopted, actor.wait.remote())
        self._actors[handle.replica_id] = adopted
        log.info("adopted replica %s (actor pid %s on node %s)", handle.replica_id, pid,
                 handle.node)
        return True

    async def kill_orphans(self, known: set[str]) -> int:
        ray = self._ray()
        prefix = f"{self.mark}."
        names = await asyncio.to_thread(ray.util.list_named_actors)
        victims = [n for n in names if n.startswith(prefix)
                   and not n[len(prefix):].startswith(JOB_PREFIX)
                   and n[len(prefix):] not in known and n[len(prefix):] not in self._actors]
        for name in victims:
            log.warning("stopping orphaned replica actor %s", name)
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        return len(victims)

    # -- logs ----------------------------------------------------------------------------------
    def log_path(self, replica_id: str) -> Path:
        return self.layout.logs / f"{replica_id}.log"

    def log_tail(self, replica_id: str, lines: int = 20) -> list[str]:
        return tail_file(self.log_path(replica_id), lines)

    async def _ship_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_SHIP_S)
            for actor in [*self._actors.values(), *self._attempts.values()]:
                if actor.ended is None and self._node_alive(actor.node):
                    await self._pull_log(actor)

    async def _pull_log(self, actor: _Actor) -> None:
        for _ in range(8):          # at most 8 MiB a round
            try:
                offset, data = await asyncio.wait_for(
                    _aref(actor.handle.read_log.remote(actor.log_offset)), 2)
            except Exception:
                return
            if offset < actor.log_offset or not data:
                actor.log_offset = offset
                return
            path = actor.log_path or self.log_path(actor.replica_id)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as out:
                out.write(data)
            actor.log_offset = offset

    async def stop_all(self, grace_s: float = 10.0) -> None:
        await asyncio.gather(*(self.stop(rid, grace_s)
                               for rid in {*self._actors, *self._starting}))

    async def close(self) -> None:
        """Stop watching; replicas keep running as detached actors for the next leader."""
        if self._ship is not None:
            self._ship.cancel()
        await self.wait_released()
        self._actors.clear()
        self._attempts.clear()


def _watch(actor: _Actor, ref: Any, notify: Any = None) -> None:
    """Keep ``ref`` (the actor's outstanding ``wait()``) and learn when it ends, from Ray's
    own completion callback: polling a replica is then a look at ``actor.ended``; ``notify``
    (thread-safe) is called then."""
    actor.watch = ref

    def done(future: Any) -> None:
        try:
            actor.result = future.result()
            actor.ended = str(actor.result)
        except Exception as exc:            # the actor died (ActorDiedError, ...)
            actor.ended = type(exc).__name__
        if notify is not None:
            with contextlib.suppress(Exception):
                notify()

    ref.future().add_done_callback(done)


async def _aref(ref: Any) -> Any:
    return await ref


def _raylet_answers(address: str, port: Any) -> bool:
    """Is the node's raylet there? A killed raylet refuses at once, long before Ray's own
    health checks give up on it."""
    if not address or not port:
        return False
    try:
        with socket.create_connection((address, int(port)), timeout=RAYLET_CHECK_S):
            return True
    except OSError:
        return False
