"""``leptonic deployment rollout status|pause|resume|promote|abort`` and
``leptonic deployment rollback``, and the rollout, autoscaling, probe, limit, resource and
placement options that ``deployment create`` and ``deployment update`` share
(``@spec_options``)."""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
import typing
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from leptonic.cli._context import Opts, OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import clock, console, fail, fields, show, table
from leptonic.client import Client
from leptonic.core.models import (
    DEFAULT_PLACEMENT,
    DONE_PHASES,
    AutoscalingPolicy,
    PlacementPolicy,
    Rollout,
    RolloutPhase,
    StrategyType,
    Tier,
)

app = typer.Typer(help="The rollout of a deployment's new version: watch it, pause, resume, "
                       "promote or abort it.", no_args_is_help=True)


# -- the spec options of create/update ---------------------------------------------------

def _steps(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a list of percentages like 10,25,50,100",
                                 param_hint="'--steps'") from exc


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="'--smoke-body'") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="'--smoke-body'")
    return value


def _rate(value: float) -> float:
    return value / 100.0 if value > 1 else value        # 99 and 0.99 both mean 99%


def _opt(kind: Any, flag: str, help_: str, panel: str = "Rollout, scaling, probes") -> Any:
    return Annotated[kind | None, typer.Option(flag, help=help_, show_default=False,
                                               rich_help_panel=panel)]


_LIMITS = "Limits and timeouts"
_PLACEMENT = "Placement and resources"
_UNITS = {"": 1, "mi": 1, "m": 1, "gi": 1024, "g": 1024, "ti": 1024 * 1024, "t": 1024 * 1024}


