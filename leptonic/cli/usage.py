"""``leptonic usage``, ``leptonic price ...`` and ``leptonic budget ...``: what deployments,
jobs and users used and cost, the prices that cost is figured at, and monthly budgets."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Group

from leptonic.cli._context import Output, OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import ErrorHandlingGroup, clock, fail, fields, show, table
from leptonic.core.usage import money

SinceOpt = Annotated[str, typer.Option(
    "--since", help="How far back: a duration (90m, 12h, 30d) or a UTC date (2026-12-01).")]
UntilOpt = Annotated[str | None, typer.Option(
    "--until", help="Up to (default now): a duration back or a UTC date.", show_default=False)]


class UsageOutput(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


usage_app = typer.Typer(cls=ErrorHandlingGroup, invoke_without_command=True,
                        help="Usage and cost per deployment, job, user or label.")
prices = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True,
                     help="Prices per core-second, GiB-second, GPU-second and kWh.")
budgets = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True,
                      help="Monthly budgets: notified once per threshold and month.")

COLUMNS = ("replica_seconds", "cpu_seconds", "memory_gib_seconds", "gpu_seconds",
           "energy_kwh", "requests", "errors", "cost")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def usage_tables(r: dict[str, Any]) -> object:
    group = r["by"].partition(":")[0]
    name = r["by"].upper() if group != "label" else r["by"].split(":", 1)[1].upper()
    rows = [(i["key"], _hours(i["replica_seconds"]), f"{i['cpu_seconds'] / 3600:.2f}",
             f"{i['memory_gib_seconds'] / 3600:.2f}", f"{i['gpu_seconds'] / 3600:.2f}",
             f"{i['requests']:.0f}", f"{i['errors']:.0f}", money(i["cost"]))
            for i in r["items"]]
    t = r["total"]
    rows.append(("TOTAL", _hours(t["replica_seconds"]), f"{t['cpu_seconds'] / 3600:.2f}",
                 f"{t['memory_gib_seconds'] / 3600:.2f}", f"{t['gpu_seconds'] / 3600:.2f}",
                 f"{t['requests']:.0f}", f"{t['errors']:.0f}", money(t["cost"])))
    main = table([name, "RUN TIME", "CORE-H", "GIB-H", "GPU-H", "REQUESTS", "ERRORS", "COST"],
                 rows, title=f"Usage by {r['by']} (USD)")
    return Group(main, f"idle capacity (held by nobody): {money(r['idle']['cost'])}")


def usage_csv(r: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([r["by"], *COLUMNS])
    for i in r["items"]:
        w.writerow([i["key"], *(i[c] for c in COLUMNS)])
    w.writerow(["TOTAL", *(r["total"][c] for c in COLUMNS)])
    w.writerow(["IDLE", "", "", "", "", "", "", "", r["idle"]["cost"]])
    return out.getvalue()


@usage_app.callback()
def usage(
    ctx: typer.Context,
    since: SinceOpt = "30d",
    until: UntilOpt = None,
    by: Annotated[str, typer.Option(
        "--by", help="deployment, job, user, node or label:KEY.")] = "deployment",
    output: Annotated[UsageOutput | None, typer.Option(
        "--output", "-o", help="table, json or csv.", case_sensitive=False,
        show_default=False)] = None,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Run time, resource-hours, requests and cost per --by over --since; totals and the
    idle cost of capacity nobody held."""
    if ctx.invoked_subcommand is not None:
        return
    opts = options(ctx, Output.json if output is UsageOutput.json else None, url, token)
    with connect(opts) as client:
        found = client.usage(since, by=by, until=until)
    if output is UsageOutput.csv:
        sys.stdout.write(usage_csv(found))
        return
    show(opts, found, usage_tables)


def runs_table(rows: list[dict[str, Any]]) -> object:
    return table(["RUN", "OWNER", "NODE", "STARTED", "SECONDS", "CPU", "MEMORY MB", "GPU",
                  "ENDED"],
                 [(r["run"], f"{r['owner_kind']}/{r['owner']}", r["node"],
                   clock(r["started_at"]), f"{r['seconds']:.1f}", f"{r['shape']['cpu']:g}",
                   f"{r['shape']['memory_mb']:.0f}", f"{r['shape']['gpu']:g}",
                   "yes" if r["closed"] else "no") for r in rows])


