"""The node phase: what nodes the runtime has, alive or not, and what runs on each.

Every tick it asks the runtime for its nodes (cheap: the runtime keeps them fresh itself),
adds what leptonic's replicas have allocated on each, and stores what changed (the
heartbeat at most every ``HEARTBEAT_S``). A node the runtime no longer reports stays listed
as not ready, so it is used again if it comes back. The admin's half of a node (cordon,
drain) is the API's and is never written here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from leptonic.controller.context import ControllerContext
from leptonic.core.models import AttemptState, JobAttempt, Node, Replica, ReplicaState, Resources
from leptonic.core.scheduler import allocations

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
#: replica states whose resources are held on their node
HOLDING = frozenset({ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DRAINING})


def allocated_by_node(replicas: list[Replica], attempts: Sequence[JobAttempt] = ()
                      ) -> dict[str, dict[str, float]]:
    """What replicas and running job attempts hold on each node."""
    held = [(r.node, r.resources or Resources()) for r in replicas if r.state in HOLDING]
    held += [(a.node, a.resources or Resources()) for a in attempts
             if a.state is AttemptState.RUNNING]
    return allocations(held)


class NodeObserver:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.nodes: list[Node] = []          # the latest snapshot, for placement

    async def observe(self, replicas: list[Replica], attempts: Sequence[JobAttempt] = ()
                      ) -> list[Node]:
        ctx = self.ctx
        now = ctx.clock()
        seen = await ctx.backend.nodes()
        stored = {n.name: n for n in await ctx.db(ctx.store.list_nodes)}
        allocated = allocated_by_node(replicas, attempts)
        used = {r.node for r in replicas if r.state in HOLDING} | {
            a.node for a in attempts if a.state is AttemptState.RUNNING}
        out: list[Node] = []
        for node in seen:
            node = node.model_copy(update={
                "allocated": allocated.get(node.name, {"cpu": 0.0, "memory_mb": 0.0,
                                                       "gpu": 0.0}),
                "heartbeat_at": now if node.alive else
                (stored[node.name].heartbeat_at if node.name in stored else 0.0)})
            old = stored.pop(node.name, None)
            if old is not None:
                node = node.model_copy(update={"control": old.control, "power": old.power})
                # standby (the consolidation phase's) lasts until something is placed
                woken = old.standby and node.name in used
                node = node.model_copy(update={"standby": old.standby and not woken
                                               and node.alive})
                if woken:
                    await ctx.event(f"node/{node.name}", "NodeAwake",
                                    f"node {node.name} left standby: work was placed on it")
            node = node.model_copy(update={"status": node.state().value})
            out.append(node)
            if old is None or _changed(old, node, now):
                await ctx.db(ctx.store.upsert_node, node)
                if old is not None and old.alive != node.alive:
                    await self._moved(node)
                elif old is None:
                    await ctx.event(f"node/{node.name}", "NodeAdded",
                                    f"node {node.name} ({node.tier}, {node.address}) joined")
        for gone in stored.values():         # the runtime lost it: keep it, not ready
            if gone.alive:
                node = gone.model_copy(update={"alive": False, "allocated": allocated.get(
                    gone.name, gone.allocated)})
                node = node.model_copy(update={"status": node.state().value})
                await ctx.db(ctx.store.upsert_node, node)
                await self._moved(node)
            out.append(gone if not gone.alive else node)
        self.nodes = out
        return out

    async def _moved(self, node: Node) -> None:
        if node.alive:
            await self.ctx.event(f"node/{node.name}", "NodeReady",
                                 f"node {node.name} is ready again")
        else:
            log.warning("node %s is not ready", node.name)
            await self.ctx.event(f"node/{node.name}", "NodeNotReady",
                                 f"node {node.name} ({node.address}) stopped answering; its "
                                 "replicas are replaced on other nodes", "Warning")


def _changed(old: Node, new: Node, now: float) -> bool:
    keep = {"heartbeat_at", "control", "power", "status"}
    if old.model_dump(exclude=keep) != new.model_dump(exclude=keep):
        return True
    return new.alive and now - old.heartbeat_at >= HEARTBEAT_S