def memory_mb(text: str, flag: str = "--memory-limit", least: int = 1) -> int:
    """``512Mi``, ``2Gi``, ``1.5G`` or plain MiB -> MiB (at least ``least``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = m[2].lower() if m else ""
    if m is None or unit not in _UNITS:
        raise typer.BadParameter(f"{text!r} is not a memory size; use e.g. 512Mi, 2Gi or a "
                                 "number of MiB", param_hint=f"'{flag}'")
    return max(least, round(float(m[1]) * _UNITS[unit]))


def _memory_request(text: str) -> int:
    return memory_mb(text, "--memory", least=0)     # 0: the replica asks for no memory


def labels(values: list[str], flag: str = "--node-selector") -> dict[str, str] | None:
    """``["zone=a", "disk=ssd"]`` -> ``{"zone": "a", "disk": "ssd"}``; None if none given;
    a bad item is a usage error (exit 2)."""
    if not values:
        return None
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE, e.g. zone=a",
                                     param_hint=f"'{flag}'")
        out[key.strip()] = value.strip()
    return out


#: parameter name -> (annotation, where it goes in the spec, converter)
SPEC_OPTIONS: dict[str, tuple[Any, tuple[str, ...], Callable[[Any], Any] | None]] = {
    "strategy": (_opt(StrategyType, "--strategy", "How a new version replaces the old: "
                      "rolling (default), blue-green or canary."), ("strategy", "type"), None),
    "max_surge": (_opt(str, "--max-surge", "rolling: replicas above desired, N or N% "
                       "(default 25%)."), ("strategy", "max_surge"), None),
    "max_unavailable": (_opt(str, "--max-unavailable", "rolling: desired replicas that may "
                             "be not ready, N or N% (default 25%)."),
                        ("strategy", "max_unavailable"), None),
    "steps": (_opt(str, "--steps", "canary: traffic percent per step (default "
                   "10,25,50,100)."), ("strategy", "steps"), _steps),
    "step_interval": (_opt(float, "--step-interval", "canary: seconds each step is held and "
                           "analysed (default 60)."), ("strategy", "step_interval_s"), None),
    "min_success_rate": (_opt(float, "--min-success-rate", "canary: least share of non-5xx "
                              "answers, 99 or 0.99 (default 99%)."),
                         ("strategy", "analysis", "min_success_rate"), _rate),
    "max_p99_ms": (_opt(float, "--max-p99-ms", "canary: highest p99 latency in ms (default "
                        "500)."), ("strategy", "analysis", "max_p99_ms"), None),
    "min_requests": (_opt(int, "--min-requests", "canary: requests a step needs to pass on "
                          "figures (default 100)."), ("strategy", "analysis", "min_requests"),
                     None),
    "smoke_path": (_opt(str, "--smoke-path", "blue-green: POST this path on every new "
                        "replica before switching (e.g. /echo)."), ("strategy", "smoke_path"),
                   None),
    "smoke_body": (_opt(str, "--smoke-body", "blue-green: the smoke request's JSON body."),
                   ("strategy", "smoke_body"), _json_object),
    "keep_old": (_opt(float, "--keep-old", "blue-green: seconds the old set is kept for an "
                      "instant rollback (default 300)."), ("strategy", "keep_old_s"), None),
    "progress_deadline": (_opt(float, "--progress-deadline", "Roll back when new replicas "
                               "make no progress this many seconds (default 600)."),
                          ("strategy", "progress_deadline_s"), None),
    "min_replicas": (_opt(int, "--min-replicas", "Autoscale: fewest replicas; 0 scales to "
                          "zero when idle."), ("autoscaling", "min_replicas"), None),
    "max_replicas": (_opt(int, "--max-replicas", "Autoscale: most replicas."),
                     ("autoscaling", "max_replicas"), None),
    "autoscaling_policy": (_opt(AutoscalingPolicy, "--autoscaling-policy", "Autoscale: "
                                "reactive (the requests in flight; default) or predictive "
                                "(also the forecast rate; needs --min-replicas and "
                                "--max-replicas)."), ("autoscaling", "policy"), None),
    "target_concurrency": (_opt(float, "--target-concurrency", "Autoscale: requests in "
                                "flight per replica to aim for (default 2)."),
                           ("autoscaling", "target_concurrency"), None),
    "upscale_delay": (_opt(float, "--upscale-delay", "Autoscale: seconds more load must last "
                           "before scaling up (default 30)."),
                      ("autoscaling", "upscale_delay_s"), None),
    "downscale_delay": (_opt(float, "--downscale-delay", "Autoscale: seconds less load must "
                             "last before scaling down (default 600)."),
                        ("autoscaling", "downscale_delay_s"), None),
    "scale_to_zero_after": (_opt(float, "--scale-to-zero-after", "Autoscale: idle seconds "
                                 "before going to zero (min 0; default 600)."),
                            ("autoscaling", "scale_to_zero_after_s"), None),
    "look_back": (_opt(float, "--look-back", "Autoscale: seconds the load is averaged over "
                       "(default 30)."), ("autoscaling", "look_back_s"), None),
    "queue_timeout": (_opt(float, "--queue-timeout", "Seconds a request waits for a replica "
                           "of a deployment at zero (default 60)."),
                      ("autoscaling", "queue_timeout_s"), None),
    "probe_period": (_opt(float, "--probe-period", "Seconds between probes of a ready "
                          "replica (default 1)."), ("probes", "period_s"), None),
    "probe_timeout": (_opt(float, "--probe-timeout", "Seconds a probe waits for an answer "
                           "(default 1)."), ("probes", "timeout_s"), None),
    "liveness_failures": (_opt(int, "--liveness-failures", "Unanswered probes in a row "
                               "before a replica is replaced (default 3)."),
                          ("probes", "liveness_failures"), None),
    "drain_timeout": (_opt(float, "--drain-timeout", "Seconds a stopping replica may finish "
                           "its requests (default 30)."), ("drain_timeout_s",), None),
    "memory_limit": (_opt(str, "--memory-limit", "Memory per replica (512Mi, 2Gi); past it "
                          "the replica is killed as OOMKilled (default 4Gi).", _LIMITS),
                     ("limits", "memory_mb"), memory_mb),
    "cpu_limit": (_opt(float, "--cpu-limit", "Cores per replica, where cgroup v2 can enforce "
                       "it (default: none).", _LIMITS), ("limits", "cpu"), None),
    "open_files": (_opt(int, "--open-files", "Open files per replica (default 4096).",
                        _LIMITS), ("limits", "open_files"), None),
    "max_processes": (_opt(int, "--max-processes", "Processes and threads of a deployment's "
                           "user (default 1024).", _LIMITS), ("limits", "processes"), None),
    "handler_timeout": (_opt(float, "--handler-timeout", "Seconds a handler call may take "
                             "before the caller gets 504 (default 60; a handler's own "
                             "timeout= wins).", _LIMITS), ("handler_timeout_s",), None),
    "max_concurrency": (_opt(int, "--max-concurrency", "Requests in progress per replica; "
                             "as many more wait briefly, then 503 (default 64).", _LIMITS),
                        ("max_concurrency",), None),
    "debug_errors": (Annotated[bool | None, typer.Option(
        "--debug-errors/--no-debug-errors", show_default=False, rich_help_panel=_LIMITS,
        help="Send a handler's exception message to its caller (default: only its type "
             "and a request id).")], ("debug_errors",), None),
    "cpu": (_opt(float, "--cpu", "Cores one replica needs of its node, fractions allowed "
                 "(default 0: no ask).", _PLACEMENT), ("resources", "cpu"), None),
    "memory": (_opt(str, "--memory", "Memory one replica needs of its node (512Mi, 2Gi; "
                    "default 0: no ask).", _PLACEMENT), ("resources", "memory_mb"),
               _memory_request),
    "gpu": (_opt(float, "--gpu", "GPUs one replica needs (default 0).", _PLACEMENT),
            ("resources", "gpu"), None),
    "tier": (_opt(Tier, "--tier", "Only nodes of this tier (default: any).", _PLACEMENT),
             ("placement", "tier"), None),
    "node_selector": (Annotated[list[str] | None, typer.Option(
        "--node-selector", metavar="KEY=VALUE", show_default=False,
        rich_help_panel=_PLACEMENT,
        help="Only nodes with this label KEY=VALUE (repeatable; all must match; on update "
             "the labels given replace the current selector).")],
        ("placement", "node_selector"), labels),
    "gpu_model": (Annotated[list[str] | None, typer.Option(
        "--gpu-model", metavar="MODEL", show_default=False, rich_help_panel=_PLACEMENT,
        help="Only nodes with this GPU model, e.g. A100 (repeatable: any of them).")],
        ("placement", "gpu_models"), None),
    "placement": (_opt(PlacementPolicy, "--placement", "How a node is chosen among those "
                       "that fit: spread, pack, ray-hybrid or energy (default: "
                       f"{DEFAULT_PLACEMENT.value}).", _PLACEMENT), ("placement", "policy"), None),
    "label": (Annotated[list[str] | None, typer.Option(
        "--label", "-l", metavar="KEY=VALUE", show_default=False,
        help="A label for usage and cost (`leptonic usage --by label:KEY`; repeatable; on "
             "update the labels given replace the current ones).")],
        ("labels",), lambda v: labels(v, "--label")),
}


def spec_from_options(values: dict[str, Any]) -> dict[str, Any]:
    """The options given, as the nested spec fields the API takes."""
    spec: dict[str, Any] = {}
    for name, value in values.items():
        _, path, convert = SPEC_OPTIONS[name]
        if convert is not None and value is not None:
            value = convert(value)
        if value is None or value == []:
            continue
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value.value if isinstance(value, Enum) else value
    return spec


def spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the rollout/autoscaling/probe options; it receives them as one
    ``spec: dict`` argument (only the options given), ready for the client."""
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    # typer calls commands with keyword arguments only, so every parameter can be one
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=keyword, annotation=hints.get(p.name, p.annotation))
           for p in sig.parameters.values() if p.name != "spec"]
    at = next((i for i, p in enumerate(own) if p.name == "output"), len(own))
    extra = [inspect.Parameter(name, keyword, default=None, annotation=annot)
             for name, (annot, _, _) in SPEC_OPTIONS.items()]
    params = own[:at] + extra + own[at:]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in SPEC_OPTIONS}
        return fn(spec=spec_from_options(values), **kwargs)

    del command.__wrapped__       # typer must see the new signature, not fn's
    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


