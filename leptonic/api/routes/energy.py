"""``GET /energy``: kWh per node and per deployment over a window, and each node's watts
and where they come from (observe/energy.py does the accounting)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.alerts import parse_duration
from leptonic.errors import InvalidInput
from leptonic.observe.energy import report

router = APIRouter(tags=["energy"])


@router.get("/energy")
def energy(since: str = Query("1h", description="how far back: 90s, 15m, 1h, 7d",
                              max_length=20),
           platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """kWh per node and deployment over the last ``since``; watts and source per node."""
    since_s = parse_duration(since, "since")
    settings = platform.observe.settings
    longest = max([settings.raw_retention_s, *(t.retention_s for t in settings.tiers)])
    if not 0 < since_s <= longest:
        raise InvalidInput(f"since must be above 0 and at most the longest retention "
                           f"({longest / 86400:g} days)")
    return report(platform.observe, since_s)
