"""Built-in time series: ``/metrics/query`` for charts and the CLI, ``/metrics/latest``
for the newest sample of every deployment and node."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.alerts import parse_duration
from leptonic.core.observe import SeriesResult
from leptonic.errors import InvalidInput

router = APIRouter(tags=["metrics"])


@router.get("/metrics/query", response_model=SeriesResult)
def query_metrics(
    deployment: str | None = Query(None, description="a deployment's series"),
    node: str | None = Query(None, description="a node's series"),
    metrics: str | None = Query(None, description="comma-separated metric names "
                                                  "(default: every metric of the series)"),
    since: str = Query("1h", description="how far back: 90s, 15m, 1h, 7d", max_length=20),
    until: float | None = Query(None, description="end (Unix seconds; default now)"),
    resolution: int | None = Query(None, ge=0, description="seconds per point: 0 for the "
                                   "raw samples, or a downsampled tier (default: chosen "
                                   "by the span)"),
    platform: ApiPlatform = Depends(get_platform),
) -> SeriesResult:
    """Points of one series, column-wise: ``t`` and one list per metric."""
    if (deployment is None) == (node is None):
        raise InvalidInput("give exactly one of deployment=NAME or node=NAME")
    since_s = parse_duration(since, "since")
    settings = platform.observe.settings
    longest = max([settings.raw_retention_s, *(t.retention_s for t in settings.tiers)])
    if not 0 < since_s <= longest:
        raise InvalidInput(f"since must be above 0 and at most the longest retention "
                           f"({longest / 86400:g} days)")
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    series = f"deployment/{deployment}" if deployment is not None else f"node/{node}"
    result: SeriesResult = platform.observe.query(series, names, since_s, until, resolution)
    return result


@router.get("/metrics/latest")
def latest_metrics(platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """The newest sample of every deployment and node (what the dashboard list shows)."""
    obs = platform.observe
    return {"at": obs.latest_at, "interval_s": obs.settings.interval_s,
            "series": obs.latest}
