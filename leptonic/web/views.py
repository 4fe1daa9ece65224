"""The dashboard: server-rendered pages (Jinja2), live fragments that htmx polls, and the
JSON the charts (uPlot) draw. Every page and fragment needs the session cookie; pages
without one redirect to ``/login``, fragments and data answer 401 with ``HX-Redirect``.
The dashboard only reads: changes go through the API and the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from leptonic import __version__
from leptonic.core.alerts import parse_duration
from leptonic.core.models import Deployment, Job, NodeState, check_name
from leptonic.core.registry import KEY_METRICS, RegisteredModel
from leptonic.core.usage import money
from leptonic.errors import LeptonicError
from leptonic.observe.logs import compile_grep, search_file
from leptonic.observe.notify import redact
from leptonic.observe.usage import month_rows, spent_of
from leptonic.observe.usage import report as usage_report
from leptonic.store.usage import UsageStore
from leptonic.web.auth import (
    LoginFailed,
    check_login,
    cross_origin,
    end_session,
    session_principal,
    start_session,
)
from leptonic.web.platform import DashboardPlatform

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor"
VENDOR_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")
RANGES = ("15m", "1h", "6h", "24h", "7d")
LOG_LINES = 200

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


# -- template helpers ---------------------------------------------------------------------
def _age(ts: float | None) -> str:
    if not ts:
        return ""
    secs = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _clock(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _num(v: Any, digits: int = 3) -> str:
    if not isinstance(v, int | float):       # None, or missing from a sample
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:,.0f}"


def _pct(v: Any) -> str:
    """A 0..1 share as a percentage."""
    return f"{v * 100:.2f}%" if isinstance(v, int | float) else "-"


def _unit(v: Any, unit: str) -> str:
    return f"{_num(v)} {unit}" if isinstance(v, int | float) else "-"


templates.env.filters.update(age=_age, clock=_clock, num=_num, pct=_pct, unit=_unit,
                             redact=redact, money=money)
templates.env.globals.update(version=__version__, ranges=RANGES)


def assets_missing() -> list[str]:
    return [f for f in VENDOR_FILES if not (VENDOR / f).is_file()]


# -- session plumbing ---------------------------------------------------------------------
def _platform(request: Request) -> DashboardPlatform:
    platform: DashboardPlatform = request.app.state.platform
    return platform


def _page(request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
    ctx.setdefault("missing_assets", assets_missing())
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    return _secure(response)


def _secure(response: Response) -> Response:
    h = response.headers
    h["content-security-policy"] = ("default-src 'self'; img-src 'self' data:; "
                                    "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                                    "frame-ancestors 'none'; form-action 'self'")
    h["x-content-type-options"] = "nosniff"
    h["referrer-policy"] = "same-origin"
    h["cache-control"] = "no-store"
    return response


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _unauthorized() -> Response:
    return _secure(JSONResponse(
        {"type": "about:blank", "title": "Unauthorized", "status": 401,
         "detail": "log in to the dashboard first"}, status_code=401,
        media_type="application/problem+json", headers={"HX-Redirect": "/login"}))


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


# -- login --------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    return _page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    platform = _platform(request)
    refused = cross_origin(request)       # login CSRF: no logging a victim in as someone
    if refused is not None:
        return _page(request, "login.html", status=403, next="/",
                     error=f"cross-origin login refused: {refused}; log in from this "
                           "dashboard's own login page")
    form = {k: str(v) for k, v in (await request.form()).items()}
    address = request.client.host if request.client else "unknown"
    nxt = _safe_next(form.get("next"))
    try:
        principal = await asyncio.to_thread(check_login, platform, form, address)
    except LoginFailed as exc:
        status = 429 if exc.retry_after else 401
        return _page(request, "login.html", status=status, next=nxt, error=str(exc))
    response = RedirectResponse(nxt, status_code=303)
    await asyncio.to_thread(start_session, platform, principal, response,
                            request.url.scheme == "https")
    return _secure(response)


@router.post("/logout")
def logout(request: Request) -> Response:
    refused = cross_origin(request)
    if refused is not None:
        return _page(request, "error.html", status=403, principal=None,
                     title="Forbidden", detail=f"cross-origin logout refused: {refused}")
    response = RedirectResponse("/login", status_code=303)
    end_session(_platform(request), request, response)
    return _secure(response)


# -- pages --------------------------------------------------------------------------------
def _deployment_rows(platform: DashboardPlatform) -> list[dict[str, Any]]:
    latest = platform.observe.latest
    rows = []
    for d in platform.store.list_deployments():
        sample = latest.get(f"deployment/{d.name}", {})
        rows.append({"d": d, "s": sample})
    return rows


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    return _page(request, "deployments.html", principal=principal,
                 rows=_deployment_rows(platform), nav="deployments")


@router.get("/ui/deployments/{name}", response_class=HTMLResponse)
def deployment_page(request: Request, name: str, since: str = "1h") -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    try:
        check_name(name, "deployment name")
        d: Deployment = platform.store.get_deployment(name)
    except LeptonicError as exc:
        return _page(request, "error.html", status=exc.status, principal=principal,
                     title=exc.title, detail=exc.detail, nav="deployments")
    if since not in RANGES:
        since = "1h"
    return _page(request, "deployment.html", principal=principal, d=d, since=since,
                 s=platform.observe.latest.get(f"deployment/{name}", {}),
                 interval_s=platform.observe.settings.interval_s, nav="deployments")


@router.get("/ui/nodes", response_class=HTMLResponse)
def nodes_page(request: Request) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    return _page(request, "nodes.html", principal=principal, nav="nodes",
                 **_nodes_ctx(platform))


@router.get("/ui/alerts", response_class=HTMLResponse)
def alerts_page(request: Request) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    return _page(request, "alerts.html", principal=principal, nav="alerts",
                 **_alerts_ctx(platform))


@router.get("/ui/jobs", response_class=HTMLResponse)
def jobs_page(request: Request) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    return _page(request, "jobs.html", principal=principal, nav="jobs",
                 jobs=platform.store.list_jobs())


@router.get("/ui/jobs/{name}", response_class=HTMLResponse)
def job_page(request: Request, name: str) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    job = _job_or_none(platform, name)
    if job is None:
        return _page(request, "error.html", status=404, principal=principal,
                     title="Not found", detail=f"job {name!r} does not exist", nav="jobs")
    return _page(request, "job.html", principal=principal, job=job, nav="jobs")


USAGE_RANGES = ("24h", "7d", "30d", "90d")
USAGE_GROUPS = ("deployment", "job", "user", "node")


@router.get("/ui/usage", response_class=HTMLResponse)
def usage_page(request: Request, since: str = "30d", by: str = "deployment") -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    since = since if since in USAGE_RANGES else "30d"
    try:
        found = usage_report(platform.store, since, None, by, time.time())
        ustore = UsageStore(platform.store)
        rows = month_rows(ustore, time.time())
        budgets = [(b["spec"], spent_of(rows, b["spec"])) for b in ustore.list_budgets()]
    except LeptonicError as exc:
        return _page(request, "error.html", status=exc.status, principal=principal,
                     title=exc.title, detail=exc.detail, nav="usage")
    return _page(request, "usage.html", principal=principal, nav="usage", r=found,
                 since=since, by=by, usage_ranges=USAGE_RANGES, groups=USAGE_GROUPS,
                 budgets=budgets)


@router.get("/ui/data/usage")
def usage_data(request: Request, since: str = "30d") -> Response:
    """Allocated and idle cost per hour: the usage page's chart."""
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    try:
        found = usage_report(platform.store, since, None, "deployment", time.time())
    except LeptonicError as exc:
        return _secure(JSONResponse(exc.to_problem(request.url.path), status_code=exc.status,
                                    media_type="application/problem+json"))
    return _secure(JSONResponse({"t": [h["hour"] for h in found["hourly"]],
                                 "cost": [h["cost"] for h in found["hourly"]],
                                 "idle": [h["idle"] for h in found["hourly"]]}))


