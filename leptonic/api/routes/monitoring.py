"""Live model monitoring: feedback (the truth of earlier answers) and the figures.

``POST /deployments/{name}/feedback`` takes ``{"items": [{"request_id", "truth"}]}`` (the
``x-leptonic-request-id`` of each answer) and says how many matched a sampled prediction,
how many were unknown, expired or already labelled: such items are counted, never a
failure of the batch. ``GET /deployments/{name}/model-metrics`` gives live accuracy and F1
(or MAE, RMSE, R2), the counts, and drift per feature against the served version's
reference, over a window (default 1h).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.alerts import parse_duration
from leptonic.errors import InvalidInput

router = APIRouter(tags=["monitoring"])
MAX_ITEMS = 100_000
Truth = bool | int | float | str


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=200)
    truth: Truth


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[FeedbackItem] = Field(max_length=MAX_ITEMS)


def _model_deployment(platform: ApiPlatform, name: str) -> Any:
    d = platform.store.get_deployment(name)
    if d.spec.model is None:
        raise InvalidInput(f"deployment {name!r} serves photon {d.spec.photon}, not a "
                           "registered model: monitoring needs one (deployment create "
                           "--model NAME@champion)")
    return d


@router.post("/deployments/{name}/feedback")
async def feedback(name: str, body: Feedback,
                   platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Join each truth with the sampled prediction of its request."""
    d = await asyncio.to_thread(_model_deployment, platform, name)
    monitor = platform.observe.monitor
    pairs = [(i.request_id, i.truth) for i in body.items]
    if monitor.missing(name, (rid for rid, _ in pairs)):
        # answered since the last read of the replicas' samples: read them now
        replicas = await asyncio.to_thread(platform.store.list_replicas, name)
        await monitor.pull([d], replicas)
    result = await asyncio.to_thread(monitor.feedback, name, pairs)
    return {"deployment": name, "items": len(pairs), **result.to_dict()}


@router.get("/deployments/{name}/model-metrics")
async def model_metrics(name: str, window: str = Query(
        "1h", description="how far back, by prediction time: 30m, 1h, 1d..."),
        platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Live accuracy, F1, counts and drift of the model this deployment serves."""
    window_s = parse_duration(window, "window")
    if not 0 < window_s <= 30 * 86400:
        raise InvalidInput("the window must be between 1s and 30d")
    d = await asyncio.to_thread(_model_deployment, platform, name)
    replicas = await asyncio.to_thread(platform.store.list_replicas, name)
    monitor = platform.observe.monitor
    await monitor.pull([d], replicas)
    figures: dict[str, Any] = await asyncio.to_thread(monitor.metrics, d, window_s)
    return figures
