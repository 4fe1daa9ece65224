"""The route table: which ready replicas serve each deployment.

The control plane pushes it (``set_routes``/``remove``/``replace_all``/``replace_routes``);
the proxy reads it on every request. Writes build a fresh immutable :class:`Route` and swap
one dict entry (or the whole dict), so a read is a single dict lookup with no lock and never
sees a half-applied update.

A route may split traffic by weight between groups of upstreams (a canary and its stable
set: each upstream names its ``group``), and may ask the gateway to *hold* requests while
it has no upstream (a deployment scaled to zero) instead of answering 503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from leptonic.core.routes import Hold, Route, Upstream

__all__ = ["Hold", "Route", "RouteTable", "Upstream"]


class RouteTable:
    """Ready replicas per deployment; cheap to read, replaced wholesale on write.

    ``get`` returns ``None`` for an unknown deployment (the gateway answers 404) and ``[]``
    for a known deployment that has no ready replica right now (503).
    """

    def __init__(self, mapping: Mapping[str, Iterable[Upstream]] | None = None) -> None:
        self._routes: dict[str, Route] = {}
        self.version = 0
        self._listeners: list[Callable[[], None]] = []
        if mapping:
            self.replace_all(mapping)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change (on the writer's thread)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self.version += 1
        for listener in self._listeners:
            listener()

    def set_routes(self, deployment: str, upstreams: Iterable[Upstream],
                   weights: Mapping[str, float] | None = None, hold: Hold | None = None
                   ) -> None:
        """Declare ``deployment`` with exactly these ready upstreams (may be empty)."""
        route = Route.of(deployment, upstreams, weights, hold)
        routes = dict(self._routes)
        routes[deployment] = route
        self._routes = routes
        self._changed()

    def remove(self, deployment: str) -> None:
        """Forget ``deployment``; requests for it get 404. Unknown names are a no-op."""
        if deployment in self._routes:
            routes = dict(self._routes)
            del routes[deployment]
            self._routes = routes
            self._changed()

    def replace_all(self, mapping: Mapping[str, Iterable[Upstream]]) -> None:
        """Swap in a complete table (what a control plane pushes after a restart)."""
        self.replace_routes({name: Route.of(name, ups) for name, ups in mapping.items()})

    def replace_routes(self, routes: Mapping[str, Route]) -> None:
        """Swap in a complete table of prepared routes (weights and holds included)."""
        self._routes = dict(routes)
        self._changed()

    def get(self, deployment: str) -> list[Upstream] | None:
        """The ready upstreams of ``deployment``; ``None`` if the deployment is unknown."""
        route = self._routes.get(deployment)
        return None if route is None else list(route.upstreams)

    def route(self, deployment: str) -> Route | None:
        """The hot-path read: the immutable :class:`Route`, or ``None`` if unknown."""
        return self._routes.get(deployment)

    def deployments(self) -> list[str]:
        return sorted(self._routes)

    def snapshot(self) -> dict[str, list[Upstream]]:
        return {name: list(r.upstreams) for name, r in self._routes.items()}
