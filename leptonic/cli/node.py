"""``leptonic node ...``: the machines replicas run on; cordon, uncordon and drain them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, clock, fields, show, table
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
