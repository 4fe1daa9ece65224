"""The audit log: every state-changing API call, who made it, from where, and its result."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from leptonic.api.deps import ApiPlatform, get_platform

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    time: float
    actor: str
    action: str
    object: str
    status: int
    source: str


@router.get("/audit", response_model=list[AuditEntry])
def list_audit(limit: int = Query(100, ge=1, le=1000), actor: str | None = None,
               platform: ApiPlatform = Depends(get_platform)) -> list[AuditEntry]:
    return [AuditEntry.model_validate(a) for a in platform.store.list_audit(limit, actor)]
