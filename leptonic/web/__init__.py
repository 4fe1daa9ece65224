"""The web dashboard served by the control plane at ``/``: login, deployments with live
status and charts, nodes, alerts. Server-rendered Jinja2 templates, htmx for the live
parts and uPlot for the charts; both come from npm (``make install``), pinned in
``package-lock.json``, and are copied into ``static/vendor/`` by ``npm run build``."""

from __future__ import annotations

from typing import Any

from starlette.staticfiles import StaticFiles

from leptonic.web.views import STATIC, router


def install(app: Any) -> None:
    """Add the dashboard's routes and static files to the control-plane app."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(STATIC), check_dir=False), name="ui")