@router.get("/ui/models", response_class=HTMLResponse)
def models_page(request: Request) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    served: dict[str, list[Deployment]] = {}
    for d in platform.store.list_deployments():
        if d.spec.model is not None and not d.deleting:
            served.setdefault(d.spec.model.model, []).append(d)
    return _page(request, "models.html", principal=principal, nav="models",
                 models=platform.store.list_models(), served=served)


def _model_or_none(platform: DashboardPlatform, name: str) -> RegisteredModel | None:
    try:
        check_name(name, "model name")
        model: RegisteredModel = platform.store.get_model(name)
    except LeptonicError:
        return None
    return model


def _live(platform: DashboardPlatform, name: str) -> list[dict[str, Any]]:
    """The live figures of every deployment serving model ``name`` (as sampled last)."""
    monitor = platform.observe.monitor
    return [monitor.metrics(d, platform.observe.settings.model_window_s)
            for d in platform.store.list_deployments()
            if d.spec.model is not None and d.spec.model.model == name and not d.deleting]


@router.get("/ui/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str) -> Response:
    platform = _platform(request)
    principal = session_principal(platform, request)
    if principal is None:
        return _login_redirect(request)
    model = _model_or_none(platform, name)
    if model is None:
        return _page(request, "error.html", status=404, principal=principal,
                     title="Not found", detail=f"model {name!r} does not exist", nav="models")
    return _page(request, "model.html", principal=principal, nav="models", model=model,
                 key_metrics=(*KEY_METRICS, "rmse", "mae"),
                 history=platform.store.model_alias_history(name), live=_live(platform, name),
                 events=platform.store.list_events(f"model/{name}", 30))


@router.get("/ui/fragments/models/{name}/live", response_class=HTMLResponse)
def model_live_fragment(request: Request, name: str) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    if _model_or_none(platform, name) is None:
        return _page(request, "_gone.html", status=404, name=name)
    return _page(request, "_model_live.html", live=_live(platform, name),
                 model={"name": name})


# -- fragments (htmx polls these) -------------------------------------------------------
def _nodes_ctx(platform: DashboardPlatform) -> dict[str, Any]:
    latest = platform.observe.latest
    down_after = platform.observe.settings.node_down_after_s
    nodes = []
    for n in platform.store.list_nodes():
        up = time.time() - n.heartbeat_at <= down_after
        # a node whose heartbeat stopped is not ready, whatever was last written of it
        state = n.status if up else NodeState.NOT_READY.value
        nodes.append({"n": n, "s": latest.get(f"node/{n.name}", {}), "up": up,
                      "state": state, "css": _NODE_CSS.get(state, "phase-pending"),
                      "power": platform.observe.energy.snapshot.nodes.get(n.name)})
    return {"nodes": nodes}


_NODE_CSS = {NodeState.READY.value: "phase-ready", NodeState.NOT_READY.value: "phase-crashloop",
             NodeState.CORDONED.value: "phase-pending", NodeState.DRAINING.value: "phase-pending"}


def _alerts_ctx(platform: DashboardPlatform) -> dict[str, Any]:
    ostore = platform.observe.ostore
    rules = ostore.list_rules()
    states = ostore.states()
    return {"rules": rules, "states": states,
            "notifications": ostore.notifications(None, 50)}


@router.get("/ui/fragments/deployments", response_class=HTMLResponse)
def deployments_fragment(request: Request) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    return _page(request, "_deployment_rows.html", rows=_deployment_rows(platform))


@router.get("/ui/fragments/nodes", response_class=HTMLResponse)
def nodes_fragment(request: Request) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    return _page(request, "_nodes.html", **_nodes_ctx(platform))


@router.get("/ui/fragments/alerts", response_class=HTMLResponse)
def alerts_fragment(request: Request) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    return _page(request, "_alerts.html", **_alerts_ctx(platform))


@router.get("/ui/fragments/jobs", response_class=HTMLResponse)
def jobs_fragment(request: Request) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    return _page(request, "_job_rows.html", jobs=platform.store.list_jobs())


def _job_or_none(platform: DashboardPlatform, name: str) -> Job | None:
    try:
        check_name(name, "job name")
        job: Job = platform.store.get_job(name)
    except LeptonicError:
        return None
    return job


@router.get("/ui/fragments/jobs/{name}/{part}", response_class=HTMLResponse)
def job_fragment(request: Request, name: str, part: str) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    job = _job_or_none(platform, name)
    if job is None:
        return _page(request, "_gone.html", status=404, name=name)
    if part == "summary":
        return _page(request, "_job_summary.html", job=job)
    if part == "attempts":
        return _page(request, "_attempts.html", attempts=platform.store.list_attempts(name))
    if part == "events":
        return _page(request, "_events.html",
                     events=platform.store.list_events(f"job/{name}", 50))
    if part == "logs":
        lines = [(f"{a.index}/{a.number}", line) for a in platform.store.list_attempts(name)
                 if a.log_path for line in search_file(a.log_path, LOG_LINES, None)]
        return _page(request, "_logs.html", lines=lines[-LOG_LINES:], error=None)
    return _page(request, "_gone.html", status=404, name=f"{name}/{part}")


def _deployment_or_none(platform: DashboardPlatform, name: str) -> Deployment | None:
    try:
        check_name(name, "deployment name")
        d: Deployment = platform.store.get_deployment(name)
    except LeptonicError:
        return None
    return d


@router.get("/ui/fragments/deployments/{name}/{part}", response_class=HTMLResponse)
def deployment_fragment(request: Request, name: str, part: str,
                        grep: str | None = None) -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    d = _deployment_or_none(platform, name)
    if d is None:
        return _page(request, "_gone.html", status=404, name=name)
    if part == "summary":
        sample = platform.observe.latest.get(f"deployment/{name}", {})
        return _page(request, "_summary.html", d=d, s=sample)
    if part == "replicas":
        return _page(request, "_replicas.html", d=d,
                     replicas=platform.store.list_replicas(name))
    if part == "events":
        return _page(request, "_events.html",
                     events=platform.store.list_events(f"deployment/{name}", 50))
    if part == "logs":
        try:
            pattern = compile_grep(grep)
        except LeptonicError as exc:
            return _page(request, "_logs.html", lines=[], error=exc.detail)
        lines = [(r.id, line) for r in platform.store.list_replicas(name) if r.log_path
                 for line in search_file(r.log_path, LOG_LINES, pattern)]
        return _page(request, "_logs.html", lines=lines[-LOG_LINES:], error=None)
    return _page(request, "_gone.html", status=404, name=f"{name}/{part}")


@router.get("/ui/data/deployments/{name}/series")
def deployment_series(request: Request, name: str, since: str = "1h") -> Response:
    platform = _platform(request)
    if session_principal(platform, request) is None:
        return _unauthorized()
    try:
        check_name(name, "deployment name")
        since_s = parse_duration(since, "since")
        result = platform.observe.query(f"deployment/{name}", None, since_s)
    except LeptonicError as exc:
        return _secure(JSONResponse(exc.to_problem(request.url.path), status_code=exc.status,
                                    media_type="application/problem+json"))
    return _secure(JSONResponse(result.model_dump()))