@usage_app.command("runs")
def runs(ctx: typer.Context,
         owner: Annotated[str | None, typer.Argument(
             help="A deployment or job (default: every one).", show_default=False)] = None,
         output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """The usage record of each run: a replica's process or a job attempt, with the
    seconds metered and what it was billed for (max of request and use)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        show(opts, client.usage_runs(owner), runs_table)


@usage_app.command("export")
def export(
    ctx: typer.Context,
    since: SinceOpt = "1d",
    until: UntilOpt = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Write the events here as JSON Lines (one CloudEvent a line).",
        show_default=False)] = None,
    webhook: Annotated[str | None, typer.Option(
        "--webhook", help="POST them as one application/cloudevents-batch+json body "
                          "(OpenMeter's ingest takes it).", show_default=False)] = None,
    current: Annotated[bool, typer.Option(
        "--current", help="Include the hour in progress (its events grow until it ends).")
    ] = False,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Usage as CloudEvents 1.0, one per run and hour with a stable id (a consumer that
    sees one twice counts it once)."""
    if (file is None) == (webhook is None):
        fail("give --file PATH or --webhook URL, one of them")
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        events = client.usage_events(since, until=until, complete=not current)
    if file is not None:
        try:
            with file.open("w") as f:
                for e in events:
                    f.write(json.dumps(e) + "\n")
        except OSError as exc:
            fail(f"cannot write {file}: {exc.strerror or exc}")
        where = str(file)
    else:
        assert webhook is not None
        if not re.match(r"^https?://", webhook):
            fail(f"--webhook {webhook!r}: give an http:// or https:// URL")
        try:
            resp = httpx.post(webhook, content=json.dumps(events), timeout=30.0,
                              headers={"content-type": "application/cloudevents-batch+json"})
        except httpx.HTTPError as exc:
            fail(f"cannot POST to {webhook}: {exc}")
        if resp.status_code >= 300:
            fail(f"{webhook} answered {resp.status_code}: {resp.text[:200]}")
        where = webhook
    show(opts, {"events": len(events), "to": where},
         lambda r: f"exported {r['events']} usage event(s) to {r['to']}")


# -- prices ----------------------------------------------------------------------------------

def prices_table(rows: list[dict[str, Any]]) -> object:
    return table(["RESOURCE", "PRICE (USD)", "PER", "DEFAULT", "SET BY"],
                 [(p["resource"], f"{p['price']:.10g}", p["unit"],
                   "-" if p["default"] is None else f"{p['default']:.10g}",
                   p["updated_by"] or "-") for p in rows])


@prices.command("list")
def price_list(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
               token: TokenOpt = None) -> None:
    """Every price in force: the defaults and what was set."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        show(opts, client.prices(), prices_table)


@prices.command("set")
def price_set(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="cpu, memory, gpu, gpu:MODEL or energy.")],
    price: Annotated[float, typer.Argument(
        help="USD per core-second, GiB-second, GPU-second or kWh.")],
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Set a price; it applies to what is metered from now on."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        p = client.set_price(resource, price)
    show(opts, p, lambda p: f"{p['resource']}: {p['price']:.10g} USD per {p['unit']}")


@prices.command("reset")
def price_reset(ctx: typer.Context, resource: str, output: OutputOpt = None,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Back to the default price."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        client.reset_price(resource)
    show(opts, {"resource": resource, "reset": True},
         lambda r: f"{r['resource']}: back to the default")


# -- budgets ---------------------------------------------------------------------------------

def _percent(values: str) -> list[float]:
    try:
        return [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{values!r} is not a list of percentages, e.g. 80,100",
                                 param_hint="'--alert'") from None


def budget_name(scope: str) -> str:
    """A budget's default name, from its scope: ``deployment:web`` -> ``deployment-web``."""
    slug = re.sub(r"[^a-z0-9]+", "-", scope.lower()).strip("-")
    return (slug or "budget")[:64].rstrip("-")


def budgets_table(rows: list[dict[str, Any]]) -> object:
    return table(["NAME", "SCOPE", "MONTHLY", "SPENT", "%", "ALERTS", "NOTIFIED", "ACTION"],
                 [(b["name"], b["scope"], money(b["monthly"]), money(b["spent"]),
                   f"{b['percent']:.1f}", ",".join(f"{a:g}" for a in b["alerts"]),
                   ",".join(f"{a:g}" for a in b["notified"]) or "-", b["action"])
                  for b in rows], title=f"Budgets ({rows[0]['month'] if rows else 'this month'})")


@budgets.command("create")
def budget_create(
    ctx: typer.Context,
    scope: Annotated[str, typer.Option(
        "--scope", help="all, deployment:NAME, job:NAME, user:NAME or label:KEY=VALUE.")],
    monthly: Annotated[float, typer.Option("--monthly", help="USD a month.")],
    name: Annotated[str | None, typer.Option(
        "--name", help="Default: from the scope (deployment:web -> deployment-web).",
        show_default=False)] = None,
    alert: Annotated[str, typer.Option(
        "--alert", help="Percentages that notify, e.g. 50,80,100.")] = "80,100",
    action: Annotated[str, typer.Option(
        "--action", help="notify, or scale-to-zero (at 100% the deployments in scope go to "
                         "zero replicas).")] = "notify",
    notify: Annotated[list[str] | None, typer.Option(
        "--notify", help="webhook:URL, slack:URL or email:ADDR (repeatable).",
        show_default=False)] = None,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """A monthly budget of a scope."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        b = client.create_budget(name or budget_name(scope), scope, monthly,
                                 alerts=_percent(alert), action=action, notify=notify or ())
    show(opts, b, lambda b: budgets_table([b]))


@budgets.command("list")
def budget_list(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
                token: TokenOpt = None) -> None:
    """Every budget with this month's spend."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        show(opts, client.budgets(), budgets_table)


@budgets.command("get")
def budget_get(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
               token: TokenOpt = None) -> None:
    """One budget: this month's spend and the thresholds notified."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        b = client.budget(name)
    show(opts, b, lambda b: fields([(k, b[k]) for k in (
        "name", "scope", "monthly", "spent", "percent", "alerts", "notified", "action",
        "notify", "month", "created_by")]))


@budgets.command("delete")
def budget_delete(ctx: typer.Context, name: str, output: OutputOpt = None,
                  url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Remove a budget."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        client.delete_budget(name)
    show(opts, {"name": name, "deleted": True}, lambda r: f"deleted budget {r['name']}")

