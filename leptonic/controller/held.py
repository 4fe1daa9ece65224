"""What holds resources on the nodes now: replicas and running job attempts.

Replica placement and attempt placement both count all of it, so a replica and an attempt
started in the same tick see each other's allocations.
"""

from __future__ import annotations

from collections.abc import Sequence

from leptonic.controller.context import ControllerContext
from leptonic.controller.nodes import HOLDING
from leptonic.core.jobs import Held
from leptonic.core.models import AttemptState, JobAttempt, Replica
from leptonic.core.scheduler import Request


def held_of(replicas: Sequence[Replica], attempts: Sequence[JobAttempt],
            replacing: str | None = None) -> list[Held]:
    """Replicas (never preempted) and running attempts (with their job's priority), in
    start order so GPU shares land the same way each time."""
    out = [Held(r.id, r.node, Request.of(r.deployment, r.resources), None, r.created_at)
           for r in replicas if r.state in HOLDING and r.id != replacing]
    out += [Held(a.id, a.node, Request.of(a.job, a.resources), a.priority, a.created_at)
            for a in attempts if a.state is AttemptState.RUNNING and a.id != replacing]
    out.sort(key=lambda h: (h.started_at, h.key))
    return out


async def held_work(ctx: ControllerContext, replicas: Sequence[Replica] | None = None,
                    replacing: str | None = None) -> list[Held]:
    """``held_of`` from the store (``replicas`` when the caller has them fresh)."""
    if replicas is None:
        replicas = await ctx.db(ctx.store.list_replicas)
    attempts = await ctx.db(ctx.store.list_attempts, running=True)
    return held_of(replicas, attempts, replacing)
