"""``leptonic up``: the whole platform in one process on one machine.

One ASGI app serves the control-plane API (``/api/v1``), the gateway (``/run/...``) and
the dashboard; the controller runs as a task on the same event loop and starts replicas
through the local runtime. State lives in the store (SQLite in the data dir by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from leptonic.auth.tokens import NeedsStore
from leptonic.config import Settings
from leptonic.controller.consolidation import Consolidator
from leptonic.controller.context import ControllerContext
from leptonic.controller.leader import Leadership, holder_id
from leptonic.controller.loop import Controller, Routes
from leptonic.controller.probes import HttpProber, Prober
from leptonic.errors import InvalidInput, LeptonicError
from leptonic.gateway.proxy import Gateway
from leptonic.gateway.routes import RouteTable
from leptonic.runtime.base import Backend
from leptonic.runtime.local import LocalBackend

if TYPE_CHECKING:
    from leptonic.runtime.isolation import Isolation

log = logging.getLogger("leptonic")
#: how often a follower publishes its gateway's counters and the leader reads them
TRAFFIC_SHARE_S = 1.0


class Platform:
    """Owns the store, artifact store, token verifier, runtime, controller and gateway."""

    def __init__(self, settings: Settings, *, tick_s: float = 0.25,
                 backend: Backend | None = None, prober: Prober | None = None) -> None:
        from leptonic.auth.ratelimit import FailureWindow
        from leptonic.auth.secrets import SecretBox
        from leptonic.auth.tokens import TokenVerifier
        from leptonic.store.artifacts import ArtifactStore
        from leptonic.store.store import Store

        self.settings = settings
        self.layout = settings.layout.ensure()
        self.store = Store(settings.db_url)
        self.store.migrate()
        self.artifacts = ArtifactStore(self.layout.artifacts)
        self.verifier = TokenVerifier(self.store, is_public=self.is_public)
        self.secrets = SecretBox.for_data_dir(self.layout.root)
        self.login_limits = {"user": FailureWindow(limit=5, window_s=300),
                             "address": FailureWindow(limit=30, window_s=300)}
        self.registry = CollectorRegistry()
        self.routes = RouteTable()
        self.gateway = Gateway(self.routes, authorize=self.authorize_run,
                               max_body_bytes=settings.max_body_bytes, registry=self.registry,
                               on_hold=lambda _: self.controller.wake())
        # the controller reads every live gateway's traffic, not only this one's
        from leptonic.observe.traffic import ClusterTraffic
        self.traffic = ClusterTraffic(self.gateway)
        self.backend: Backend = backend or self._runtime()
        self.prober: Prober = prober or HttpProber()
        self.ctx = ControllerContext(store=self.store, backend=self.backend,
                                     prober=self.prober, artifacts=self.artifacts,
                                     secrets=self.secrets, traffic=self.traffic,
                                     series_interval_s=settings.observe.interval_s,
                                     models_root=str(self.layout.models))
        self.controller = Controller(self.ctx, self.publish_routes, tick_s=tick_s,
                                     registry=self.registry)
        self.controller.consolidator = Consolidator(
            self.ctx, period_s=settings.consolidate_period_s,
            standby_after_s=settings.standby_after_s,
            max_moves_per_hour=settings.max_moves_per_hour)
        from leptonic.observe.service import Observability
        self.observe = Observability(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self._share_task: asyncio.Task[None] | None = None
        self.leadership = Leadership(self.store, holder_id(settings.port),
                                     lease_s=settings.lease_s, on_elected=self._lead,
                                     on_deposed=self._follow)
        from leptonic.api.app import create_app
        self.api = create_app(self)

    # -- wiring -----------------------------------------------------------------------
    def _runtime(self) -> Backend:
        s = self.settings
        if s.runtime == "ray":
            import hashlib

            from leptonic.runtime.ray import RayBackend

            # every control plane on this store marks its actors alike (HA across hosts)
            mark = "lep-" + hashlib.sha256(s.db_url.encode()).hexdigest()[:10]
            return RayBackend(self.layout, address=s.ray_address, owner_mark=mark,
                              isolation=lambda: self.isolation)
        if s.runtime != "local":
            raise InvalidInput(f"unknown runtime {s.runtime!r}; use local or ray")
        return LocalBackend(self.layout, host="127.0.0.1", isolation=lambda: self.isolation)

    @functools.cached_property
    def isolation(self) -> Isolation:
        """How user code runs (decided on first use: it may create the run user)."""
        from leptonic.runtime.isolation import UID_RANGE, Isolation

        s = self.settings
        return Isolation(self.layout.root, mode=s.isolation, work_root=s.work_dir,
                         run_as=s.run_as,
                         allocate_uid=lambda owner: self.store.run_uid(owner, *UID_RANGE))

    def is_public(self, deployment: str) -> bool:
        """Is ``deployment`` served without a token? From the route table the controller
        (or a follower's store sync) publishes: the gateway's loop never reads the store
        for it."""
        route = self.routes.route(deployment)
        return route is not None and route.public

    def authorize_run(self, token: str | None, deployment: str, client: str | None
                      ) -> Any:
        """The gateway's token check: answered on the event loop when the verifier knows
        the answer from memory (a cached token, a malformed or known-bad one, a throttled
        address); otherwise a coroutine that asks the store in a worker thread, so a
        request never holds the loop on a store query."""
        verifier = self.verifier
        try:
            return verifier.authorize_run(token, deployment, client, memory_only=True)
        except NeedsStore:
            return asyncio.to_thread(verifier.authorize_run, token, deployment, client)

    def publish_routes(self, routes: Routes) -> None:
        self.routes.replace_routes(routes)

    def wake(self) -> None:
        """Ask the controller to reconcile now; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.controller.wake)

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    @property
    def shared_database(self) -> bool:
        """Other control planes may share this store (anything but embedded SQLite)."""
        return self.store.dialect != "sqlite"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        swept = await asyncio.to_thread(self.artifacts.sweep_staging)
        if swept:
            log.info("removed %d half-uploaded bundle(s) left by a crash", swept)
        self._follow_task = asyncio.create_task(self._sync_routes(), name="leptonic-routes")
        if self.shared_database:
            self._share_task = asyncio.create_task(self._share_traffic(),
                                                   name="leptonic-traffic")
        await self.leadership.start()

    async def _lead(self) -> None:
        """Elected: run the controllers and the other singletons."""
        await self.controller.start()
        await self.observe.start()

    async def _follow(self) -> None:
        """Deposed (or stopping): stop acting; replicas keep running for the next leader."""
        await self.observe.stop()
        await self.controller.stop()

    async def _sync_routes(self) -> None:
        """A follower's gateway: route table from the store, which the leader keeps. If the
        store cannot be read, the last table keeps serving."""
        while True:
            await asyncio.sleep(0.5)
            if not self.is_leader:      # the leader's controller publishes in-process
                await self.sync_routes_once()

    async def _share_traffic(self) -> None:
        """Several control planes: a follower publishes its gateway's counters about once
        a second; the leader reads the others' and adds them to its own
        (observe/traffic.py)."""
        from leptonic.observe.traffic import snapshot
        from leptonic.store.traffic import TrafficStore

        tstore = TrafficStore(self.store)
        holder = self.leadership.holder
        last_prune = 0.0
        while True:
            await asyncio.sleep(TRAFFIC_SHARE_S)
            now = time.time()
            try:
                if self.is_leader:
                    rows = await asyncio.to_thread(tstore.others, holder, now - 3600.0)
                    self.traffic.update(rows, now)
                    if now - last_prune > 600.0:
                        last_prune = now
                        await asyncio.to_thread(tstore.prune, now - 3600.0)
                else:
                    await asyncio.to_thread(tstore.publish, holder, snapshot(self.gateway),
                                            now)
            except Exception as exc:         # the store is down: try again next time
                log.warning("cannot share gateway traffic through the store (%s)",
                            type(exc).__name__)

    async def sync_routes_once(self) -> bool:
        """Rebuild the route table from the store; False (table kept) if unreachable."""
        try:
            deployments = await asyncio.to_thread(self.store.list_deployments)
            replicas = await asyncio.to_thread(self.store.list_replicas)
            rollouts = await asyncio.to_thread(self.store.list_rollouts)
        except Exception as exc:
            log.warning("cannot read routes from the store (%s); serving the last "
                        "route table", type(exc).__name__)
            return False
        self.publish_routes(self.controller.routes_of(deployments, replicas, rollouts))
        return True

    async def stop(self, *, stop_replicas: bool | None = None) -> None:
        """Stop serving. With embedded SQLite a clean stop takes the replicas with it (the
        next start brings them back); on a shared database they keep running and the next
        leader adopts them."""
        if stop_replicas is None:
            stop_replicas = not self.shared_database
        if self._follow_task:
            self._follow_task.cancel()
        if self._share_task:
            self._share_task.cancel()
        await self.leadership.stop(release=True)
        if stop_replicas:
            await self.controller.jobs.interrupt_all()      # retried on the next start
            replicas = await asyncio.to_thread(self.store.list_replicas)
            await self.backend.stop_all(grace_s=5.0)
            for r in replicas:
                await asyncio.to_thread(self.store.delete_replica, r.id)
        await self.prober.aclose()
        await self.backend.close()
        if "isolation" in self.__dict__:         # only if it was ever needed
            with contextlib.suppress(OSError):
                self.isolation.work_root.rmdir()   # empty once every replica stopped


    # -- the ASGI app ---------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"].startswith("/run/"):
            await self.gateway(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("platform failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def run_platform(settings: Settings) -> None:
    """Start the platform and block until SIGINT/SIGTERM."""
    import uvicorn

    from leptonic.auth.tokens import ensure_admin_token
    from leptonic.server import GuardedHttpToolsProtocol

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "alembic"):     # a line per probe is not news
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.umask(0o077)         # whatever the platform writes is its own
    platform = Platform(settings)
    layout = platform.layout
    try:
        isolation = platform.isolation
    except LeptonicError as exc:
        log.error("%s", exc.detail)
        raise SystemExit(1) from exc
    if isolation.warning:
        log.warning("%s", isolation.warning)
    log.info("%s", isolation.describe())
    connect = getattr(platform.backend, "connect", None)
    if connect is not None:              # a cluster runtime: reach it before serving
        try:
            connect()
        except LeptonicError as exc:
            log.error("%s", exc.detail)
            raise SystemExit(1) from exc
    if settings.runtime == "ray":
        log.info("runtime: ray: each node's actors isolate replicas and job attempts as "
                 "above where they can (their own uid where Ray's workers run as root, the "
                 "sandbox where bubblewrap is installed there); a node that can do neither "
                 "fails the replica with the reason")
    token = ensure_admin_token(platform.store, layout)
    if token:
        log.info("created the admin token; it is in %s (mode 0600)", layout.admin_token)
    layout.endpoint.write_text(settings.url + "\n")
    layout.pidfile.write_text(f"{os.getpid()}\n")
    log.info("leptonic is up at %s (data dir %s)", settings.url, layout.root)
    config = uvicorn.Config(platform, host=settings.host, port=settings.port,
                            loop="uvloop", http=GuardedHttpToolsProtocol, lifespan="on",
                            access_log=False, log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGINT/SIGTERM once it has shut down gracefully; the handlers it
    # restores are these no-ops, so a clean stop exits 0 rather than "killed by signal".
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        with contextlib.suppress(OSError):
            layout.pidfile.unlink()
    if not server.started:
        raise SystemExit(1)
    log.info("leptonic stopped cleanly")