# -- rollout status and control ------------------------------------------------------------

def rollout_view(ro: Rollout) -> Any:
    st = ro.status
    if st.id == 0:
        return fields([("deployment", ro.deployment), ("rollout", "none yet"),
                       ("serving", st.target.label)])
    steps = st.strategy.steps
    step = ""
    now = time.time()
    if st.strategy.type is StrategyType.CANARY and st.phase not in DONE_PHASES:
        step = (f"{st.step + 1}/{len(steps)} ({steps[st.step]}%)" if st.step >= 0
                else f"0/{len(steps)}")
        if st.step >= 0 and st.phase is RolloutPhase.PROGRESSING:
            left = st.strategy.step_interval_s - (now - st.step_started_at)
            step += f", {max(0.0, left):.0f}s left in the step"
    paused = ro.control.id == st.id and ro.control.paused and st.phase not in DONE_PHASES
    rows: list[tuple[str, Any]] = [
        ("deployment", ro.deployment), ("rollout", st.id),
        ("strategy", st.strategy.type.value),
        ("phase", f"{st.phase}" + (" (pause requested)" if paused and st.phase
                                   is not RolloutPhase.PAUSED else "")),
        ("from", st.stable.label), ("to", st.target.label)]
    if step:
        rows.append(("step", step))
    rows += [
        ("traffic", ", ".join(f"generation {g}: {w}%" for g, w in sorted(st.weights.items()))
         or "every ready replica alike"),
        ("replicas wanted", ", ".join(f"generation {g}: {n}"
                                      for g, n in sorted(st.desired.items())) or "-"),
        ("message", st.message or "-")]
    if st.reason:
        rows.append(("reason", st.reason))
    if st.previous is not None and st.keep_until:
        rows.append(("kept for rollback", f"{st.previous.label} until {clock(st.keep_until)}"))
    rows += [("started", clock(st.started_at)),
             ("finished", clock(st.finished_at) if st.finished_at else "-")]
    view = fields(rows)
    if not st.analysis:
        return view
    from rich.console import Group

    def fig(v: float | None, unit: str) -> str:
        return "-" if v is None else f"{v:g}{unit}"

    checks = table(["CHECK", "CANARY", "STABLE", "THRESHOLD", "REQUESTS", "VERDICT"],
                   [(c.name, fig(c.value, c.unit), fig(c.stable, c.unit),
                     fig(c.threshold, c.unit), c.requests,
                     {True: "pass", False: "FAIL", None: "pending"}[c.passed])
                    for c in st.analysis], title="analysis")
    return Group(view, checks)


