"""``leptonic deployment ...``: create, inspect, scale, update and delete deployments."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leptonic.cli import rollout as rollout_cli
from leptonic.cli._context import Opts, OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, clock, console, fail, fields, show, table
from leptonic.cli.replica import replicas_table
from leptonic.cli.rollout import spec_options
from leptonic.client import Client
from leptonic.core.models import (
    DEFAULT_PLACEMENT,
    Deployment,
    Event,
    PlacementSpec,
    Resources,
    Rollout,
    RolloutPhase,
)
from leptonic.core.transitions import error_line
from leptonic.errors import NotFound

app = typer.Typer(help="Deployments: a photon version running as replicas behind the gateway.",
                  no_args_is_help=True)


def parse_env(values: list[str] | None) -> dict[str, str] | None:
    """``["K=V", ...]`` -> ``{"K": "V"}``; a bad item is a usage error (exit 2)."""
    if not values:
        return None
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--env'")
        env[key] = value
    return env


EnvOpt = Annotated[list[str] | None, typer.Option(
    "--env", "-e", help="Environment variable KEY=VALUE for the replicas (repeatable).",
    show_default=False)]
PhotonOpt = Annotated[str | None, typer.Option(
    "--photon", "-p", help="NAME (latest), NAME@N / NAME@vN, or builtin:NAME.",
    show_default=False)]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Serve a registered model instead: NAME@ALIAS (followed as the "
    "alias moves) or NAME@VERSION.", show_default=False)]


def _photon(d: Deployment) -> str:
    spec = d.spec
    if spec.model is not None:
        m = spec.model
        return f"{m.model}@{m.version}" + (f" ({m.alias})" if m.alias else "")
    if spec.photon.startswith("builtin:") or not spec.photon_version:
        return spec.photon
    return f"{spec.photon}@{spec.photon_version}"


def deployments_table(deployments: list[Deployment]) -> object:
    return table(["NAME", "PHOTON", "READY", "PHASE", "GENERATION", "AGE", "MESSAGE"],
                 [(d.name, _photon(d), f"{d.status.ready_replicas}/{d.desired_replicas}",
                   d.status.phase, d.generation, age(d.created_at), d.status.message)
                  for d in deployments])


def resources_text(r: Resources) -> str:
    """``0.5 CPU, 512 MiB, 1 GPU``, or ``-`` for a replica that asks for nothing."""
    asks = [f"{r.cpu:g} CPU"] if r.cpu else []
    asks += [f"{r.memory_mb} MiB"] if r.memory_mb else []
    asks += [f"{r.gpu:g} GPU"] if r.gpu else []
    return ", ".join(asks) or "-"


def placement_text(p: PlacementSpec) -> str:
    """``tier edge, labels zone=a`` (``tier any`` places on every ready node)."""
    text = f"tier {p.tier.value}"
    if p.node_selector:
        text += ", labels " + ", ".join(f"{k}={v}" for k, v in sorted(p.node_selector.items()))
    if p.gpu_models:
        text += ", GPU " + "|".join(p.gpu_models)
    text += f", {(p.policy or DEFAULT_PLACEMENT).value}" + ("" if p.policy else " (default)")
    return text


def deployment_fields(d: Deployment) -> object:
    st = d.status
    env = ", ".join(f"{k}={v}" for k, v in sorted(d.spec.env.items())) or "-"
    return fields([
        ("name", d.name), ("photon", _photon(d)), ("phase", st.phase),
        ("replicas", f"{st.ready_replicas}/{d.desired_replicas} ready ({st.replicas} running)"),
        ("autoscaling", "-" if (a := d.spec.autoscaling) is None else
         f"{a.min_replicas}..{a.max_replicas} replicas, {a.target_concurrency:g} in flight "
         f"each (now {st.autoscale.in_flight if st.autoscale else 0:g})"),
        ("strategy", d.spec.strategy.type.value), ("rollout", st.rollout or "-"),
        ("restarts", st.restarts), ("generation", f"{d.generation} "
                                                  f"(observed {st.observed_generation})"),
        ("resources", resources_text(d.spec.resources)),
        ("placement", placement_text(d.spec.placement)),
        ("env", env), ("message", st.message or "-"),
        ("last error", error_line(st.last_error) or "-"),
        ("created", clock(d.created_at)), ("updated", clock(d.updated_at)),
    ])


def _wait(client: Client, opts: Opts, name: str, timeout: float) -> Deployment:
    """Wait for ``name`` to be ready, drawing ready/desired replicas on stderr for people."""
    if opts.json:
        return client.wait_ready(name, timeout)
    err = console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("replicas ready  {task.fields[phase]}"), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"deploying {name}", total=None, phase="")

        def on_progress(d: Deployment) -> None:
            progress.update(task, total=max(d.desired_replicas, 1),
                            completed=d.status.ready_replicas, phase=d.status.phase)

        return client.wait_ready(name, timeout, on_progress)


def _wait_update(client: Client, opts: Opts, d: Deployment, timeout: float) -> Deployment:
    """Wait for an update to be in force: the controller has seen its generation; a rollout
    it started is over (exit 1 unless it succeeded); the replicas are ready."""
    name, generation = d.name, d.generation
    deadline = time.monotonic() + timeout
    while d.status.observed_generation < generation:
        if time.monotonic() > deadline:
            fail(f"the controller has not taken up generation {generation} of {name} in "
                 f"{timeout:g}s (it is at {d.status.observed_generation})")
        time.sleep(0.2)
        d = client.get_deployment(name)
    if d.status.template_generation == generation:       # a new template: a rollout
        try:
            ro: Rollout | None = client.get_rollout(name)
        except NotFound:
            ro = None
        if ro is not None and ro.status.target.generation == generation:
            ro = rollout_cli.follow(
                client, opts, ro, name, deadline, timeout,
                hint=f" (`leptonic deployment rollout status {name}` follows it; --no-wait "
                     "returns at once)")
            if ro.status.phase is not RolloutPhase.SUCCEEDED:
                fail(f"rollout {ro.status.id} of {name} {ro.status.phase}: "
                     f"{ro.status.reason or ro.status.message}")
    return _wait(client, opts, name, max(1.0, deadline - time.monotonic()))


NoWaitOpt = Annotated[bool, typer.Option(
    "--no-wait", help="Return once the change is stored instead of waiting until the "
                      "deployment is ready with it.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for readiness.")]


@app.command("create")
@spec_options
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="Deployment name (a slug).")],
    photon: PhotonOpt = None,
    model: ModelOpt = None,
    no_monitor: Annotated[bool, typer.Option(
        "--no-monitor", help="With --model: do not sample its answers (no live accuracy "
        "or drift).")] = False,
    replicas: Annotated[int, typer.Option(min=0, help="Replicas to run.")] = 1,
    env: EnvOpt = None,
    secret: Annotated[list[str] | None, typer.Option(
        "--secret", "-s", help="Secret NAME injected as env variable NAME (repeatable).",
        show_default=False)] = None,
    public: Annotated[bool, typer.Option(
        "--public", help="Serve /run/NAME without a token (default: a token is needed).")
    ] = False,
    no_wait: NoWaitOpt = False,
    timeout: TimeoutOpt = 300.0,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
    spec: dict[str, Any] | None = None,
) -> None:
    """Deploy a photon (or a registered model) and (unless --no-wait) wait until all its
    replicas are ready."""
    opts = options(ctx, output, url, token)
    if (photon is None) == (model is None):
        fail("give --photon NAME or --model NAME@ALIAS (e.g. iris@champion), one of them")
    with connect(opts) as client:
        dep = client.create_deployment(name, photon, replicas, parse_env(env) or {},
                                       secrets=secret or (), public=public, model=model,
                                       monitor=False if no_monitor else None,
                                       **(spec or {}))
        if not no_wait:
            dep = _wait(client, opts, name, timeout)
    show(opts, dep, lambda d: deployments_table([d]))


@app.command("list")
def list_(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """All deployments with their ready/desired replicas and phase."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.list_deployments()
    show(opts, found, deployments_table)


