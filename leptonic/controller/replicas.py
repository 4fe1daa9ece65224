"""Observe replicas: process liveness from the backend, readiness and liveness over HTTP.

Every replica is probed (``GET /readyz``) every tick while it starts and every
``probes.period_s`` once ready. A ready replica that fails ``readiness_failures`` probes in
a row gets no more traffic (``probe_failures`` > 0 leaves it out of the route table at the
next publish, so within one probe period); one that does not answer
``liveness_failures`` probes in a row — a hung process, alive but silent — is killed and
replaced. Probes run as tasks beside the loop: a hung replica's probe waits out its
timeout without holding up the tick, and its result is taken on a later tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from leptonic.controller.context import ControllerContext
from leptonic.controller.probes import ProbeResult
from leptonic.core.models import ProbeSpec, Replica, ReplicaState
from leptonic.core.transitions import (
    error_line,
    replica_exited,
    replica_ready,
    replica_settled,
)
from leptonic.core.usage import replica_run
from leptonic.store.usage import UsageStore

log = logging.getLogger(__name__)

#: how long a tick waits for probes that are under way (healthy replicas answer in ms)
PROBE_WAIT_S = 0.1
_DEFAULT = ProbeSpec()


class ReplicaObserver:
    """Turns what the backend and the probes see into replica state transitions."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self._last_probe: dict[str, float] = {}
        self._unanswered: dict[str, int] = {}
        self._probes: dict[str, asyncio.Task[ProbeResult]] = {}
        self._lost: frozenset[str] | set[str] = frozenset()

    async def observe(self, replicas: list[Replica],
                      probes: Mapping[str, ProbeSpec] | None = None,
                      lost_nodes: frozenset[str] | set[str] = frozenset()) -> list[Replica]:
        """Return the replicas with fresh states; changed ones are already persisted.
        ``probes`` holds each deployment's probe settings (defaults where missing); a
        replica on one of ``lost_nodes`` has failed with its node."""
        probes = probes or {}
        self._lost = lost_nodes
        now = self.ctx.clock()
        for r in replicas:
            spec = probes.get(r.deployment, _DEFAULT)
            if self._due(r, spec, now):
                self._last_probe[r.id] = now
                self._probes[r.id] = asyncio.create_task(
                    self.ctx.prober.probe(r.url or "", spec.timeout_s),
                    name=f"probe-{r.id}")
        pending = [self._probes[r.id] for r in replicas if r.id in self._probes]
        if pending:
            await asyncio.wait(pending, timeout=PROBE_WAIT_S)
        results = await asyncio.gather(*(self._observe_one(r, probes.get(r.deployment,
                                                                          _DEFAULT))
                                         for r in replicas))
        changed = [new for old, new in zip(replicas, results, strict=True) if new != old]
        for r in changed:
            await self.ctx.db(self.ctx.store.upsert_replica, r)
        live = {r.id for r in results if r.state in (ReplicaState.STARTING,
                                                     ReplicaState.READY)}
        for gone in (set(self._last_probe) | set(self._probes)) - live:
            self._last_probe.pop(gone, None)
            self._unanswered.pop(gone, None)
            task = self._probes.pop(gone, None)
            if task is not None:
                task.cancel()
        return list(results)

    def _due(self, r: Replica, spec: ProbeSpec, now: float) -> bool:
        if r.state not in (ReplicaState.STARTING, ReplicaState.READY) or r.url is None:
            return False
        if r.id in self._probes:
            return False            # the last one is still under way
        if r.state is ReplicaState.STARTING:
            return True
        return now - self._last_probe.get(r.id, 0.0) >= spec.period_s

    def _result(self, r: Replica) -> ProbeResult | None:
        task = self._probes.get(r.id)
        if task is None or not task.done():
            return None
        del self._probes[r.id]
        if task.cancelled() or task.exception() is not None:
            return ProbeResult.NO_ANSWER
        return task.result()

    async def _observe_one(self, r: Replica, spec: ProbeSpec) -> Replica:
        if r.state not in (ReplicaState.STARTING, ReplicaState.READY):
            return r
        ctx = self.ctx
        now = ctx.clock()
        if r.node in self._lost:
            await ctx.backend.stop(r.id, grace_s=0.0)    # nothing of it may linger
            return await self._failed(r, None, f"was lost with node {r.node}", now,
                                      reason="NodeLost")
        proc = await ctx.backend.poll(r.id)
        if not proc.alive:
            if proc.reason:
                return await self._failed(r, proc.exit_code, proc.message or "was killed",
                                          now, reason=proc.reason)
            return await self._failed(r, proc.exit_code, "exited", now)
        result = self._result(r)
        if r.state is ReplicaState.STARTING:
            if result is ProbeResult.READY:
                await ctx.event(f"deployment/{r.deployment}", "ReplicaReady",
                                f"replica {r.id} is ready at {r.url}")
                return replica_ready(r, now).model_copy(update={"probe_failures": 0})
            return r
        if result is None:
            return replica_settled(r, now, ctx.restart)
        if result is ProbeResult.READY:
            self._unanswered.pop(r.id, None)
            if r.probe_failures:
                await ctx.event(f"deployment/{r.deployment}", "ReplicaRecovered",
                                f"replica {r.id} answers its probes again; it takes "
                                "traffic again")
            return replica_settled(r.model_copy(update={"probe_failures": 0}), now,
                                   ctx.restart)
        fails = r.probe_failures + 1
        how = "did not answer" if result is ProbeResult.NO_ANSWER else "answered not ready to"
        if result is ProbeResult.NO_ANSWER:
            unanswered = self._unanswered.get(r.id, 0) + 1
            self._unanswered[r.id] = unanswered
            if unanswered >= spec.liveness_failures:
                # alive but not answering: replace it rather than route to it
                self._unanswered.pop(r.id, None)
                await ctx.backend.stop(r.id, grace_s=0.0)   # it would not hear a SIGTERM
                return await self._failed(
                    r, None, f"failed {unanswered} liveness probes in a row (no answer "
                             f"within {spec.timeout_s:g}s): hung, killed", now,
                    reason="Hung")
        else:
            self._unanswered.pop(r.id, None)
        if fails == spec.readiness_failures:
            await ctx.event(f"deployment/{r.deployment}", "ReplicaUnready",
                            f"replica {r.id} {how} {fails} readiness probe(s); it gets no "
                            "traffic until it answers", kind="Warning")
        return r.model_copy(update={"probe_failures": fails})

    async def _failed(self, r: Replica, exit_code: int | None, why: str, now: float,
                      reason: str | None = None) -> Replica:
        ctx = self.ctx
        tail = ctx.backend.log_tail(r.id, 20)
        error = "\n".join(tail[-10:]) or None
        if reason:      # the platform's own finding first: the log may not say it
            error = f"{reason}: replica {r.id} {why}" + (f"\n{error}" if error else "")
        new = replica_exited(r, exit_code, error, now, ctx.restart, reason).model_copy(
            update={"probe_failures": 0})
        await ctx.db(UsageStore(ctx.store).close, replica_run(r.id, r.restarts), now)
        if reason == "NodeLost":        # not the replica's fault: elsewhere, at once
            new = new.model_copy(update={"next_restart_at": now, "failures": r.failures})
        delay = (new.next_restart_at or now) - now
        last = error_line("\n".join(tail)) or ""
        what = f"{reason}: {why}" if reason and reason != "Hung" else why
        await ctx.event(
            f"deployment/{r.deployment}", "ReplicaCrashed",
            f"replica {r.id} {what} (exit code {exit_code}); restart in {delay:.1f}s"
            + (f"; its error: {last}" if last else ""), kind="Warning")
        log.warning("replica %s %s (exit code %s)", r.id, why, exit_code)
        return new
