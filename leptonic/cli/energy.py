"""``leptonic energy``: kWh per deployment and per node over a window, and what each node
draws now and where that figure comes from (RAPL, an override or the power model)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import show, table

SinceOpt = Annotated[str, typer.Option("--since", help="how far back: 90s, 15m, 1h, 7d")]


def _kwh(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _w(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def energy_tables(r: dict[str, Any]) -> object:
    since = r.get("since_s", 0)
    deployments = table(["DEPLOYMENT", "WATTS", f"KWH ({since:g}s)", "KWH TOTAL"],
                        [(d["deployment"], _w(d.get("watts")), _kwh(d.get("kwh")),
                          _kwh(d.get("total_kwh"))) for d in r.get("deployments", [])],
                        title="Deployments (their share of their nodes' power above idle)")
    nodes = table(["NODE", "STATE", "SOURCE", "WATTS", f"KWH ({since:g}s)", "KWH TOTAL"],
                  [(n["node"], n.get("status", ""), n.get("source", ""), _w(n.get("watts")),
                    _kwh(n.get("kwh")), _kwh(n.get("total_kwh")))
                   for n in r.get("nodes", [])],
                  title=f"Nodes: {_w(r.get('watts'))} W now, {_kwh(r.get('kwh'))} kWh")
    return Group(deployments, "", nodes)


def energy(ctx: typer.Context, since: SinceOpt = "1h", output: OutputOpt = None,
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """kWh per deployment and node over the last --since; watts and source per node."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.energy(since)
    show(opts, found, energy_tables)