@app.command("get")
def get(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
        token: TokenOpt = None) -> None:
    """One deployment: spec, status and its last error."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        dep = client.get_deployment(name)
    show(opts, dep, deployment_fields)


@app.command("delete")
def delete(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Stop a deployment's replicas and remove it."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        dep = client.delete_deployment(name)
    show(opts, dep, lambda d: f"deleting deployment {d.name}")


@app.command("scale")
def scale(
    ctx: typer.Context, name: str,
    replicas: Annotated[int, typer.Option(min=0, help="Desired replicas.")],
    no_wait: NoWaitOpt = False, timeout: TimeoutOpt = 300.0,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Change the number of replicas and (unless --no-wait) wait until they are ready."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        dep = client.update_deployment(name, replicas=replicas)
        if not no_wait:
            dep = _wait(client, opts, name, timeout)
    show(opts, dep, lambda d: deployments_table([d]))


@app.command("update")
@spec_options
def update(
    ctx: typer.Context, name: str,
    photon: Annotated[str | None, typer.Option(
        "--photon", "-p", help="New photon version: NAME, NAME@N or builtin:NAME.",
        show_default=False)] = None,
    model: ModelOpt = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", help="Replace the environment with these KEY=VALUE (repeatable).",
        show_default=False)] = None,
    replicas: Annotated[int | None, typer.Option(min=0, help="Desired replicas.",
                                                 show_default=False)] = None,
    no_autoscaling: Annotated[bool, typer.Option(
        "--no-autoscaling", help="Turn autoscaling off (then set --replicas).",
        rich_help_panel="Rollout, scaling, probes")] = False,
    no_wait: NoWaitOpt = False,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the rollout and readiness.")] = 900.0,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
    spec: dict[str, Any] | None = None,
) -> None:
    """Change a deployment's photon, environment, replicas, strategy, autoscaling or probes,
    and (unless --no-wait) wait until it is in force. A new photon version or environment
    is rolled out by the deployment's strategy (``--strategy``): the command follows the
    rollout and exits 1 unless it succeeded (``leptonic deployment rollout status NAME``
    follows one started with --no-wait)."""
    opts = options(ctx, output, url, token)
    changes = {"photon": photon, "model": model, "env": parse_env(env), "replicas": replicas,
               **(spec or {})}
    if all(v is None for v in changes.values()) and not no_autoscaling:
        raise typer.BadParameter("nothing to update: give --photon, --model, --env, --replicas, "
                                 "--strategy or another option (see --help)")
    with connect(opts) as client:
        dep = client.update_deployment(name, no_autoscaling=no_autoscaling, **changes)
        if not no_wait:
            dep = _wait_update(client, opts, dep, timeout)
    show(opts, dep, lambda d: deployments_table([d]))


app.add_typer(rollout_cli.app, name="rollout")
app.command("rollback")(rollout_cli.rollback)


@app.command("replicas")
def replicas(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
             token: TokenOpt = None) -> None:
    """The replicas of a deployment."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.replicas(name)
    show(opts, found, replicas_table)


