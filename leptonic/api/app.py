"""The control-plane FastAPI app: routers under ``/api/v1``, each route checked against the
permission table (``auth.roles``), state changes audited (refusals included, 413 too),
bodies bounded, every error rendered as problem+json."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.responses import Response

from leptonic import __version__
from leptonic.api import problems
from leptonic.api.audit import AuditLog
from leptonic.api.deps import ApiPlatform, require_token
from leptonic.api.limits import BodyLimit
from leptonic.api.routes import (
    alerts,
    audit,
    auth,
    cluster,
    deployments,
    energy,
    jobs,
    models,
    monitoring,
    photons,
    rollouts,
    secrets,
    status,
    training,
    usage,
)
from leptonic.api.routes import metrics as metric_routes
from leptonic.web import install as install_dashboard

API_PREFIX = "/api/v1"


def create_app(platform: ApiPlatform) -> Any:
    app = FastAPI(title="leptonic", version=__version__,
                  description="The leptonic control plane. Every /api/v1 call needs "
                              "'Authorization: Bearer TOKEN'.")
    app.state.platform = platform
    app.state.auth_refusals = Counter(
        "leptonic_api_auth_refusals_total",
        "API calls refused by the token check: 401 no or bad token, 403 role too low, "
        "429 too many bad tokens from the address.", ["code"], registry=platform.registry)
    problems.install(app)
    v1 = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)])
    for module in (status, photons, deployments, rollouts, cluster, auth, secrets, audit,
                   metric_routes, alerts, energy, jobs, models, training, monitoring, usage):
        v1.include_router(module.router)
    app.include_router(v1)
    install_dashboard(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(platform.registry), media_type=CONTENT_TYPE_LATEST)

    settings = platform.settings
    uploads = (f"{API_PREFIX}/photons", f"{API_PREFIX}/jobs")   # bundles (and job inputs)

    def limit_for(scope: dict[str, Any]) -> int:
        if scope.get("path") in uploads and scope.get("method") == "POST":
            return int(settings.max_bundle_bytes)
        return int(settings.max_body_bytes)

    # The audit log outside the body limit, so that a 413 (which never reaches a route)
    # is recorded too.
    return AuditLog(BodyLimit(app, limit_for), platform.store)
