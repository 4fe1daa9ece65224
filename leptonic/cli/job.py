"""``leptonic job ...``: batch jobs: create, list, get, logs, output, cancel, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leptonic.cli._context import Opts, OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, clock, console, fields, show, table
from leptonic.cli.deployment import EnvOpt, parse_env, resources_text
from leptonic.cli.rollout import labels
from leptonic.client import Client
from leptonic.client.jobs import extract_output
from leptonic.core.jobs import attempt_placement, attempt_resources
from leptonic.core.models import Job, JobAttempt, Tier

app = typer.Typer(help="Batch jobs: a command in a code folder, or a photon's handler over "
                       "inputs, run to completion with retries.", no_args_is_help=True)


def _what(j: Job) -> str:
    s = j.spec
    if s.command is not None:
        return s.command if len(s.command) <= 40 else s.command[:37] + "..."
    return f"{s.photon}@{s.photon_version} {s.handler}"


def jobs_table(jobs: list[Job]) -> object:
    return table(["NAME", "PHASE", "DONE", "ACTIVE", "RETRIES", "PRIORITY", "AGE", "RUNS",
                  "MESSAGE"],
                 [(j.name, j.status.phase.value + (f" ({j.status.reason})"
                                                   if j.status.reason else ""),
                   f"{j.status.succeeded}/{j.spec.completions}", j.status.active,
                   j.status.retries, j.spec.priority, age(j.created_at), _what(j),
                   j.status.message) for j in jobs])


def attempts_table(attempts: list[JobAttempt]) -> object:
    return table(["INDEX", "ATTEMPT", "STATE", "NODE", "EXIT", "REASON", "STARTED", "ID"],
                 [(a.index, a.number, a.state.value, a.node, a.exit_code, a.reason or "",
                   clock(a.started_at), a.id) for a in attempts])


def job_fields(j: Job) -> object:
    s, st = j.spec, j.status
    duration = (st.finished_at - st.started_at) if st.finished_at and st.started_at else None
    return fields([
        ("name", j.name), ("phase", st.phase.value), ("reason", st.reason or "-"),
        ("message", st.message or "-"), ("type", s.type.value),
        ("scale", s.scale.value if s.scale else "-"),
        ("runs", _what(j)), ("completions", f"{st.succeeded}/{s.completions} succeeded, "
                                            f"{st.active} active, {st.failed} failed"),
        ("parallelism", s.parallelism), ("attempts", f"{st.attempts} ({st.retries} failed)"),
        ("max retries", f"{s.max_retries} per index, backoff {s.backoff_s:g}s doubling to "
                        f"{s.backoff_max_s:g}s"),
        ("deadline", f"{s.deadline_s:g}s" if s.deadline_s else "-"),
        ("ttl after finished", f"{s.ttl_after_finished_s:g}s"
         if s.ttl_after_finished_s is not None else "-"),
        ("priority", s.priority), ("resources", resources_text(attempt_resources(s))),
        ("tier", attempt_placement(s).tier.value),
        ("output", f"{st.output_files} file(s), {st.output_bytes} bytes"),
        ("duration", f"{duration:.1f}s" if duration is not None else "-"),
        ("last error", st.last_error or "-"),
        ("created", clock(j.created_at)), ("finished", clock(st.finished_at)),
    ])


def wait_with_progress(client: Client, opts: Opts, name: str, timeout: float | None) -> Job:
    if opts.json:
        return client.wait_job(name, timeout)
    err = console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("indexes  {task.fields[phase]}"), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"job {name}", total=None, phase="")

        def on_progress(j: Job) -> None:
            progress.update(task, total=j.spec.completions, completed=j.status.succeeded,
                            phase=j.status.phase.value)

        return client.wait_job(name, timeout, on_progress)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="Job name (a slug).")],
    command: Annotated[str | None, typer.Option(
        "--command", "-c", help="Run this with /bin/sh -c in a copy of --path.",
        show_default=False)] = None,
    path: Annotated[Path | None, typer.Option(
        "--path", help="The code folder the command runs in (bundled like photons).",
        show_default=False)] = None,
    photon: Annotated[str | None, typer.Option(
        "--photon", "-p", help="A stored photon whose handler is called per input.",
        show_default=False)] = None,
    handler: Annotated[str | None, typer.Option("--handler", help="The photon's handler.",
                                                show_default=False)] = None,
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", help="JSON Lines: one JSON object of the handler's inputs per line.",
        show_default=False)] = None,
    job_type: Annotated[str, typer.Option(
        "--type", help="computation (datacenter nodes), edge (edge nodes) or storage.")
    ] = "computation",
    scale: Annotated[str | None, typer.Option(
        "--scale", help="small (0.5 CPU, 512 MiB), medium (1 CPU, 2 GiB) or large "
                        "(2 CPU, 8 GiB) per attempt.", show_default=False)] = None,
    completions: Annotated[int | None, typer.Option(
        "--completions", help="Indexes to complete (JOB_COMPLETION_INDEX 0..N-1).",
        show_default=False)] = None,
    parallelism: Annotated[int, typer.Option("--parallelism", help="Indexes at a time.")] = 1,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Retries per index.")] = 3,
    backoff: Annotated[float, typer.Option(
        "--backoff", help="Seconds before the first retry; doubles, up to 6 min.")] = 10.0,
    deadline: Annotated[float | None, typer.Option(
        "--deadline", help="Seconds the whole job may take.", show_default=False)] = None,
    ttl: Annotated[float | None, typer.Option(
        "--ttl-after-finished", help="Remove the job this many seconds after it ends.",
        show_default=False)] = None,
    priority: Annotated[int, typer.Option(
        "--priority", help="Higher first; may preempt attempts of lower jobs.")] = 0,
    cpu: Annotated[float | None, typer.Option("--cpu", show_default=False)] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="MiB.",
                                               show_default=False)] = None,
    gpu: Annotated[float | None, typer.Option("--gpu", show_default=False)] = None,
    tier: Annotated[Tier | None, typer.Option(
        "--tier", help="Only nodes of this tier (default: the --type's: computation on "
                       "datacenter, edge on edge nodes).", show_default=False)] = None,
    node_selector: Annotated[list[str] | None, typer.Option(
        "--node-selector", metavar="KEY=VALUE", show_default=False,
        help="Only nodes with this label (repeatable), as for deployments.")] = None,
    env: EnvOpt = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", metavar="KEY=VALUE", show_default=False,
        help="A label for usage and cost (`leptonic usage --by label:KEY`; repeatable).")
    ] = None,
    secret: Annotated[list[str] | None, typer.Option(
        "--secret", help="A secret given to the attempts as an env variable (repeatable).",
        show_default=False)] = None,
    max_output_mb: Annotated[int | None, typer.Option(
        "--max-output-mb", help="Output kept at most (default 256).",
        show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it has finished.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="With --wait: give up after this many seconds.",
        show_default=False)] = None,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Create a job: --command in --path, or --photon --handler over --inputs."""
    opts = options(ctx, output, url, token)
    resources = {k: v for k, v in (("cpu", cpu), ("memory_mb", memory), ("gpu", gpu))
                 if v is not None}
    placement: dict[str, object] = {}
    if tier is not None:
        placement["tier"] = tier.value
    if (selector := labels(node_selector or [])) is not None:
        placement["node_selector"] = selector
    with connect(opts) as client:
        job = client.create_job(
            name, command=command, path=path, photon=photon, handler=handler, inputs=inputs,
            env=parse_env(env), secrets=secret or (), type=job_type, scale=scale,
            completions=completions, parallelism=parallelism, max_retries=max_retries,
            backoff_s=backoff, deadline_s=deadline, ttl_after_finished_s=ttl,
            priority=priority, resources=resources or None, max_output_mb=max_output_mb,
            placement=placement or None, labels=labels(label or [], "--label"))
        if wait:
            job = wait_with_progress(client, opts, name, timeout)
    show(opts, job, job_fields)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """Every job, newest first."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        jobs = client.list_jobs()
    show(opts, jobs, jobs_table)


@app.command("get")
def get(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
        token: TokenOpt = None) -> None:
    """A job's status, spec and attempts."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        job = client.get_job(name)
        attempts = client.job_attempts(name)
    if opts.json:
        show(opts, {**job.model_dump(mode="json"),
                    "attempts": [a.model_dump(mode="json") for a in attempts]}, str)
        return
    out = console()
    out.print(job_fields(job))
    if attempts:
        out.print()
        out.print(attempts_table(attempts))


