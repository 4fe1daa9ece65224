"""What every controller phase works with: the store, the backend, the clock, the policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leptonic.controller.probes import Prober
from leptonic.core.transitions import RestartPolicy
from leptonic.runtime.base import Backend


@dataclass
class ProbePolicy:
    """Readiness is probed every tick while starting; liveness every ``period_s`` once ready."""

    period_s: float = 1.0
    failure_threshold: int = 3


@dataclass
class ControllerContext:
    store: Any                      # leptonic.store.Store (sync; called via to_thread)
    backend: Backend
    prober: Prober
    artifacts: Any                  # leptonic.store.artifacts.ArtifactStore
    secrets: Any = None             # leptonic.auth.secrets.SecretBox (None: no secrets)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    probes: ProbePolicy = field(default_factory=ProbePolicy)
    clock: Callable[[], float] = time.time
    stop_grace_s: float = 10.0

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store call off the event loop, which also carries gateway traffic."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def event(self, obj: str, reason: str, message: str, kind: str = "Normal") -> None:
        await self.db(self.store.add_event, obj, reason, message, kind=kind,
                      time=self.clock())
