"""Usage and cost (``GET /usage``, its CloudEvents), prices and monthly budgets.

Usage is kept per UTC hour (observe/usage.py meters it), so a window starts at the start
of the hour ``since`` falls in.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from leptonic.api.deps import ApiPlatform, get_platform, principal_of
from leptonic.core.usage import (
    DEFAULT_PRICES,
    HOUR_S,
    BudgetSpec,
    check_price,
    check_resource,
    month_of,
    unit_of,
)
from leptonic.observe.notify import check_targets, redact
from leptonic.observe.usage import (
    SINCE_FORMS,
    cloudevents,
    month_rows,
    report,
    spent_of,
    window,
)
from leptonic.store.usage import UsageStore

router = APIRouter(tags=["usage"])

@router.get("/usage")
def usage(since: str = Query("30d", max_length=40, description=SINCE_FORMS),
          until: str | None = Query(None, max_length=40, description="default: now"),
          by: str = Query("deployment", max_length=80,
                          description="deployment, job, user, node or label:KEY"),
          platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Replica- and resource-seconds, requests and cost per item, totals and idle cost."""
    return report(platform.store, since, until, by, time.time())


@router.get("/usage/runs")
def usage_runs(owner: str | None = Query(None, max_length=64,
                                         description="a deployment's or job's name"),
               platform: ApiPlatform = Depends(get_platform)) -> list[dict[str, Any]]:
    """The usage record of every run (a replica's process, a job attempt): from when to
    when it was metered, whether it has ended, what it was billed for."""
    rows = UsageStore(platform.store).runs(owner)
    return [{**{k: r[k] for k in ("run", "kind", "owner_kind", "owner", "user", "labels",
                                  "node", "shape", "started_at", "until", "closed")},
             "seconds": float(r["until"]) - float(r["started_at"])} for r in rows]


@router.get("/usage/events")
def usage_events(request: Request,
                 since: str = Query("1d", max_length=40, description=SINCE_FORMS),
                 until: str | None = Query(None, max_length=40),
                 complete: bool = Query(True, description="only hours that have ended (an "
                                        "hour in progress still grows)"),
                 platform: ApiPlatform = Depends(get_platform)) -> Response:
    """The usage buckets as a CloudEvents batch (``application/cloudevents-batch+json``):
    one event per run and hour, with a stable id."""
    start, end = window(since, until, time.time())
    if complete:
        end = min(end, (time.time() // HOUR_S) * HOUR_S)
    rows = UsageStore(platform.store).buckets(start, end) if end > start else []
    source = platform.settings.url or str(request.base_url).rstrip("/")
    return Response(json.dumps(cloudevents(rows, f"{source}/api/v1/usage")),
                    media_type="application/cloudevents-batch+json")


# -- prices ----------------------------------------------------------------------------------

class PriceSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price: float = Field(description="USD per unit: core-second, GiB-second, GPU-second, kWh")


def _prices(platform: ApiPlatform) -> list[dict[str, Any]]:
    ustore = UsageStore(platform.store)
    rows = ustore.price_rows()
    current = ustore.prices()
    return [{"resource": k, "price": v, "unit": unit_of(k),
             "default": DEFAULT_PRICES.get(k), "set": k in rows,
             "updated_at": rows.get(k, {}).get("updated_at"),
             "updated_by": rows.get(k, {}).get("updated_by")}
            for k, v in sorted(current.items())]


@router.get("/prices")
def list_prices(platform: ApiPlatform = Depends(get_platform)) -> list[dict[str, Any]]:
    """Every price in force: the defaults (docs/USAGE.md) and what was set."""
    return _prices(platform)


@router.put("/prices/{resource}")
def set_price(resource: str, body: PriceSet, request: Request,
              platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Set a price; it applies to what is metered from now on."""
    name = check_resource(resource)
    price = check_price(name, body.price)
    UsageStore(platform.store).set_price(name, price, principal_of(request).actor,
                                         time.time())
    platform.store.add_event("prices", "PriceSet", f"{name}: {price:g} per {unit_of(name)}")
    return next(p for p in _prices(platform) if p["resource"] == name)


@router.delete("/prices/{resource}", status_code=204)
def reset_price(resource: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    """Back to the default (a gpu:MODEL without a default goes away)."""
    name = check_resource(resource)
    if UsageStore(platform.store).reset_price(name):
        platform.store.add_event("prices", "PriceReset", f"{name}: back to the default")
    return Response(status_code=204)


# -- budgets ---------------------------------------------------------------------------------

def _budget_view(platform: ApiPlatform, b: dict[str, Any], now: float) -> dict[str, Any]:
    spec: BudgetSpec = b["spec"]
    ustore = UsageStore(platform.store)
    spent = spent_of(month_rows(ustore, now), spec)
    month = month_of(now)
    return {**spec.model_dump(mode="json"), "notify": [redact(t) for t in spec.notify],
            "month": month, "spent": spent, "percent": 100.0 * spent / spec.monthly,
            "notified": [n["threshold"] for n in ustore.notices(spec.name)
                         if n["month"] == month],
            "created_at": b["created_at"], "created_by": b["created_by"]}


@router.post("/budgets", status_code=201)
def create_budget(body: BudgetSpec, request: Request,
                  platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """A monthly budget of a scope: notified once per threshold and month."""
    spec = body.model_copy(update={"notify": check_targets(body.notify)})
    now = time.time()
    b = UsageStore(platform.store).create_budget(spec, principal_of(request).actor, now)
    platform.store.add_event(f"budget/{spec.name}", "Created",
                             f"{spec.scope}: {spec.monthly:g} a month, alerts at "
                             + ", ".join(f"{a:g}%" for a in spec.alerts)
                             + f", action {spec.action}")
    return _budget_view(platform, b, now)


@router.get("/budgets")
def list_budgets(platform: ApiPlatform = Depends(get_platform)) -> list[dict[str, Any]]:
    now = time.time()
    return [_budget_view(platform, b, now) for b in UsageStore(platform.store).list_budgets()]


@router.get("/budgets/{name}")
def get_budget(name: str, platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    return _budget_view(platform, UsageStore(platform.store).get_budget(name), time.time())


@router.delete("/budgets/{name}", status_code=204)
def delete_budget(name: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    UsageStore(platform.store).delete_budget(name)
    platform.store.add_event(f"budget/{name}", "Deleted", f"budget {name} deleted")
    return Response(status_code=204)