@app.command("logs")
def logs(
    ctx: typer.Context, name: str,
    index: Annotated[int | None, typer.Option("--index", min=0, help="Only this index.",
                                              show_default=False)] = None,
    attempt: Annotated[int | None, typer.Option("--attempt", min=1,
                                                help="Only this attempt (1, 2, ...).",
                                                show_default=False)] = None,
    tail: Annotated[int, typer.Option(min=0, help="Last lines of each attempt.")] = 200,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing until the job ends.")] = False,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The attempts' log lines, each prefixed [INDEX/ATTEMPT]."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        if follow:
            for line in client.follow_job_logs(name, index=index, attempt=attempt, tail=tail):
                typer.echo(json.dumps({"job": name, "line": line}) if opts.json else line)
            return
        text = client.job_logs(name, index=index, attempt=attempt, tail=tail)
    if opts.json:
        show(opts, {"job": name, "lines": text.splitlines()}, str)
    else:
        typer.echo(text, nl=not text.endswith("\n") and bool(text))


@app.command("output")
def output_(
    ctx: typer.Context, name: str,
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Folder to write it into.")
                    ] = Path("."),
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Download what the job's indexes left in their output folders into --dest."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        data = client.job_output(name)
    files = extract_output(data, dest)
    show(opts, {"job": name, "dest": str(dest), "files": [str(f) for f in files]},
         lambda d: f"{len(d['files'])} file(s) written to {d['dest']}"
         + "".join(f"\n  {f}" for f in d["files"]))


@app.command("cancel")
def cancel(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Stop a job's attempts; it ends Failed (Cancelled)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        job = client.cancel_job(name)
    show(opts, job, lambda j: f"job {j.name} is being cancelled")


@app.command("delete")
def delete(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Stop a job and remove it with its output."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        job = client.delete_job(name)
    show(opts, job, lambda j: f"job {j.name} is being deleted")
