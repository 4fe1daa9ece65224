"""The consolidation phase: empty nearly idle nodes and let empty ones stand by.

Every ``period_s`` (as the leader) it asks the scheduler's :func:`consolidation` whether
moving the replicas off one nearly empty node onto other awake nodes saves energy. Only
replicas of deployments placed by ``energy`` or ``pack`` are moved (a ``spread``
deployment asked to be spread). A move is the drain of one node: a replacement starts
elsewhere first and the old replica stops once it is ready, as in a rolling update, so no
request fails; placement keeps the node out meanwhile. At most ``max_moves_per_hour``
replicas move in any hour.

A node with nothing placed for ``standby_after_s`` goes to standby (``Node.standby``,
controller-written; the node's state reads ``Standby``). Placement may still choose it,
the energy policy pricing its waking; once something is placed there it is awake again
(the node phase clears the flag). leptonic does not power machines off itself: on Ray a
standby node is one the cluster's autoscaler or an operator may stop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from leptonic.controller.context import ControllerContext
from leptonic.controller.held import held_of
from leptonic.controller.nodes import HOLDING
from leptonic.core.models import (
    AttemptState,
    Deployment,
    JobAttempt,
    Node,
    PlacementPolicy,
    Replica,
    ReplicaState,
)
from leptonic.core.scheduler import Request, cluster_of, consolidation

log = logging.getLogger(__name__)

MOVABLE = frozenset({PlacementPolicy.ENERGY, PlacementPolicy.PACK})


@dataclass
class _Move:
    node: str
    replicas: set[str]
    started_at: float


class Consolidator:
    def __init__(self, ctx: ControllerContext, *, period_s: float = 30.0,
                 standby_after_s: float = 120.0, max_moves_per_hour: int = 6,
                 move_timeout_s: float = 600.0) -> None:
        self.ctx = ctx
        self.period_s = period_s
        self.standby_after_s = standby_after_s
        self.max_moves_per_hour = max_moves_per_hour
        self.move_timeout_s = move_timeout_s
        self.move: _Move | None = None
        self._moved_at: deque[float] = deque()     # one entry per replica moved
        self._empty_since: dict[str, float] = {}
        self._last = float("-inf")

    @property
    def leaving(self) -> dict[str, str]:
        """Nodes placement must keep out, with why."""
        if self.move is None:
            return {}
        return {self.move.node: "being emptied to save energy"}

    @property
    def evict(self) -> frozenset[str]:
        """Replicas to move off their node (replaced first, like a drain)."""
        return frozenset(self.move.replicas) if self.move else frozenset()

    async def tick(self, nodes: list[Node], deployments: list[Deployment],
                   replicas: list[Replica], attempts: Sequence[JobAttempt] = ()) -> None:
        now = self.ctx.clock()
        holding = [r for r in replicas if r.state in HOLDING]
        running = [a for a in attempts if a.state is AttemptState.RUNNING]
        await self._follow(holding, now)
        # a job attempt is never moved (it would start over), and its node is in use
        await self._standby(nodes, holding, now, {a.node for a in running})
        if now - self._last < self.period_s or self.move is not None or len(nodes) < 2:
            return
        self._last = now
        while self._moved_at and now - self._moved_at[0] > 3600:
            self._moved_at.popleft()
        policy = {d.name: d.spec.placement.policy for d in deployments}
        movable: dict[str, list[Request]] = {}
        ids: dict[str, list[str]] = {}
        pinned: set[str] = set()
        for r in holding:
            if policy.get(r.deployment) in MOVABLE and r.state is ReplicaState.READY:
                movable.setdefault(r.node, []).append(Request.of(r.deployment, r.resources))
                ids.setdefault(r.node, []).append(r.id)
            else:
                pinned.add(r.node)
        pinned |= {a.node for a in running}
        movable = {n: w for n, w in movable.items() if n not in pinned}
        if not movable:
            return
        held = [(h.node, h.request) for h in held_of(holding, running)]
        choice = consolidation(cluster_of(nodes, held), movable)
        if choice is None:
            return
        count = len(choice.moves)
        if len(self._moved_at) + count > self.max_moves_per_hour:
            log.info("consolidating node %s would save %.0f W but moves %d replica(s); "
                     "%d moved this hour already (at most %d)", choice.node, choice.saving_w,
                     count, len(self._moved_at), self.max_moves_per_hour)
            return
        self.move = _Move(choice.node, set(ids[choice.node]), now)
        self._moved_at.extend([now] * count)
        targets = ", ".join(sorted({node for _, node in choice.moves}))
        await self.ctx.event(f"node/{choice.node}", "Consolidating",
                             f"moving {count} replica(s) off node {choice.node} to {targets} "
                             f"to save about {choice.saving_w:.0f} W; it stands by when "
                             "empty")

    async def _follow(self, holding: list[Replica], now: float) -> None:
        move = self.move
        if move is None:
            return
        left = {r.id for r in holding if r.node == move.node}
        move.replicas &= left
        if not left:
            log.info("node %s is empty after consolidation", move.node)
            self.move = None
        elif now - move.started_at > self.move_timeout_s:
            await self.ctx.event(f"node/{move.node}", "ConsolidationStopped",
                                 f"node {move.node} still holds {len(left)} replica(s) after "
                                 f"{self.move_timeout_s:.0f}s; left as it is", "Warning")
            self.move = None

    async def _standby(self, nodes: list[Node], holding: list[Replica], now: float,
                       busy: set[str]) -> None:
        if len(nodes) < 2:          # one node: nothing else could take its work
            return
        used = {r.node for r in holding} | busy
        for node in nodes:
            if node.name in used or not node.alive or node.standby \
                    or node.control.cordoned or node.control.draining:
                self._empty_since.pop(node.name, None)
                continue
            since = self._empty_since.setdefault(node.name, now)
            if now - since < self.standby_after_s:
                continue
            node.standby = True
            node.status = node.state().value
            await self.ctx.db(self.ctx.store.upsert_node, node)
            self._empty_since.pop(node.name, None)
            await self.ctx.event(f"node/{node.name}", "NodeStandby",
                                 f"node {node.name} had nothing placed for "
                                 f"{self.standby_after_s:.0f}s: in standby; placement wakes "
                                 "it when needed")
