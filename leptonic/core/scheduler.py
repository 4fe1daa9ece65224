"""Placement of replicas on nodes: filter the nodes that fit, then score those left.

Pure: a snapshot of nodes (with what is allocated on them) and a request in, a node (or the
reasons none fits) out. The filter says, for every node it refuses, why; the reasons of
all refused nodes make the ``Unschedulable`` message a user reads. The default score
spreads a deployment's replicas over nodes (fewest of its replicas first), then prefers the
least allocated node; ties go to the node name, so the same snapshot always gives the same
answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from leptonic.core.models import Node, NodeState, PlacementSpec, Resources, Tier

#: resource keys, as in ``Node.capacity``/``Node.allocated``, with how a user names them
RESOURCE_KEYS = (("cpu", "CPU"), ("memory_mb", "MiB of memory"), ("gpu", "GPU"))
_EPS = 1e-9


@dataclass(frozen=True)
class Request:
    """One replica to place."""

    deployment: str
    resources: Resources = field(default_factory=Resources)
    placement: PlacementSpec = field(default_factory=PlacementSpec)


@dataclass(frozen=True)
class Placement:
    """Where a replica goes, or (``node`` None) why it cannot go anywhere."""

    node: str | None
    reason: str = ""
    refused: Mapping[str, str] = field(default_factory=dict)   # node name -> why not


def wants(resources: Resources) -> dict[str, float]:
    return {"cpu": resources.cpu, "memory_mb": float(resources.memory_mb),
            "gpu": resources.gpu}


def free(node: Node) -> dict[str, float]:
    """Capacity left on ``node`` after what leptonic has allocated there."""
    return {key: node.capacity.get(key, 0.0) - node.allocated.get(key, 0.0)
            for key, _ in RESOURCE_KEYS}


def refusal(node: Node, request: Request) -> str | None:
    """Why ``node`` cannot take the replica, or None if it can."""
    state = node.state()
    if state is not NodeState.READY:
        return {NodeState.NOT_READY: "not ready", NodeState.CORDONED: "cordoned",
                NodeState.DRAINING: "draining"}[state]
    tier = request.placement.tier
    if tier is not Tier.ANY and node.tier != tier.value:
        return f"a {node.tier} node, not {tier.value}"
    for key, value in sorted(request.placement.node_selector.items()):
        if node.labels.get(key) != value:
            return f"no label {key}={value}"
    left = free(node)
    for key, unit in RESOURCE_KEYS:
        need = wants(request.resources)[key]
        if need > left[key] + _EPS:
            return f"{_fmt(left[key])} {unit} free, {_fmt(need)} needed"
    return None


def place(nodes: Sequence[Node], request: Request,
          spread: Mapping[str, int] | None = None) -> Placement:
    """The node for one replica of ``request.deployment``. ``spread`` counts that
    deployment's replicas per node already (soft: a node with more still fits)."""
    spread = spread or {}
    refused: dict[str, str] = {}
    fits: list[Node] = []
    for node in nodes:
        why = refusal(node, request)
        if why is None:
            fits.append(node)
        else:
            refused[node.name] = why
    if not fits:
        return Placement(None, unschedulable(nodes, request, refused), refused)
    best = min(fits, key=lambda n: (spread.get(n.name, 0), _load(n), n.name))
    return Placement(best.name, refused=refused)


def unschedulable(nodes: Sequence[Node], request: Request, refused: Mapping[str, str]
                  ) -> str:
    """``Unschedulable: no ready edge node with 2 CPU free`` and the count of each reason."""
    tier = request.placement.tier
    what = "node" if tier is Tier.ANY else f"{tier.value} node"
    needs = [f"{_fmt(v)} {unit}" for (key, unit), v in
             zip(RESOURCE_KEYS, wants(request.resources).values(), strict=True) if v]
    selector = ", ".join(f"{k}={v}" for k, v in sorted(request.placement.node_selector.items()))
    head = f"Unschedulable: no ready {what}"
    if selector:
        head += f" labelled {selector}"
    if needs:
        head += f" with {' and '.join(needs)} free"
    if not nodes:
        return head + " (there are no nodes)"
    counts = Counter(_kind(why) for why in refused.values())
    return head + " (" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")"


def allocations(requests: Iterable[tuple[str, Resources]]) -> dict[str, dict[str, float]]:
    """Sum (node, resources) pairs of running replicas into allocated-per-node."""
    out: dict[str, dict[str, float]] = {}
    for node, res in requests:
        acc = out.setdefault(node, {"cpu": 0.0, "memory_mb": 0.0, "gpu": 0.0})
        for key, value in wants(res).items():
            acc[key] += value
    return out


def largest(nodes: Sequence[Node]) -> dict[str, float]:
    """The most any one node has of each resource (to refuse requests no node can meet)."""
    out = {key: 0.0 for key, _ in RESOURCE_KEYS}
    for node in nodes:
        for key, _ in RESOURCE_KEYS:
            out[key] = max(out[key], node.capacity.get(key, 0.0))
    return out


def too_large(nodes: Sequence[Node], resources: Resources) -> str | None:
    """Why no node of the cluster could ever hold one replica of ``resources``, if so."""
    if not nodes:
        return None
    big = largest(nodes)
    for key, unit in RESOURCE_KEYS:
        need = wants(resources)[key]
        if need > big[key] + _EPS:
            return (f"a replica asks for {_fmt(need)} {unit}, but the largest node has "
                    f"{_fmt(big[key])}")
    return None


def _load(node: Node) -> float:
    shares = [node.allocated.get(k, 0.0) / node.capacity[k] for k, _ in RESOURCE_KEYS
              if node.capacity.get(k, 0.0) > 0]
    return max(shares, default=0.0)


def _kind(why: str) -> str:
    """A refusal, grouped: ``1 CPU free, 2 needed`` -> ``without enough CPU``."""
    if why.endswith("needed"):
        unit = why.split(" free,")[0].split(" ", 1)[1]
        return f"without enough {unit}"
    if why.startswith("a "):                     # "a datacenter node, not edge"
        return f"in tier {why.split()[1]}"
    return why


def _fmt(value: float) -> str:
    return f"{value:g}"