@app.command("events")
def events(
    ctx: typer.Context, name: str,
    limit: Annotated[int, typer.Option(min=1, help="Most recent events to show.")] = 100,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """What happened to a deployment and its replicas."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.events(name, limit)

    def render(evs: list[Event]) -> object:
        return table(["TIME", "KIND", "REASON", "OBJECT", "MESSAGE"],
                     [(clock(e.time), e.kind, e.reason, e.object, e.message) for e in evs])

    show(opts, found, render)


@app.command("logs")
def logs(
    ctx: typer.Context, name: str,
    tail: Annotated[int, typer.Option(min=0, help="Last lines to show.")] = 200,
    replica: Annotated[str | None, typer.Option(
        "--replica", "-r", help="Only this replica's lines.", show_default=False)] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    grep: Annotated[str | None, typer.Option(
        "--grep", "-g", help="Only lines matching this regular expression (searches the "
                             "rotated log files too).", show_default=False)] = None,
    ignore_case: Annotated[bool, typer.Option(
        "--ignore-case", "-i", help="Match --grep regardless of case.")] = False,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The replicas' log lines, each prefixed with its replica id."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        if not follow:
            text = client.logs(name, tail, replica, grep=grep, ignore_case=ignore_case)
            if opts.json:
                show(opts, {"deployment": name, "lines": text.splitlines()}, str)
            else:
                typer.echo(text, nl=not text.endswith("\n") and bool(text))
            return
        try:
            for line in client.follow_logs(name, tail, replica, grep=grep,
                                           ignore_case=ignore_case):
                if opts.json:
                    typer.echo(json_line(name, line))
                else:
                    typer.echo(line)
        except KeyboardInterrupt:
            return


@app.command("metrics")
def metrics(
    ctx: typer.Context, name: str,
    since: Annotated[str, typer.Option(help="How far back: 15m, 1h, 24h, 7d.")] = "1h",
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m", help="Only these metrics (repeatable; default: all).",
        show_default=False)] = None,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """A deployment's built-in time series: last, min, mean and max of each metric over
    the window, with a sparkline (``--output json``: every point)."""
    from leptonic.cli.metrics import series_table

    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        result = client.metrics(name, metrics=metric or None, since=since)
    show(opts, result, series_table)


def json_line(deployment: str, line: str) -> str:
    """One followed log line as a JSON object per line (for ``--follow --output json``)."""
    import json

    return json.dumps({"deployment": deployment, "line": line})
