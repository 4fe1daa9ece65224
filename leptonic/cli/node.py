"""``leptonic node ...``: the machines replicas run on; cordon, uncordon and drain them;
show and override their power models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, clock, fail, fields, show, table
from leptonic.core.models import Node

app = typer.Typer(help="Nodes: the machines (or Ray nodes) replicas run on, in tiers "
                       "(datacenter, edge).", no_args_is_help=True)

NodeArg = Annotated[str, typer.Argument(help="Node name, or its id (a unique prefix will "
                                             "do).")]


def _num(value: float) -> str:
    return f"{value:g}"


def _used(node: Node, key: str, unit: str = "") -> str:
    """``1.5/8`` (allocated by leptonic's replicas / capacity); empty without capacity."""
    cap = node.capacity.get(key, 0.0)
    if not cap and not node.allocated.get(key):
        return ""
    return f"{_num(node.allocated.get(key, 0.0))}/{_num(cap)}{unit}"


def _memory(node: Node) -> str:
    cap = node.capacity.get("memory_mb", 0.0)
    if not cap:
        return ""
    gib = 1024.0
    return f"{node.allocated.get('memory_mb', 0.0) / gib:.1f}/{cap / gib:.1f}Gi"


def _gpu(node: Node) -> str:
    used = _used(node, "gpu")
    return f"{used} {node.gpu_model}" if used and node.gpu_model else used


def _labels(node: Node) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))


def short_id(node: Node) -> str:
    return node.id[:8]


def nodes_table(nodes: list[Node]) -> object:
    return table(["NAME", "ID", "TIER", "ADDRESS", "STATE", "CPU", "MEMORY", "GPU", "LABELS",
                  "HEARTBEAT"],
                 [(n.name, short_id(n), n.tier, n.address, n.status, _used(n, "cpu"),
                   _memory(n), _gpu(n), _labels(n), age(n.heartbeat_at))
                  for n in nodes])