NameArg = Annotated[str, typer.Argument(help="Deployment name.")]


@app.command("status")
def status(
    ctx: typer.Context, name: NameArg,
    wait: Annotated[bool, typer.Option(
        "--wait", "-w", help="Wait until the rollout is over; exit 1 unless it succeeded.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The live state of the latest rollout: step, weights, replicas, analysis figures."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        ro: Rollout = client.get_rollout(name)
        if wait:
            ro = follow(client, opts, ro, name, time.monotonic() + timeout, timeout)
    show(opts, ro, rollout_view)
    if wait and ro.status.phase is not RolloutPhase.SUCCEEDED:
        fail(f"rollout {ro.status.id} of {name} {ro.status.phase}: {ro.status.reason}")


def follow(client: Client, opts: Opts, ro: Rollout, name: str, deadline: float,
           timeout: float, hint: str = "") -> Rollout:
    """Poll the rollout until it is over (its messages on stderr for people); one line and
    exit 1 past ``deadline``."""
    err = console(stderr=True)
    last = ""
    while ro.status.phase not in DONE_PHASES:
        if time.monotonic() > deadline:
            fail(f"rollout {ro.status.id} of {name} still {ro.status.phase} after "
                 f"{timeout:g}s: {ro.status.message}{hint}")
        if not opts.json and ro.status.message != last and err.is_terminal:
            err.print(f"[dim]{ro.status.message}[/dim]")
        last = ro.status.message
        time.sleep(0.5)
        ro = client.get_rollout(name)
    return ro


def _control(verb: str) -> Callable[..., None]:
    def command(ctx: typer.Context, name: NameArg, output: OutputOpt = None,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
        opts = options(ctx, output, url, token)
        with connect(opts) as client:
            ro = getattr(client, f"{verb}_rollout")(name)
        show(opts, ro, rollout_view)

    return command


app.command("pause", help="Hold the rollout where it is until resumed.")(_control("pause"))
app.command("resume", help="Carry on with a paused rollout.")(_control("resume"))
app.command("promote", help="Skip the remaining steps and checks: all traffic to the new "
                            "version once its replicas are ready.")(_control("promote"))
app.command("abort", help="Go back to the stable version now.")(_control("abort"))


def rollback(ctx: typer.Context, name: NameArg, output: OutputOpt = None,
             url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Go back to the version that served before the latest rollout (a blue-green set kept
    for rollback serves again at once)."""
    from leptonic.cli.deployment import deployments_table

    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        dep = client.rollback(name)
    show(opts, dep, lambda d: deployments_table([d]))
