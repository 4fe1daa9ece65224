"""The types the gateway, the controller and the token check share: an upstream replica,
a deployment's route (its upstreams, traffic split and hold), and a refusal. Pure values;
the route table that holds them is ``gateway/routes.py``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


@dataclass(frozen=True)
class Refusal:
    """Why the gateway will not serve a request, as the problem+json it answers with."""

    status: int
    title: str
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    delay_s: float = 0.0    # hold the answer this long (a throttled client waits for it)