def node_fields(n: Node) -> object:
    def pair(key: str) -> str:
        return _used(n, key) or "-"

    return fields([
        ("name", n.name), ("id", n.id or "-"), ("tier", n.tier), ("address", n.address or "-"),
        ("state", n.status), ("alive", "yes" if n.alive else "no"),
        ("cordoned", "yes" if n.control.cordoned else "no"),
        ("draining", "yes" if n.control.draining else "no"),
        ("cpu (allocated/capacity)", pair("cpu")),
        ("memory MiB (allocated/capacity)", pair("memory_mb")),
        ("gpu (allocated/capacity)", pair("gpu")), ("gpu model", n.gpu_model or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-"),
        ("heartbeat", f"{clock(n.heartbeat_at)} ({age(n.heartbeat_at)} ago)"
         if n.heartbeat_at else "-"),
    ])


@app.command("list")
def list_(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """All nodes: tier, state, what leptonic's replicas hold of each, labels."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.list_nodes()
    show(opts, found, nodes_table)


@app.command("get")
def get(ctx: typer.Context, node: NodeArg, output: OutputOpt = None, url: UrlOpt = None,
        token: TokenOpt = None) -> None:
    """One node in full."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.get_node(node)
    show(opts, found, node_fields)


def _control(verb: str, done: str) -> Callable[..., None]:
    def command(ctx: typer.Context, node: NodeArg, output: OutputOpt = None,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
        opts = options(ctx, output, url, token)
        with connect(opts) as client:
            found = getattr(client, f"{verb}_node")(node)
        show(opts, found, lambda n: f"node {n.name} {done} (state {n.status})")

    return command


app.command("cordon", help="Place no new replicas on the node; those it runs stay.")(
    _control("cordon", "cordoned"))
app.command("uncordon", help="Let the node take new replicas again (ends a drain too).")(
    _control("uncordon", "uncordoned"))
app.command("drain", help="Cordon the node and move its replicas to other nodes, each "
                          "replaced before it stops, as in a rolling update.")(
    _control("drain", "draining"))


# -- power ------------------------------------------------------------------------------

def _points(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(p) for p in text.replace(" ", "").split(",") if p != ""]
    except ValueError:
        fail(f"{option} takes 11 watts separated by commas (0%, 10%, ..., 100%), not "
             f"{text!r}")


def _w(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f} W"


def power_fields(p: dict[str, Any]) -> object:
    model = p.get("model") or {}
    cpu = model.get("cpu") or {}
    gpu = model.get("gpu") or {}

    def pts(m: dict[str, Any]) -> str:
        return ", ".join(f"{w:g}" for w in m.get("points", [])) or "-"

    return fields([
        ("node", p.get("node")), ("source", p.get("source")), ("watts now", _w(p.get("watts"))),
        ("idle .. max", f"{_w(model.get('idle_w'))} .. {_w(model.get('max_w'))}"),
        ("cpu W at 0..100%", pts(cpu)), ("cpu figures", cpu.get("source") or "-"),
        ("gpus", f"{model.get('gpus', 0)} x [{pts(gpu)}]" if gpu else "-"),
        ("standby", _w(model.get("standby_w"))), ("wake", f"{model.get('wake_s', 0):g} s"),
        ("override", ", ".join(f"{k}={v}" for k, v in (p.get("override") or {}).items())
         or "none (defaults)"),
    ])


@app.command("power")
def power(ctx: typer.Context, node: NodeArg, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """The node's power model, where its watts come from (rapl, override or model) and
    what it draws now."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.node_power(node)
    show(opts, found, power_fields)


@app.command("set-power")
def set_power(
    ctx: typer.Context, node: NodeArg,
    idle: Annotated[float | None, typer.Option("--idle", help="CPU watts at 0% "
                                               "(with --max: a linear model)")] = None,
    max_: Annotated[float | None, typer.Option("--max", help="CPU watts at 100%")] = None,
    table_: Annotated[str | None, typer.Option(
        "--table", help="CPU watts at 0%,10%,...,100% (11 points, rising)")] = None,
    gpu_idle: Annotated[float | None, typer.Option("--gpu-idle", help="watts of one idle "
                                                   "GPU (with --gpu-max)")] = None,
    gpu_max: Annotated[float | None, typer.Option("--gpu-max", help="watts of one GPU "
                                                  "at 100%")] = None,
    gpu_table: Annotated[str | None, typer.Option(
        "--gpu-table", help="watts of one GPU at 0%,10%,...,100% (11 points)")] = None,
    standby: Annotated[float | None, typer.Option("--standby", help="watts in "
                                                  "standby")] = None,
    wake_s: Annotated[float | None, typer.Option("--wake-s", help="seconds to wake from "
                                                 "standby")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="drop the override (with other "
                                        "options: start again from these alone)")] = False,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Override the node's power model; settings not given keep their override."""
    opts = options(ctx, output, url, token)
    given: dict[str, Any] = {
        "idle_w": idle, "max_w": max_, "table": _points(table_, "--table"),
        "gpu_idle_w": gpu_idle, "gpu_max_w": gpu_max,
        "gpu_table": _points(gpu_table, "--gpu-table"), "standby_w": standby,
        "wake_s": wake_s}
    given = {k: v for k, v in given.items() if v is not None}
    if not given and not reset:
        fail("give the watts to set (--idle and --max, or --table; --gpu-*; --standby; "
             "--wake-s), or --reset")
    with connect(opts) as client:
        if not given:
            found = client.reset_node_power(node)
        else:
            merged = {} if reset else dict(client.node_power(node).get("override") or {})
            for prefix in ("", "gpu_"):   # a table replaces idle/max and the other way
                if f"{prefix}table" in given:
                    merged.pop(f"{prefix}idle_w", None)
                    merged.pop(f"{prefix}max_w", None)
                if f"{prefix}idle_w" in given or f"{prefix}max_w" in given:
                    merged.pop(f"{prefix}table", None)
            found = client.set_node_power(node, **{**merged, **given})
    show(opts, found, power_fields)
