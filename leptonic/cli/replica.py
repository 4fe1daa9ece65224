"""``leptonic replica ...``: the running copies of deployments."""

from __future__ import annotations

from typing import Annotated

import typer

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, show, table
from leptonic.core.models import Replica

app = typer.Typer(help="Replicas: running copies of a deployment's photon.",
                  no_args_is_help=True)


def replicas_table(replicas: list[Replica]) -> object:
    return table(["ID", "DEPLOYMENT", "STATE", "NODE", "URL", "PID", "RESTARTS", "AGE"],
                 [(r.id, r.deployment, r.state, r.node, r.url, r.pid, r.restarts,
                   age(r.started_at or r.created_at)) for r in replicas])


@app.command("list")
def list_(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Option(
        "--deployment", "-d", help="Only this deployment's replicas (default: all).",
        show_default=False)] = None,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """List replicas with their state, node, URL and pid."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.replicas(deployment) if deployment else client.list_replicas()
    show(opts, found, replicas_table)
