from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from leptonic import __version__
from leptonic.api.deps import ApiPlatform, get_platform

router = APIRouter(tags=["status"])


@router.get("/status")
def status(platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Who is serving: version, database, runtime, and whether this process leads."""
    return {"version": __version__, "leader": platform.is_leader,
            "holder": platform.leadership.holder, "database": platform.store.dialect,
            "runtime": platform.backend.name, "data_dir": str(platform.layout.root)}
