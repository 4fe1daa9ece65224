"""What every controller phase works with: the store, the backend, the prober, the
gateway's traffic figures, the clock, the policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from leptonic.controller.probes import Prober
from leptonic.core.analysis import TrafficCounters
from leptonic.core.transitions import RestartPolicy
from leptonic.runtime.base import Backend

if TYPE_CHECKING:
    from leptonic.store.artifacts import ArtifactStore
    from leptonic.store.store import Store


class Traffic(Protocol):
    """What the controller reads from the gateway (``leptonic.gateway.Gateway`` is one)."""

    @property
    def outstanding(self) -> Mapping[str, int]:
        """Replica id -> requests in flight."""
        ...

    def waiting(self, deployment: str) -> int:
        """Requests held because the deployment has no ready replica."""
        ...

    def arrived(self, deployment: str) -> int:
        """Requests for the deployment so far (a counter)."""
        ...

    def held_total(self, deployment: str) -> int:
        """Requests ever held for the deployment (a counter)."""
        ...

    def traffic(self, deployment: str) -> dict[str, TrafficCounters]:
        """Cumulative answers per replica template (generation as a string)."""
        ...


class NoTraffic:
    """No gateway in this process: no requests, ever."""

    outstanding: Mapping[str, int] = {}

    def waiting(self, deployment: str) -> int:
        return 0

    def arrived(self, deployment: str) -> int:
        return 0

    def held_total(self, deployment: str) -> int:
        return 0

    def traffic(self, deployment: str) -> dict[str, TrafficCounters]:
        return {}


@dataclass
class ControllerContext:
    store: Store                    # sync; called via to_thread (db)
    backend: Backend
    prober: Prober
    artifacts: ArtifactStore
    secrets: Any = None             # leptonic.auth.secrets.SecretBox (None: no secrets)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    traffic: Traffic = field(default_factory=NoTraffic)
    clock: Callable[[], float] = time.time
    stop_grace_s: float = 10.0      # SIGTERM to SIGKILL, once a replica has been drained
    series_interval_s: float = 10.0  # the observe loop's sampling interval (forecasts)
    models_root: str | None = None  # DATA_DIR/models: where training jobs register

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store call off the event loop, which also carries gateway traffic."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def event(self, obj: str, reason: str, message: str, kind: str = "Normal") -> None:
        await self.db(self.store.add_event, obj, reason, message, kind=kind,
                      time=self.clock())
