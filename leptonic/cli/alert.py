"""``leptonic alert ...``: alert rules on deployment and node metrics, and what they sent."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, clock, fields, show, table
from leptonic.core.alerts import DEPLOYMENT_METRICS, NODE_METRICS
from leptonic.core.observe import AlertView, Notification

app = typer.Typer(help="Alert rules: pending -> firing -> resolved, with notifications.",
                  no_args_is_help=True)

_METRICS = ", ".join([*DEPLOYMENT_METRICS, *NODE_METRICS])


def _state(a: AlertView) -> str:
    firing = [i.target for i in a.instances if i.state == "firing"]
    pending = [i.target for i in a.instances if i.state == "pending"]
    if firing:
        return "firing: " + ", ".join(firing)
    if pending:
        return "pending: " + ", ".join(pending)
    return "ok"


def alerts_table(alerts: list[AlertView]) -> object:
    return table(["NAME", "DEPLOYMENT", "EXPR", "FOR", "SEVERITY", "STATE", "NOTIFY"],
                 [(a.name, a.deployment or f"(every {a.scope})", a.expr, f"{a.for_s:g}s",
                   a.severity, _state(a), ", ".join(a.notify) or "-") for a in alerts])


def alert_detail(a: AlertView) -> object:
    head = fields([("name", a.name), ("deployment", a.deployment or f"(every {a.scope})"),
                   ("expr", a.expr), ("for", f"{a.for_s:g}s"), ("severity", a.severity),
                   ("notify", ", ".join(a.notify) or "-"),
                   ("description", a.description or "-"), ("created", clock(a.created_at))])
    inst = table(["TARGET", "STATE", "SINCE", "VALUE", "FIRED", "RESOLVED"],
                 [(i.target, i.state, age(i.since),
                   "" if i.value is None else f"{i.value:.4g}", clock(i.fired_at),
                   clock(i.resolved_at)) for i in a.instances])
    return Group(head, "", inst)


@app.command("create")
def create(
    ctx: typer.Context,
    expr: Annotated[str, typer.Option(
        "--expr", "-x", help=f"Condition, e.g. 'p99_latency_ms > 500', 'error_rate > 5%', "
                             f"'increase(restarts[10m]) > 3'. Metrics: {_METRICS}.")],
    deployment: Annotated[str | None, typer.Option(
        "--deployment", "-d", help="Only this deployment (default: every deployment, or "
                                   "every node for node metrics).", show_default=False)] = None,
    for_: Annotated[str, typer.Option(
        "--for", help="How long the condition must hold before it fires (30s, 2m).")] = "0s",
    notify: Annotated[list[str] | None, typer.Option(
        "--notify", "-n", help="webhook:URL, slack:URL or email:ADDRESS (repeatable).",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Rule name (a slug; generated when left out).",
        show_default=False)] = None,
    severity: Annotated[str, typer.Option(help="info, warning or critical.")] = "warning",
    description: Annotated[str, typer.Option(help="Said in every notification.")] = "",
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Create an alert rule."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        rule = client.create_alert(expr, deployment=deployment, for_=for_,
                                   notify=notify or [], name=name, severity=severity,
                                   description=description)
    show(opts, rule, lambda a: alerts_table([a]))


@app.command("list")
def list_(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """Every alert rule and where it fires now."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.list_alerts()
    show(opts, found, alerts_table)


@app.command("get")
def get(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
        token: TokenOpt = None) -> None:
    """One alert rule with its state for each target."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        rule = client.get_alert(name)
    show(opts, rule, alert_detail)


@app.command("delete")
def delete(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Delete an alert rule (undelivered notifications are dropped)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        client.delete_alert(name)
    show(opts, {"deleted": name}, lambda _: f"deleted alert rule {name}")


@app.command("notifications")
def notifications(
    ctx: typer.Context, name: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most recent to show.")] = 50,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The notifications an alert rule sent (or is still trying to send)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.alert_notifications(name, limit)

    def render(ns: list[Notification]) -> object:
        return table(["CREATED", "TARGET", "EVENT", "CHANNEL", "STATUS", "TRIES", "ERROR"],
                     [(clock(n.created_at), n.target, n.event, n.channel, n.status,
                       n.attempts, n.last_error or "") for n in ns])

    show(opts, found, render)
