"""Replicas, nodes and events across the platform."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from leptonic.api.deps import get_platform
from leptonic.core.models import Event, Node, Replica

router = APIRouter(tags=["cluster"])


@router.get("/replicas", response_model=list[Replica])
def list_replicas(deployment: str | None = None,
                  platform: Any = Depends(get_platform)) -> list[Replica]:
    if deployment is not None:
        platform.store.get_deployment(deployment)
    return list(platform.store.list_replicas(deployment))


@router.get("/nodes", response_model=list[Node])
def list_nodes(platform: Any = Depends(get_platform)) -> list[Node]:
    return list(platform.store.list_nodes())


@router.get("/events", response_model=list[Event])
def list_events(object: str | None = Query(None, max_length=160),
                limit: int = Query(100, ge=1, le=1000),
                platform: Any = Depends(get_platform)) -> list[Event]:
    return list(platform.store.list_events(object, limit))
