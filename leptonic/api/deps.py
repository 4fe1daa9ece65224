"""Request dependencies: the platform (as ``ApiPlatform``, what the API and the dashboard
use of it), and the check every ``/api/v1`` route runs — who is calling (bearer token)
and whether their role may call this route (``auth.roles``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from leptonic.auth.roles import Role, required_role
from leptonic.auth.tokens import THROTTLE_DELAY_S, Principal
from leptonic.errors import Forbidden, TooManyRequests, Unauthorized

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from leptonic.auth.ratelimit import FailureWindow
    from leptonic.auth.secrets import SecretBox
    from leptonic.auth.tokens import TokenVerifier
    from leptonic.config import DataDir, Settings
    from leptonic.controller.leader import Leadership
    from leptonic.gateway.proxy import Gateway
    from leptonic.gateway.routes import RouteTable
    from leptonic.observe.service import Observability
    from leptonic.runtime.base import Backend
    from leptonic.runtime.isolation import Isolation
    from leptonic.store.artifacts import ArtifactStore
    from leptonic.store.store import Store


class ApiPlatform(Protocol):
    """What the API routes and the dashboard use of ``leptonic.platform.Platform``: the
    store and the artifacts, the auth pieces, the runtime, the gateway's state, the
    observability service, and a way to wake the controller. Nothing here starts or stops
    anything; that stays with the platform."""

    settings: Settings
    layout: DataDir
    store: Store
    artifacts: ArtifactStore
    verifier: TokenVerifier
    secrets: SecretBox
    login_limits: dict[str, FailureWindow]
    registry: CollectorRegistry
    backend: Backend
    gateway: Gateway
    routes: RouteTable
    observe: Observability
    leadership: Leadership

    @property
    def is_leader(self) -> bool: ...

    @property
    def isolation(self) -> Isolation: ...

    def wake(self) -> None:
        """Ask the controller to reconcile now; safe from any thread."""


async def get_platform(request: Request) -> ApiPlatform:
    # async: a plain attribute read, which should not cost a hop through the threadpool
    platform: ApiPlatform = request.app.state.platform
    return platform


API_PREFIX = "/api/v1"


def _route_path(request: Request) -> str:
    """The matched route's path template (``/api/v1/deployments/{name}``). Routers
    included under the v1 prefix report their path without it, so it is put back."""
    route = request.scope.get("route")
    path = str(getattr(route, "path", request.url.path))
    return path if path.startswith(API_PREFIX) else API_PREFIX + path


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def require_token(request: Request) -> Principal | None:
    """Authenticate and authorise by the permission table; public routes pass. Refusals
    are counted in ``leptonic_api_auth_refusals_total``; bad tokens count against the
    caller's address (``auth.tokens.FAILURE_LIMIT``), past which it gets 429.

    A token the verifier has fresh in its cache is checked on the event loop; anything
    that may need the store goes to the threadpool (so a busy loop costs an API call one
    hop less)."""
    try:
        needed = required_role(request.method, _route_path(request))
        if needed is None:
            return None
        token = bearer(request)
        if token is None:
            raise Unauthorized("this API needs a token: send 'Authorization: Bearer TOKEN' "
                               "(the admin token is in DATA_DIR/admin-token; users get one "
                               "with `leptonic login`)")
        verifier = request.app.state.platform.verifier
        principal: Principal | None = verifier.fresh(token)
        if principal is None:
            principal = await run_in_threadpool(verifier.authenticate, token,
                                                client_address(request))
        return _authorize(request, principal, needed)
    except (Unauthorized, Forbidden, TooManyRequests) as exc:
        refusals = getattr(request.app.state, "auth_refusals", None)
        if refusals is not None:
            refusals.labels(str(exc.status)).inc()
        if isinstance(exc, TooManyRequests):        # the address is over FAILURE_LIMIT
            await asyncio.sleep(THROTTLE_DELAY_S)
        raise


def _authorize(request: Request, principal: Principal | None, needed: Role) -> Principal:
    if principal is None:
        raise Unauthorized("the token is not valid (unknown, revoked or expired)")
    request.state.principal = principal
    if principal.deployment is not None:
        raise Forbidden(f"this token may only call deployment {principal.deployment!r} "
                        "through the gateway; it cannot use the API")
    if not principal.role.allows(needed):
        raise Forbidden(f"role {principal.role.value!r} may not {request.method} "
                        f"{_route_path(request)}; it needs {needed.value!r} or above — ask "
                        "an admin")
    return principal


def principal_of(request: Request) -> Principal:
    """The caller of a route that requires a token (after ``require_token``)."""
    principal: Principal = request.state.principal
    return principal
