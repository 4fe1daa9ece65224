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
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from leptonic.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Upstream:
    """One ready replica the gateway may send requests to (``url``: ``http://HOST:PORT``)."""

    replica_id: str
    url: str
    group: str = ""                 # the replica template it runs; traffic splits by group
    host: str = field(init=False, repr=False, compare=False)
    port: int = field(init=False, repr=False, compare=False)
    # Pre-encoded for the hot path: the Host header line and the response header value.
    host_line: bytes = field(init=False, repr=False, compare=False)
    replica_header: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.replica_id:
            raise InvalidInput("an upstream needs a non-empty replica_id")
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise InvalidInput(
                f"upstream url {self.url!r} of replica {self.replica_id!r} must look like "
                "'http://HOST:PORT'"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidInput(
                f"upstream url {self.url!r} must not have a path or query; the gateway "
                "appends the request's own path"
            )
        netloc = parts.netloc.rsplit("@", 1)[-1]
        object.__setattr__(self, "host", parts.hostname)
        object.__setattr__(self, "port", parts.port)
        object.__setattr__(self, "host_line", b"host: " + netloc.encode("ascii") + b"\r\n")
        object.__setattr__(self, "replica_header", self.replica_id.encode("latin-1"))


@dataclass(frozen=True, slots=True)
class Hold:
    """While a deployment has no upstream, up to ``max_queued`` requests wait up to
    ``timeout_s`` for one (it is being started from zero) instead of getting a 503."""

    max_queued: int = 100
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Route:
    """The upstreams of one deployment, with the lookups the proxy needs precomputed.

    ``split`` is empty when every upstream is alike; otherwise it holds, per group with a
    positive weight and at least one upstream, the running total of the weights and the
    group's replica ids, for one random draw per request.
    """

    upstreams: tuple[Upstream, ...]
    ids: tuple[str, ...]
    by_id: Mapping[str, Upstream]
    split: tuple[tuple[float, tuple[str, ...]], ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)
    hold: Hold | None = None
    public: bool = False            # served without a token (spec.public)

    @classmethod
    def of(cls, deployment: str, upstreams: Iterable[Upstream],
           weights: Mapping[str, float] | None = None, hold: Hold | None = None,
           public: bool = False) -> Route:
        """``weights`` maps groups to their share of traffic; upstreams of a group with
        no (or zero) weight get none. A weighted group with no upstream gets no traffic:
        its share goes to the others."""
        ups = tuple(upstreams)
        if weights:
            ups = tuple(u for u in ups if weights.get(u.group, 0) > 0)
        by_id = {u.replica_id: u for u in ups}
        if len(by_id) != len(ups):
            raise InvalidInput(f"deployment {deployment!r} lists a replica id more than once")
        split: list[tuple[float, tuple[str, ...]]] = []
        if weights:
            groups: dict[str, list[str]] = {}
            for u in ups:
                groups.setdefault(u.group, []).append(u.replica_id)
            if len(groups) > 1:
                total = 0.0
                for group in sorted(groups):
                    total += float(weights[group])
                    split.append((total, tuple(groups[group])))
        return cls(ups, tuple(by_id), by_id, tuple(split), dict(weights or {}), hold, public)


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
