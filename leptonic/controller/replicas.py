"""Observe replicas: process liveness from the backend, readiness and liveness over HTTP."""

from __future__ import annotations

import asyncio
import logging

from leptonic.controller.context import ControllerContext
from leptonic.core.models import Replica, ReplicaState
from leptonic.core.transitions import replica_exited, replica_ready, replica_settled

log = logging.getLogger(__name__)


class ReplicaObserver:
    """Turns what the backend and the probes see into replica state transitions."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self._last_probe: dict[str, float] = {}
        self._probe_failures: dict[str, int] = {}

    async def observe(self, replicas: list[Replica]) -> list[Replica]:
        """Return the replicas with fresh states; changed ones are already persisted."""
        results = await asyncio.gather(*(self._observe_one(r) for r in replicas))
        changed = [new for old, new in zip(replicas, results, strict=True) if new != old]
        for r in changed:
            await self.ctx.db(self.ctx.store.upsert_replica, r)
        live = {r.id for r in results}
        for gone in set(self._last_probe) - live:
            self._last_probe.pop(gone, None)
            self._probe_failures.pop(gone, None)
        return list(results)

    async def _observe_one(self, r: Replica) -> Replica:
        if r.state not in (ReplicaState.STARTING, ReplicaState.READY):
            return r
        ctx = self.ctx
        now = ctx.clock()
        proc = await ctx.backend.poll(r.id)
        if not proc.alive:
            return await self._failed(r, proc.exit_code, "exited", now)
        if r.url is None:
            return r
        if r.state is ReplicaState.STARTING:
            if await ctx.prober.ready(r.url):
                self._probe_failures.pop(r.id, None)
                self._last_probe[r.id] = now
                await ctx.event(f"deployment/{r.deployment}", "ReplicaReady",
                                f"replica {r.id} is ready at {r.url}")
                return replica_ready(r, now)
            return r
        # READY: liveness, at the probe period
        if now - self._last_probe.get(r.id, 0.0) < ctx.probes.period_s:
            return replica_settled(r, now, ctx.restart)
        self._last_probe[r.id] = now
        if await ctx.prober.ready(r.url):
            self._probe_failures.pop(r.id, None)
            return replica_settled(r, now, ctx.restart)
        fails = self._probe_failures.get(r.id, 0) + 1
        self._probe_failures[r.id] = fails
        if fails < ctx.probes.failure_threshold:
            return r
        # alive but not answering: replace it rather than route to it
        self._probe_failures.pop(r.id, None)
        await ctx.backend.stop(r.id, grace_s=1.0)
        return await self._failed(r, None, f"failed {fails} liveness probes", now)

    async def _failed(self, r: Replica, exit_code: int | None, why: str, now: float) -> Replica:
        ctx = self.ctx
        tail = ctx.backend.log_tail(r.id, 20)
        error = "\n".join(tail[-10:]) or None
        new = replica_exited(r, exit_code, error, now, ctx.restart)
        delay = (new.next_restart_at or now) - now
        last = tail[-1].strip() if tail else ""
        await ctx.event(
            f"deployment/{r.deployment}", "ReplicaCrashed",
            f"replica {r.id} {why} (exit code {exit_code}); restart in {delay:.1f}s"
            + (f"; last log line: {last}" if last else ""), kind="Warning")
        log.warning("replica %s %s (exit code %s)", r.id, why, exit_code)
        return new
