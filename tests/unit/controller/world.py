"""A controller world for tick-by-tick tests: fake backend, fake prober, fake clock, real
store (the ``world`` fixture in conftest.py builds one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leptonic.controller.context import ControllerContext
from leptonic.controller.loop import Controller, Routes
from leptonic.core.models import DeploymentPhase, ReplicaState
from leptonic.core.transitions import RestartPolicy
from leptonic.runtime.fake import FakeBackend, FakeProber
from leptonic.store.artifacts import ArtifactStore
from leptonic.store.store import Store
from tests.unit.clock import Clock


@dataclass
class World:
    store: Store
    backend: FakeBackend
    prober: FakeProber
    clock: Clock
    controller: Controller
    routes: list[Routes]

    async def tick(self, n: int = 1, advance: float = 0.0) -> None:
        for _ in range(n):
            self.clock.now += advance
            await self.controller.tick()
        await self.controller.reconciler.drain()

    def replicas(self, state: ReplicaState | None = None) -> list:
        return [r for r in self.store.list_replicas("echo") if state is None or r.state is state]

    def phase(self) -> DeploymentPhase:
        return self.store.get_deployment("echo").status.phase

    def routed(self, name: str = "echo") -> list[str] | None:
        """Replica ids the last published route table sends ``name``'s traffic to."""
        route = self.routes[-1].get(name)
        return None if route is None else sorted(route.ids)


def make_world(tmp_path: Path) -> World:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    backend, prober, clock = FakeBackend(), FakeProber(), Clock()
    ctx = ControllerContext(store=store, backend=backend, prober=prober,
                            artifacts=ArtifactStore(tmp_path / "artifacts"),
                            restart=RestartPolicy(base_s=1, crashloop_after=3),
                            clock=clock, stop_grace_s=0.1)
    routes: list[Routes] = []
    controller = Controller(ctx, routes.append, tick_s=0.01)
    return World(store, backend, prober, clock, controller, routes)
