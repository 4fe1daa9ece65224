"""The gateway: a raw ASGI app that proxies ``/run/{deployment}/{rest}`` to a ready replica.

Per request it authorizes the bearer token, reads the body (bounded), looks the deployment
up in the :class:`~leptonic.gateway.routes.RouteTable`, picks a replica by power of two
choices on outstanding requests, and relays the replica's response unchanged apart from
hop-by-hop headers and an added ``x-leptonic-replica``. A request whose connection fails
before any response byte (refused, reset, EOF) goes to another replica, and the failed one
is ejected for a few seconds, so a replica killed under load fails no request.

The request body is buffered (it is bounded by ``max_body_bytes``) because a retry has to
send it again; the response body is streamed through as it arrives.

Errors the gateway itself produces are ``application/problem+json``; the replicas' own
4xx/5xx pass through untouched.

Rollouts and autoscaling lean on the gateway: a route may split traffic by weight between
replica templates (canary), the gateway counts each template's answers and latencies for
the canary analysis (``traffic()``), knows the requests in flight per replica (the
autoscaler's signal, and what a draining replica still has to finish), and holds requests
for a deployment scaled to zero (bounded queue, timeout) until a replica is ready.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from leptonic.asgi import BadLength, TooLarge, length_of
from leptonic.config import DEFAULT_MAX_BODY_BYTES
from leptonic.core.analysis import LATENCY_BOUNDS_MS, N_BUCKETS, TrafficCounters, bucket_of
from leptonic.core.routes import Refusal
from leptonic.errors import PROBLEM_CONTENT_TYPE, problem
from leptonic.gateway.balancer import pick
from leptonic.gateway.routes import Hold, Route, RouteTable, Upstream
from leptonic.gateway.upstream import UpstreamClient, UpstreamError, UpstreamTimeout

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EJECT_SECONDS = 5.0
# authorize(token, deployment, client address or None) -> serve (True/None), 401 (False)
# or another answer (Refusal); or an awaitable of one, where answering needs I/O (the
# gateway awaits it; the event loop is never held by a store query)
Verdict = Refusal | bool | None
Authorize = Callable[[str | None, str, str | None], Verdict | Awaitable[Verdict]]

UNKNOWN_DEPLOYMENT = "(unknown)"   # metrics label for requests to no known deployment

# Request headers that are not forwarded as they are: hop-by-hop ones (RFC 9110 7.6.1),
# the platform token, and those the gateway rewrites (host, framing, forwarding, id).
_REQUEST_SKIP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authorization", b"expect",
    b"authorization", b"host", b"content-length", b"x-forwarded-for",
    b"x-forwarded-host", b"x-forwarded-proto", b"x-request-id",
})
_CONNECTION_STANDARD = frozenset({b"keep-alive", b"close", b"upgrade", b""})
_BAD_TARGET_BYTES = (b" ", b"\r", b"\n")
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class _Metrics:
    """The gateway's Prometheus series.

    Answers, latencies and requests in flight are plain numbers the event loop bumps (no
    lock, no label lookup per request); the registry reads them through ``collect`` at
    scrape time. The latency histogram is the canary analysis' own counts
    (``LATENCY_BOUNDS_MS``, per replica template, summed per deployment here): alerts,
    the dashboard and the analysis judge one set of buckets with one quantile function.
    Retries and ejections are rare and stay ordinary counters.
    """

    def __init__(self, registry: CollectorRegistry,
                 traffic: Mapping[tuple[str, str], _Traffic]) -> None:
        self.codes: dict[tuple[str, int], int] = {}
        self.in_flight: dict[str, int] = {}
        self._traffic = traffic
        self.retries = Counter(
            "leptonic_gateway_retries_total",
            "Requests sent again to another replica after a connection failure.",
            ["deployment"], registry=registry)
        self.ejections = Counter(
            "leptonic_gateway_ejections_total",
            "Replicas taken out of rotation for a while after a connection failure.",
            ["deployment"], registry=registry)
        registry.register(self)

    def request(self, deployment: str, code: int) -> None:
        key = (deployment, code)
        codes = self.codes
        codes[key] = codes.get(key, 0) + 1

    def describe(self) -> list[Any]:
        return self._families()

    def collect(self) -> list[Any]:
        families = self._families()
        requests, latency, in_flight = families
        for (dep, code), n in list(self.codes.items()):
            requests.add_metric([dep, str(code)], n)
        counts: dict[str, list[int]] = {}
        seconds: dict[str, float] = {}
        for (dep, _), t in list(self._traffic.items()):     # replica templates, summed
            mine = counts.setdefault(dep, [0] * N_BUCKETS)
            mine[:] = map(operator.add, mine, t.buckets)
            seconds[dep] = seconds.get(dep, 0.0) + t.seconds
        for dep, per_bucket in counts.items():
            latency.add_metric([dep], list(zip(_LE_LABELS, itertools.accumulate(per_bucket),
                                               strict=True)), seconds[dep])
        for dep, n in list(self.in_flight.items()):
            in_flight.add_metric([dep], n)
        return families

    @staticmethod
    def _families() -> list[Any]:
        return [
            CounterMetricFamily(
                "leptonic_gateway_requests",
                "Requests answered by the gateway, by deployment and status code.",
                labels=["deployment", "code"]),
            HistogramMetricFamily(
                "leptonic_gateway_upstream_latency_seconds",
                "Time from sending a request to a replica to its response headers (to its "
                "whole body when that is small and came after them).",
                labels=["deployment"]),
            GaugeMetricFamily(
                "leptonic_gateway_in_flight_requests",
                "Requests currently being proxied, by deployment.", labels=["deployment"]),
        ]


#: the histogram's ``le`` labels: the analysis bounds in seconds, then +Inf
_LE_LABELS = (*(repr(ms / 1000.0) for ms in LATENCY_BOUNDS_MS), "+Inf")


class _Traffic:
    """Mutable counters of one (deployment, replica template); see ``TrafficCounters``."""

    __slots__ = ("buckets", "errors", "requests", "seconds")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.buckets = [0] * N_BUCKETS
        self.seconds = 0.0          # the sum of the latencies counted in ``buckets``

    def record(self, status: int, seconds: float | None) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        if seconds is not None:
            self.buckets[bucket_of(seconds * 1000.0)] += 1
            self.seconds += seconds

    def snapshot(self) -> TrafficCounters:
        return TrafficCounters(self.requests, self.errors, tuple(self.buckets))


def _bearer(value: bytes | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Gateway:
    """ASGI app for ``/run/{deployment}/{rest...}``; see the module docstring.

    ``authorize(token, deployment, client)`` gets the bearer token (or ``None``), the
    deployment asked for and the client's address (``None`` if the server gives none), and
    answers True/None to serve the request, False for a 401, or a ``Refusal`` for any other
    answer (403, 429 with Retry-After); with no callable every request is served. Every
    refusal is counted in ``leptonic_gateway_requests_total`` like any other answer.
    With ``registry=None`` the metrics go to a private registry, reachable as
    ``gateway.registry``. ``rng`` seeds replica choice.
    ``outstanding`` maps replica id to its in-flight requests (absent means 0).
    """

    def __init__(
        self,
        table: RouteTable,
        *,
        authorize: Authorize | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        retries: int = 2,
        connect_timeout: float = 2.0,
        read_timeout: float = 300.0,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
        on_hold: Callable[[str], None] | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.table = table
        self.authorize = authorize
        self.max_body_bytes = max_body_bytes
        self.retries = retries
        self.client = UpstreamClient(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self.registry = registry if registry is not None else CollectorRegistry()
        self._traffic: dict[tuple[str, str], _Traffic] = {}
        self.metrics = _Metrics(self.registry, self._traffic)
        self.rng = rng if rng is not None else random.Random()
        self._outstanding: dict[str, int] = {}
        self.outstanding: Mapping[str, int] = MappingProxyType(self._outstanding)
        # request ids: a random per-gateway prefix and a counter (unique, and no
        # os.urandom syscall per request as uuid4 would cost on the hot path)
        self._id_prefix = uuid.uuid4().hex[:20].encode()
        self._id_seq = itertools.count()
        self._ejected: dict[str, float] = {}   # replica id -> monotonic time it comes back
        # rollouts and autoscaling: see the module docstring
        self.on_hold = on_hold                  # called when a request starts waiting
        self._arrived: dict[str, int] = {}      # requests per deployment, ever
        self._waiting: dict[str, int] = {}      # requests held per deployment, now
        self._held: dict[str, int] = {}         # requests ever held per deployment
        self._arrivals: dict[str, asyncio.Event] = {}
        table.subscribe(self._routes_changed)

    # -- public helpers ----------------------------------------------------------------
    def traffic(self, deployment: str) -> dict[str, TrafficCounters]:
        """Cumulative answers per replica template (route group) of ``deployment``."""
        return {group: t.snapshot() for (dep, group), t in list(self._traffic.items())
                if dep == deployment}

    def arrived(self, deployment: str) -> int:
        """Requests for ``deployment`` since the gateway started (held ones included)."""
        return self._arrived.get(deployment, 0)

    def waiting(self, deployment: str) -> int:
        """Requests held right now because ``deployment`` has no ready replica."""
        return self._waiting.get(deployment, 0)

    def held_total(self, deployment: str) -> int:
        """Requests ever held for ``deployment`` (a counter): demand the autoscaler must
        see even when a hold shorter than its tick ended before it looked."""
        return self._held.get(deployment, 0)

    def counters(self) -> dict[str, Any]:
        """Everything the controller reads, as plain JSON-able data: what this gateway
        publishes for the leader when it is not the leader (observe/traffic.py)."""
        traffic: dict[str, dict[str, list[Any]]] = {}
        for (dep, group), t in list(self._traffic.items()):
            traffic.setdefault(dep, {})[group] = [t.requests, t.errors, list(t.buckets)]
        return {"outstanding": {k: v for k, v in self._outstanding.items() if v},
                "arrived": dict(self._arrived), "held": dict(self._held),
                "waiting": {k: v for k, v in self._waiting.items() if v},
                "traffic": traffic}

    def _routes_changed(self) -> None:
        if self._arrivals:
            arrivals, self._arrivals = self._arrivals, {}
            for event in arrivals.values():
                event.set()
        known = set(self.table.deployments())
        for key in [k for k in self._traffic if k[0] not in known]:
            del self._traffic[key]

    def ejected(self, now: float | None = None) -> list[str]:
        """Replica ids currently out of rotation after a connection failure."""
        now = time.monotonic() if now is None else now
        return sorted(rid for rid, until in self._ejected.items() if until > now)

    async def aclose(self) -> None:
        """Close pooled replica connections (lifespan shutdown does this too)."""
        await self.client.aclose()

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if not path.startswith("/run/"):
            await _problem(send, 404, "Not found",
                           f"no route for {path!r}; the gateway serves /run/DEPLOYMENT/PATH")
            return
        raw_path: bytes = scope.get("raw_path") or path.encode()
        rest = raw_path[5:]
        slash = rest.find(b"/")
        if slash < 0:
            deployment, target = path[5:], b"/"
        else:
            deployment = path[5:].partition("/")[0]
            target = rest[slash:]
        if any(b in target for b in _BAD_TARGET_BYTES):
            await _problem(send, 400, "Bad request", "the request path has invalid characters")
            return
        query: bytes = scope.get("query_string") or b""
        if query:
            target = target + b"?" + query

        # One pass over the headers: forward the plain ones, pick out the rest.
        forwarded = bytearray()
        authorization = content_length = xff = request_id = host = None
        chunked = False
        connection_tokens: bytes | None = None
        for name, value in scope["headers"]:
            if name in _REQUEST_SKIP:
                if name == b"authorization":
                    authorization = value
                elif name == b"content-length":
                    content_length = value
                elif name == b"transfer-encoding":
                    chunked = True
                elif name == b"x-forwarded-for":
                    xff = value
                elif name == b"x-request-id":
                    request_id = value
                elif name == b"host":
                    host = value
                elif name == b"connection":
                    connection_tokens = value
                continue
            forwarded += name + b": " + value + b"\r\n"
        if connection_tokens is not None:
            forwarded = _drop_connection_named(forwarded, connection_tokens)

        if self.authorize is not None:
            client = scope.get("client")
            verdict = self.authorize(_bearer(authorization), deployment,
                                     client[0] if client else None)
            if verdict is not None and not isinstance(verdict, (bool, Refusal)):
                verdict = await verdict         # the check needs I/O: off the loop
            if isinstance(verdict, Refusal):
                if verdict.delay_s > 0:
                    await asyncio.sleep(verdict.delay_s)
                await _problem(send, verdict.status, verdict.title, verdict.detail,
                               extra_headers=list(verdict.headers))
                self._count_refusal(deployment, verdict.status)
                return
            if verdict is False:
                await _problem(send, 401, "Unauthorized",
                               "this gateway needs a token: send 'Authorization: Bearer TOKEN'",
                               extra_headers=[(b"www-authenticate", b"Bearer")])
                self._count_refusal(deployment, 401)
                return

        # The body: refuse early on a declared length over the limit, count streamed bytes.
        limit = self.max_body_bytes
        body = b""
        if content_length is not None:
            try:
                declared = length_of(content_length)
            except BadLength as exc:
                await _problem(send, 400, "Bad request", str(exc))
                self._count_refusal(deployment, 400)
                return
            if declared > limit:
                await _too_large(send, limit)
                self._count_refusal(deployment, 413)
                return
        if content_length is not None or chunked:
            parts: list[bytes] | None = None
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        await _too_large(send, limit)
                        self._count_refusal(deployment, 413)
                        return
                    if not body:
                        body = chunk
                    else:
                        if parts is None:
                            parts = [body]
                        parts.append(chunk)
                if not message.get("more_body", False):
                    break
            if parts is not None:
                body = b"".join(parts)

        route = self.table.route(deployment)
        if route is None:
            await _problem(send, 404, "Not found", f"deployment {deployment!r} does not exist",
                           deployment=deployment)
            # Not labelled by the name asked for: clients must not be able to mint series.
            self.metrics.request(UNKNOWN_DEPLOYMENT, 404)
            return
        self._arrived[deployment] = self._arrived.get(deployment, 0) + 1
        if not route.ids:
            held = None if route.hold is None else await self._hold(deployment, route.hold)
            if not isinstance(held, Route):
                why = held or "has no ready replica; retry shortly"
                await _problem(send, 503, "Service unavailable",
                               f"deployment {deployment!r} {why}",
                               extra_headers=[(b"retry-after", b"1")], deployment=deployment)
                self.metrics.request(deployment, 503)
                return
            route = held

        method: str = scope["method"]
        client = scope.get("client")
        client_host = client[0].encode("latin-1") if client else b"unknown"
        xff = xff + b", " + client_host if xff else client_host
        if request_id is None:
            request_id = b"%s%012x" % (self._id_prefix, next(self._id_seq))
        tail = [b"x-forwarded-for: ", xff, b"\r\nx-request-id: ", request_id, b"\r\n"]
        if host is not None:
            tail += [b"x-forwarded-host: ", host, b"\r\n"]
        tail.append(b"x-forwarded-proto: " + scope.get("scheme", "http").encode() + b"\r\n")
        if body or method not in _NO_BODY_METHODS:
            tail.append(b"content-length: %d\r\n" % len(body))
        tail.append(b"\r\n")
        request_line = method.encode() + b" " + target + b" HTTP/1.1\r\n"
        after_host = bytes(forwarded) + b"".join(tail)

        await self._forward(deployment, route, request_line, after_host,
                            body, method == "HEAD", receive, send, request_id)

    async def _hold(self, deployment: str, hold: Hold) -> Route | str:
        """Wait for a ready replica of ``deployment`` (scaled to zero, one is starting);
        the route once it has one, else why not."""
        n = self._waiting.get(deployment, 0)
        if n >= hold.max_queued:
            return (f"has no ready replica and {n} request(s) already wait for one; "
                    "retry shortly")
        self._waiting[deployment] = n + 1
        self._held[deployment] = self._held.get(deployment, 0) + 1
        if self.on_hold is not None:
            self.on_hold(deployment)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold.timeout_s
        try:
            while True:
                route = self.table.route(deployment)
                if route is None:
                    return "was deleted"
                if route.ids:
                    return route
                left = deadline - loop.time()
                event = self._arrivals.get(deployment)
                if event is None:
                    event = self._arrivals[deployment] = asyncio.Event()
                try:
                    if left <= 0:
                        raise TimeoutError
                    await asyncio.wait_for(event.wait(), left)
                except TimeoutError:
                    return (f"had no ready replica within {hold.timeout_s:g}s of this "
                            "request; it is still starting, retry shortly")
        finally:
            left_waiting = self._waiting[deployment] - 1
            if left_waiting:
                self._waiting[deployment] = left_waiting
            else:
                del self._waiting[deployment]

    def _count_refusal(self, deployment: str, status: int) -> None:
        """Count an answer given before the route was looked at. Labelled by the name
        asked for only if it is a known deployment: clients must not mint series."""
        if self.table.route(deployment) is None:
            deployment = UNKNOWN_DEPLOYMENT
        self.metrics.request(deployment, status)

    def _record(self, deployment: str, group: str, status: int, seconds: float | None) -> None:
        key = (deployment, group)
        traffic = self._traffic.get(key)
        if traffic is None:
            traffic = self._traffic[key] = _Traffic()
        traffic.record(status, seconds)

    async def _forward(
        self,
        deployment: str,
        route: Route,
        request_line: bytes,
        after_host: bytes,
        body: bytes,
        head_only: bool,
        receive: Receive,
        send: Send,
        request_id: bytes = b"",
    ) -> None:
        metrics = self.metrics
        in_flight = metrics.in_flight
        outstanding = self._outstanding
        ejected = self._ejected
        ids, by_id, split = route.ids, route.by_id, route.split
        tried: set[str] | None = None
        attempt = 0
        last_error: UpstreamError | None = None
        last_saturated = False
        group = ""
        in_flight[deployment] = in_flight.get(deployment, 0) + 1
        try:
            while True:
                now = 0.0
                if ejected:
                    now = time.monotonic()
                    for back in [r for r, until in ejected.items() if until <= now]:
                        del ejected[back]       # its time is up: a candidate again
                chosen = pick(ids, split, outstanding, self.rng, tried=tried or frozenset(),
                              ejected=ejected, now=now)
                if chosen is None:
                    break
                rid = chosen
                upstream = by_id[rid]
                group = upstream.group
                outstanding[rid] = outstanding.get(rid, 0) + 1
                try:
                    started = time.perf_counter()
                    try:
                        resp = await self.client.request(
                            upstream.host, upstream.port,
                            request_line + upstream.host_line + after_host, body,
                            head_only=head_only)
                        if not resp.complete and resp.small:
                            # Headers came, the rest not yet: read it before answering,
                            # so a replica lost now is retried, not a cut connection.
                            await resp.read_all()
                    except UpstreamError as exc:
                        last_error = exc
                        if not exc.before_response or attempt >= self.retries:
                            break
                        attempt += 1
                        metrics.retries.labels(deployment).inc()
                        if exc.reused:
                            # The replica may only have closed an idle connection; let
                            # it be picked again, on a fresh connection.
                            self.client.drop_idle(upstream.host, upstream.port)
                        else:
                            if tried is None:
                                tried = set()
                            tried.add(rid)
                            if rid not in ejected:      # count each ejection once
                                metrics.ejections.labels(deployment).inc()
                            ejected[rid] = time.monotonic() + EJECT_SECONDS
                        continue
                    elapsed = time.perf_counter() - started
                    if resp.status == 503 and attempt < self.retries and len(ids) > 1 \
                            and _saturated(resp.headers):
                        # the replica is full and said so before doing any work: another
                        # replica may have room (its answer stays the last resort)
                        resp.release()
                        attempt += 1
                        metrics.retries.labels(deployment).inc()
                        if tried is None:
                            tried = set()
                        tried.add(rid)
                        last_saturated = True
                        continue
                    self._record(deployment, group, resp.status, elapsed)
                    await self._relay(deployment, upstream, resp, receive, send, request_id)
                    return
                finally:
                    n = outstanding[rid] - 1
                    if n:
                        outstanding[rid] = n
                    else:
                        del outstanding[rid]
        finally:
            in_flight[deployment] -= 1

        if last_saturated and last_error is None:
            await _problem(send, 503, "Service unavailable",
                           f"every replica of deployment {deployment!r} tried is at its "
                           "concurrency limit; retry later, or add replicas",
                           deployment=deployment, extra_headers=[(b"retry-after", b"1")])
            self._record(deployment, group, 503, None)
            metrics.request(deployment, 503)
            return
        self._record(deployment, group, 502, None)
        if isinstance(last_error, UpstreamTimeout):
            await _problem(send, 504, "Gateway timeout",
                           f"a replica of deployment {deployment!r} did not answer in time: "
                           f"{last_error}", deployment=deployment)
            metrics.request(deployment, 504)
            return
        reason = f": {last_error}" if last_error else ""
        await _problem(send, 502, "Bad gateway",
                       f"no replica of deployment {deployment!r} could take the request"
                       f"{reason}", deployment=deployment)
        metrics.request(deployment, 502)

    async def _relay(self, deployment: str, upstream: Upstream, resp: Any, receive: Receive,
                     send: Send, request_id: bytes = b"") -> None:
        """Send the replica's response to the client: at once if complete, else streamed.
        It carries the replica that answered and the request's id (the one feedback on a
        model's answer names)."""
        headers = resp.headers
        headers.append((b"x-leptonic-replica", upstream.replica_header))
        if request_id:
            headers.append((b"x-leptonic-request-id", request_id))
        status = resp.status
        try:
            if resp.complete:
                body = resp.take_body()
                resp.release()
                self.metrics.request(deployment, status)
                await send({"type": "http.response.start", "status": status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            self.metrics.request(deployment, status)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            # Streaming: stop reading the replica as soon as the client goes away.
            task = asyncio.current_task()
            watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, task))
            try:
                while True:
                    chunk = await resp.next_chunk()
                    if chunk is None:
                        break
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            except UpstreamError as exc:
                # Too late for a problem document: failing the ASGI call makes the
                # server cut the client connection, so the truncation is visible.
                raise UpstreamError(
                    f"replica {upstream.replica_id} of deployment {deployment!r} failed "
                    f"mid-response: {exc}", before_response=False) from exc
            except asyncio.CancelledError:
                if task is not None and watcher.done() and not watcher.cancelled():
                    task.uncancel()     # the client left; nothing more to do
                    return
                raise
            finally:
                watcher.cancel()
            await send({"type": "http.response.body", "body": b""})
        finally:
            resp.release()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return


def _saturated(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"x-leptonic-saturated" for name, _ in headers)


def _drop_connection_named(forwarded: bytearray, tokens: bytes) -> bytearray:
    """Also drop the headers a client's ``Connection`` header names (RFC 9110 7.6.1)."""
    names = {t.strip().lower() for t in tokens.split(b",")} - _CONNECTION_STANDARD
    if not names:
        return forwarded
    kept = bytearray()
    for line in bytes(forwarded).split(b"\r\n"):
        if line and line.partition(b":")[0].lower() not in names:
            kept += line + b"\r\n"
    return kept


async def _too_large(send: Send, limit: int) -> None:
    await _problem(send, 413, "Payload too large", str(TooLarge(limit)),
                   extra_headers=[(b"connection", b"close")])


async def _problem(send: Send, status: int, title: str, detail: str, *,
                   extra_headers: list[tuple[bytes, bytes]] | None = None,
                   **extra: Any) -> None:
    body = json.dumps(problem(status, title, detail, **extra)).encode()
    headers = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()),
               (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
