"""The ``leptonic`` command: ``up``, ``status`` and the photon/deployment/replica/node
groups."""

from __future__ import annotations

import typer

from leptonic.cli import alert as alert_cli
from leptonic.cli import auth, deployment, job, model, node, photon, replica
from leptonic.cli import simulate as simulate_cli
from leptonic.cli._context import Opts, OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import ErrorHandlingGroup, fields, show
from leptonic.cli.energy import energy as energy_cmd
from leptonic.cli.init import init as init_cmd
from leptonic.cli.up import up
from leptonic.cli.usage import budgets as budget_cli
from leptonic.cli.usage import prices as price_cli
from leptonic.cli.usage import usage_app

app = typer.Typer(
    name="leptonic", cls=ErrorHandlingGroup, no_args_is_help=True,
    help="leptonic: serve Python model classes (photons) as scalable deployments.",
    pretty_exceptions_show_locals=False, context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
         token: TokenOpt = None) -> None:
    """Options given here apply to every command (a command's own win)."""
    ctx.obj = Opts(output=output or Opts.output, url=url, token=token)


app.command("up")(up)
app.command("init")(init_cmd)
app.add_typer(photon.app, name="photon")
app.add_typer(deployment.app, name="deployment")
app.add_typer(replica.app, name="replica")
app.add_typer(node.app, name="node")
app.add_typer(job.app, name="job")
app.add_typer(model.app, name="model")
app.add_typer(alert_cli.app, name="alert")
app.add_typer(simulate_cli.app, name="simulate")
app.command("energy")(energy_cmd)
app.add_typer(usage_app, name="usage")
app.add_typer(price_cli, name="price")
app.add_typer(budget_cli, name="budget")
app.command("login")(auth.login)
app.command("logout")(auth.logout)
app.command("whoami")(auth.whoami)
app.command("register")(auth.register)
app.command("audit")(auth.audit)
app.add_typer(auth.users, name="user")
app.add_typer(auth.tokens, name="token")
app.add_typer(auth.secrets, name="secret")


@app.command("status")
def status(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Whether the platform answers, and its version, database and runtime."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        info = client.status()
        info = {"url": client.url, **info} if isinstance(info, dict) else info
    show(opts, info, lambda i: fields(i.items()))


def main() -> None:
    app()
