"""Alert rules: create, list (with their current state per target), delete; and the
notifications each sent. Notification targets are shown redacted: a webhook URL often
carries its token."""

from __future__ import annotations

import secrets
import time
from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.alerts import parse_duration, parse_expr
from leptonic.core.models import check_name
from leptonic.core.observe import AlertRule, AlertView, Notification
from leptonic.errors import InvalidInput
from leptonic.observe.notify import check_targets, redact

router = APIRouter(tags=["alerts"])

MAX_FOR_S = 7 * 86400.0


class AlertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(None, description="a slug; generated when left out")
    deployment: str | None = Field(None, description="only this deployment (default: "
                                                     "every deployment, or every node "
                                                     "for node metrics)")
    expr: str = Field(max_length=500, description="e.g. 'p99_latency_ms > 500'")
    for_: str | float = Field("0s", alias="for", description="how long the condition must "
                                                             "hold before it fires: 2m")
    severity: Literal["info", "warning", "critical"] = "warning"
    notify: list[str] = Field(default_factory=list,
                              description="webhook:URL, slack:URL, email:ADDRESS")
    description: str = Field("", max_length=1000)


def view(platform: ApiPlatform, rule: AlertRule) -> AlertView:
    expr = parse_expr(rule.expr)
    return AlertView(name=rule.name, deployment=rule.deployment, expr=rule.expr,
                     for_s=rule.for_s, severity=rule.severity,
                     notify=[redact(t) for t in rule.notify], description=rule.description,
                     created_at=rule.created_at, scope=expr.scope,
                     instances=platform.observe.ostore.states(rule.name))


@router.post("/alerts", status_code=201, response_model=AlertView)
def create_alert(body: AlertCreate, platform: ApiPlatform = Depends(get_platform)) -> AlertView:
    expr = parse_expr(body.expr)
    for_s = parse_duration(body.for_, "for")
    if for_s > MAX_FOR_S:
        raise InvalidInput("for is at most 7d")
    if body.deployment is not None:
        check_name(body.deployment, "deployment name")
        if expr.scope == "node":
            raise InvalidInput(f"{body.expr!r} uses node metrics; a node rule applies to "
                               "every node, so leave out the deployment")
        platform.store.get_deployment(body.deployment)
    name = body.name if body.name is not None else f"alert-{secrets.token_hex(3)}"
    check_name(name, "alert rule name")
    targets = check_targets(body.notify)
    rule = platform.observe.ostore.create_rule(AlertRule(
        name=name, deployment=body.deployment, expr=expr.text, for_s=for_s,
        severity=body.severity, notify=targets, description=body.description,
        created_at=time.time()))
    where = f"deployment/{body.deployment}" if body.deployment else f"alert/{name}"
    platform.store.add_event(where, "AlertRuleCreated",
                             f"alert rule {name}: {expr.text} for {for_s:g}s, notify "
                             + (", ".join(redact(t) for t in targets) or "nobody"))
    return view(platform, rule)


@router.get("/alerts", response_model=list[AlertView])
def list_alerts(platform: ApiPlatform = Depends(get_platform)) -> list[AlertView]:
    return [view(platform, r) for r in platform.observe.ostore.list_rules()]


@router.get("/alerts/{name}", response_model=AlertView)
def get_alert(name: str, platform: ApiPlatform = Depends(get_platform)) -> AlertView:
    return view(platform, platform.observe.ostore.get_rule(name))


@router.delete("/alerts/{name}", status_code=204)
def delete_alert(name: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    rule = platform.observe.ostore.get_rule(name)
    platform.observe.ostore.delete_rule(name)
    where = f"deployment/{rule.deployment}" if rule.deployment else f"alert/{name}"
    platform.store.add_event(where, "AlertRuleDeleted", f"alert rule {name} deleted")
    return Response(status_code=204)


@router.get("/alerts/{name}/notifications", response_model=list[Notification])
def alert_notifications(name: str, limit: int = Query(100, ge=1, le=1000),
                        platform: ApiPlatform = Depends(get_platform)) -> list[Notification]:
    ostore = platform.observe.ostore
    ostore.get_rule(name)
    return [Notification(id=r["id"], rule=r["rule"], target=r["target"],
                         channel=redact(r["destination"]),
                         event=str(r["payload"].get("status", "")), status=r["status"],
                         attempts=r["attempts"], last_error=r["last_error"],
                         created_at=r["created_at"], sent_at=r["sent_at"])
            for r in ostore.notifications(name, limit)]
