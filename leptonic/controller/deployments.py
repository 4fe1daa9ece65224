"""Reconcile deployments: plan with core.planner, persist the decision, apply via the runtime."""

from __future__ import annotations

import asyncio
import logging
import secrets

from leptonic.controller.context import ControllerContext
from leptonic.core.models import Deployment, Replica, ReplicaState
from leptonic.core.planner import (
    Action,
    RemoveDeployment,
    RestartReplica,
    StartReplica,
    StopReplica,
    plan,
)
from leptonic.core.transitions import (
    deployment_status,
    replica_exited,
    replica_restarted,
    template_hash,
)
from leptonic.errors import BackendError, LeptonicError
from leptonic.runtime.base import ReplicaLaunch

log = logging.getLogger(__name__)


def new_replica_id(deployment: str) -> str:
    return f"{deployment}-{secrets.token_hex(3)}"


class DeploymentReconciler:
    """``reconcile(deployment, replicas)`` converges one deployment; safe to call any time."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self._stopping: dict[str, asyncio.Task[None]] = {}

    async def reconcile(self, d: Deployment, replicas: list[Replica]) -> None:
        ctx = self.ctx
        now = ctx.clock()
        d = await self._track_template(d)
        actions = plan(d, replicas, now, ctx.restart)
        by_id = {r.id: r for r in replicas}
        for action in actions:
            try:
                await self._apply(d, action, by_id)
            except LeptonicError as exc:
                log.warning("deployment %s: %s failed: %s", d.name, action, exc.detail)
                await ctx.event(f"deployment/{d.name}", "ActionFailed", exc.detail, "Warning")
        if any(isinstance(a, RemoveDeployment) for a in actions):
            return
        after = await ctx.db(ctx.store.list_replicas, d.name)
        status = deployment_status(d, after, ctx.clock(), ctx.restart)
        if _differs(status, d.status):
            await ctx.db(ctx.store.set_deployment_status, d.name, status)
            if status.phase != d.status.phase:
                kind = "Warning" if status.phase in ("CrashLoop", "Degraded") else "Normal"
                await ctx.event(f"deployment/{d.name}", f"Phase{status.phase}",
                                status.message, kind)

    async def _track_template(self, d: Deployment) -> Deployment:
        h = template_hash(d.spec)
        if h == d.status.template_hash:
            return d
        status = d.status.model_copy(update={"template_hash": h,
                                             "template_generation": d.generation})
        await self.ctx.db(self.ctx.store.set_deployment_status, d.name, status)
        return d.model_copy(update={"status": status})

    async def _apply(self, d: Deployment, action: Action, by_id: dict[str, Replica]) -> None:
        match action:
            case StartReplica(generation=gen):
                await self._start(d, gen)
            case RestartReplica(replica_id=rid):
                await self._restart(d, by_id[rid])
            case StopReplica(replica_id=rid, reason=why):
                await self._stop(by_id[rid], why)
            case RemoveDeployment(deployment=name):
                await self.ctx.db(self.ctx.store.remove_deployment, name)
                await self.ctx.event(f"deployment/{name}", "Deleted", "deployment removed")

    async def _launch(self, d: Deployment, replica_id: str) -> ReplicaLaunch:
        spec = d.spec
        if spec.photon.startswith("builtin:"):
            entry, bundle = spec.photon, None
        else:
            pv = await self.ctx.db(self.ctx.store.get_photon, spec.photon, spec.photon_version)
            entry, bundle = pv.entry, str(self.ctx.artifacts.path(pv.digest))
        env = dict(spec.env)
        for name in spec.secrets:           # decrypted only here, on the way to the process
            if self.ctx.secrets is None:
                raise BackendError(f"secret {name!r} is needed but this platform has no "
                                   "secrets key")
            ciphertext = await self.ctx.db(self.ctx.store.secret_ciphertext, name)
            env[name] = self.ctx.secrets.decrypt(ciphertext)
        return ReplicaLaunch(replica_id=replica_id, deployment=d.name, entry=entry,
                             bundle_dir=bundle, env=env)

    async def _run(self, d: Deployment, replica: Replica) -> Replica:
        """Persist the replica as starting, then start its process, then record where."""
        ctx = self.ctx
        await ctx.db(ctx.store.upsert_replica, replica)
        try:
            launch = await self._launch(d, replica.id)
            handle = await ctx.backend.start(launch)
        except LeptonicError as exc:
            failed = replica_exited(replica, None, exc.detail, ctx.clock(), ctx.restart)
            await ctx.db(ctx.store.upsert_replica, failed)
            raise
        started = replica.model_copy(update={
            "url": handle.url, "pid": handle.pid, "port": handle.port, "node": handle.node,
            "log_path": handle.log_path})
        await ctx.db(ctx.store.upsert_replica, started)
        return started

    async def _start(self, d: Deployment, generation: int) -> None:
        now = self.ctx.clock()
        replica = Replica(id=new_replica_id(d.name), deployment=d.name,
                          photon_version=d.spec.photon_version, generation=generation,
                          state=ReplicaState.STARTING, created_at=now, started_at=now)
        r = await self._run(d, replica)
        await self.ctx.event(f"deployment/{d.name}", "ReplicaStarted",
                             f"started replica {r.id} (pid {r.pid})")

    async def _restart(self, d: Deployment, old: Replica) -> None:
        await self.ctx.backend.stop(old.id, grace_s=0.5)   # make sure nothing lingers
        replica = replica_restarted(old, self.ctx.clock()).model_copy(update={
            "photon_version": d.spec.photon_version,
            "generation": d.status.template_generation})
        r = await self._run(d, replica)
        await self.ctx.event(f"deployment/{d.name}", "ReplicaRestarted",
                             f"restarted replica {r.id} (restart #{r.restarts}, pid {r.pid})")

    async def _stop(self, r: Replica, reason: str) -> None:
        if r.id in self._stopping:
            return
        draining = r.model_copy(update={"state": ReplicaState.DRAINING})
        await self.ctx.db(self.ctx.store.upsert_replica, draining)
        # stopping waits out a grace period; do it beside the loop, not in it
        self._stopping[r.id] = asyncio.create_task(self._finish_stop(draining, reason))

    async def _finish_stop(self, r: Replica, reason: str) -> None:
        ctx = self.ctx
        try:
            await ctx.backend.stop(r.id, grace_s=ctx.stop_grace_s)
            await ctx.db(ctx.store.delete_replica, r.id)
            await ctx.event(f"deployment/{r.deployment}", "ReplicaStopped",
                            f"stopped replica {r.id}: {reason}")
        except Exception:
            log.exception("stopping replica %s failed", r.id)
        finally:
            self._stopping.pop(r.id, None)

    async def drain(self) -> None:
        """Wait for replicas being stopped (platform shutdown, tests)."""
        if self._stopping:
            await asyncio.gather(*self._stopping.values(), return_exceptions=True)


def _differs(a: object, b: object) -> bool:
    da = a.model_dump(exclude={"updated_at"})  # type: ignore[attr-defined]
    db = b.model_dump(exclude={"updated_at"})  # type: ignore[attr-defined]
    return bool(da != db)
