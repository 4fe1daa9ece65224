"""``leptonic simulate ...``: replay public traces through the platform's own policies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from leptonic.cli._context import OutputOpt, options
from leptonic.cli._output import console, print_json, table
from leptonic.core.scheduler import Policy
from leptonic.errors import InvalidInput
from leptonic.simulate import autoscale as asim
from leptonic.simulate import schedule as sim
from leptonic.simulate import traces

app = typer.Typer(help="Offline replays of public traces through the platform's scheduler "
                       "and autoscaler.", no_args_is_help=True)

_POLICIES = ", ".join(p.value for p in Policy)


def policies(values: list[str] | None) -> list[Policy]:
    """``--policy`` values (repeatable, comma lists allowed, ``all``) in the order given."""
    out: list[Policy] = []
    for value in values or ["all"]:
        for name in (v.strip().lower() for v in value.split(",") if v.strip()):
            if name == "all":
                chosen = list(Policy)
            elif name in {p.value for p in Policy}:
                chosen = [Policy(name)]
            else:
                raise InvalidInput(f"unknown policy {name!r}: choose from {_POLICIES} or all")
            out += [p for p in chosen if p not in out]
    return out


def results_table(results: list[sim.Result]) -> Any:
    base = next((r.energy_kwh for r in results if r.policy == Policy.SPREAD), None)

    def versus(kwh: float) -> str:
        return f"{(kwh - base) / base * 100:+.1f}%" if base else ""

    return table(
        ["POLICY", "PODS", "PLACED", "UNSCHEDULED", "MAX WAIT", "MEAN WAIT", "ENERGY kWh",
         "VS SPREAD", "ACTIVE NODES", "GPU FRAG", "SCHEDULER", "WALL"],
        [(r.policy, r.pods, r.placed, r.unscheduled, f"{r.max_wait_s:g}s",
          f"{r.mean_wait_s:.1f}s", f"{r.energy_kwh:,.1f}", versus(r.energy_kwh),
          f"{r.mean_active_nodes:.1f}", f"{r.gpu_fragmentation:.1f}",
          f"{r.scheduler_s:.2f}s", f"{r.wall_s:.2f}s") for r in results])


@app.command("schedule")
def schedule(
    ctx: typer.Context,
    nodes: Annotated[str, typer.Option(
        "--nodes", help="The cluster: FORMAT:FILE, e.g. alibaba:openb_node_list_all_node.csv "
                        "(.csv or .csv.gz).", show_default=False)],
    pods: Annotated[str, typer.Option(
        "--pods", help="The work: FORMAT:FILE, e.g. alibaba:openb_pod_list_default.csv "
                       "(any openb_pod_list_* sample).", show_default=False)],
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help=f"Placement policy: {_POLICIES}, or all (repeat it, or "
                               "give a comma list; default: all).", show_default=False)] = None,
    times_from: Annotated[str | None, typer.Option(
        "--times-from", help="For a sample without times (multigpu*): FORMAT:FILE of a "
                             "timed sample, e.g. alibaba:openb_pod_list_default.csv, whose "
                             "pods lend their arrival and departure times (by name, else "
                             "by shape). Without it such a sample is a fill: arrivals 1 s "
                             "apart that never leave.", show_default=False)] = None,
    standby_after: Annotated[float, typer.Option(
        "--standby-after", help="Seconds a node with nothing placed stays idle before it "
                                "goes to standby (the same for every policy).",
        min=0)] = sim.STANDBY_AFTER_S,
    no_standby: Annotated[bool, typer.Option(
        "--no-standby", help="Nodes never go to standby.")] = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", help="Replay only the first N pods (a quick run).", min=1,
        show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also draw active nodes and power over time per policy into this "
                       "PNG file (needs matplotlib, the sim extra of leptonic).",
        show_default=False, dir_okay=False)] = None,
    series: Annotated[bool, typer.Option(
        "--series", help="With --output json: include the sampled time series.")] = False,
    output: OutputOpt = None,
) -> None:
    """Replay a trace's pod arrivals and departures through the scheduler, per policy:
    energy, waits, pods left unscheduled, active nodes and GPU fragmentation.

    JSON: one object for one policy, a list for several.
    """
    opts = options(ctx, output)
    chosen = policies(policy)
    cluster = sim.node_specs(traces.read_nodes(nodes))
    work = sim.arrivals(timed_pods(pods, times_from), limit)
    if not cluster:
        raise InvalidInput(f"{nodes}: no nodes")
    results = sim.compare(cluster, work, chosen,
                          standby_after_s=None if no_standby else standby_after)
    if plot is not None:
        from leptonic.simulate.plot import plot as draw

        draw(results, plot, title=f"{Path(pods.partition(':')[2]).name} on "
                                  f"{len(cluster):,} nodes")
    if opts.json:
        docs = [r.to_dict(series=series) for r in results]
        print_json(docs[0] if len(docs) == 1 else docs)
    else:
        console().print(results_table(results))
        if plot is not None:
            typer.echo(f"plot: {plot}", err=True)


def timed_pods(pods: str, times_from: str | None) -> list[traces.TracePod]:
    """The pods of ``pods``, with the times of ``times_from`` lent where they have none;
    a note on stderr says how a sample without times is read."""
    out = traces.read_pods(pods)
    untimed = not all(p.timed for p in out)
    name = Path(pods.partition(":")[2]).name
    if times_from is not None:
        lender = traces.read_pods(times_from)
        if not untimed:
            typer.echo(f"note: {name} has times of its own; --times-from is not used",
                       err=True)
            return out
        return traces.borrow_times(out, lender, sample=pods.partition(":")[2],
                                   source=times_from.partition(":")[2])
    if untimed:
        typer.echo(f"note: {name} has no times, so it is replayed as a fill (arrivals 1 s "
                   "apart in file order that never leave); --times-from "
                   "alibaba:openb_pod_list_default.csv replays it on the default list's "
                   "times", err=True)
    return out


_AUTOSCALE_POLICIES = ", ".join(p.value for p in asim.SimPolicy)


def load_work(spec: str, service_s: float, seed: int) -> list[asim.Work]:
    """A request trace (``FORMAT:FILE``) as arrivals with service times."""
    fmt, path = traces.parse_spec(spec)
    if "requests" in fmt.readers:
        return asim.requests_work(traces.load(spec, "requests"), service_s)
    if "rates" in fmt.readers:
        return asim.rates_work(traces.load(spec, "rates"), service_s, seed)
    raise traces.TraceError(f"{path}: a {fmt.name} trace holds no requests (request traces: "
                            f"{', '.join(traces.formats('requests') + traces.formats('rates'))})")


def autoscale_table(results: list[asim.Result]) -> Any:
    base = next((r.replica_hours for r in results if r.policy == "reactive"), None)
    return table(
        ["POLICY", "REQUESTS", "SLO-MISS MIN", "REPLICA-HOURS", "VS REACTIVE", "COLD STARTS",
         "P99", "P99 WAIT", "MAX REPLICAS", "FORECAST MAPE"],
        [(r.policy, r.requests, f"{r.slo_miss_minutes} of {r.minutes}",
          f"{r.replica_hours:,.2f}", f"{r.replica_hours / base:.2f}x" if base else "",
          r.cold_starts, f"{r.p99_ms:,.0f}ms", f"{r.p99_wait_ms:,.0f}ms", r.max_replicas,
          "" if r.forecast_mape is None else f"{r.forecast_mape * 100:.0f}%")
         for r in results])


@app.command("autoscale")
def autoscale(
    ctx: typer.Context,
    trace: Annotated[str, typer.Option(
        "--trace", help="Requests: FORMAT:FILE, FORMAT one of azure-llm, alibaba-lora, "
                        "qps-series (.csv or .csv.gz).", show_default=False)],
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help=f"Autoscaling policy: {_AUTOSCALE_POLICIES}, or all "
                               "(repeatable or a comma list; default: reactive,predictive).",
        show_default=False)] = None,
    slo_ms: Annotated[float, typer.Option(
        "--slo-ms", help="SLO on the wait for a replica (p99 per minute).", min=0)
    ] = asim.SLO_MS,
    startup: Annotated[float, typer.Option(
        "--startup", help="Seconds a new replica takes to be ready (default: leptonic's "
                          "measured cold start).", min=0)] = asim.STARTUP_S,
    service: Annotated[float, typer.Option(
        "--service", help="Seconds a request takes where the trace says nothing of it.",
        min=0.001)] = asim.SERVICE_S,
    min_replicas: Annotated[int, typer.Option("--min-replicas", min=0)] = 0,
    max_replicas: Annotated[int, typer.Option("--max-replicas", min=1)] = 64,
    target: Annotated[float, typer.Option(
        "--target-concurrency", help="Requests in flight per replica to aim for.",
        min=0.01)] = 2.0,
    seed: Annotated[int, typer.Option("--seed", help="qps-series: the arrivals' seed.")] = 0,
    series: Annotated[bool, typer.Option(
        "--series", help="With --output json: include rate, forecast and replicas over "
                         "time.")] = False,
    output: OutputOpt = None,
) -> None:
    """Replay a request trace against replicas that take time to start, through the
    platform's autoscaler (and forecaster): SLO-miss minutes, replica-hours, cold starts.

    JSON: one object for one policy, a list for several.
    """
    from leptonic.core.models import AutoscalingSpec

    opts = options(ctx, output)
    chosen: list[asim.SimPolicy] = []
    for value in policy or ["reactive,predictive"]:
        for name in (v.strip().lower() for v in value.split(",") if v.strip()):
            if name == "all":
                chosen += [p for p in asim.SimPolicy if p not in chosen]
            elif name in {p.value for p in asim.SimPolicy}:
                if asim.SimPolicy(name) not in chosen:
                    chosen.append(asim.SimPolicy(name))
            else:
                raise InvalidInput(f"unknown policy {name!r}: choose from "
                                   f"{_AUTOSCALE_POLICIES} or all")
    if min_replicas > max_replicas:
        raise InvalidInput(f"--min-replicas {min_replicas} is above --max-replicas "
                           f"{max_replicas}")
    work = load_work(trace, service, seed)
    spec = AutoscalingSpec(min_replicas=min_replicas, max_replicas=max_replicas,
                           target_concurrency=target)
    name = Path(trace.partition(":")[2]).name
    results = [asim.replay(work, p, spec, startup_s=startup, slo_ms=slo_ms, trace=name)
               for p in chosen]
    if opts.json:
        docs = [r.to_dict(series=series) for r in results]
        print_json(docs[0] if len(docs) == 1 else docs)
    else:
        console().print(autoscale_table(results))
