"""Placement as tables: which nodes a replica may go to and, when none, why not."""

from __future__ import annotations

import pytest

from leptonic.core.models import Node, NodeControl, PlacementSpec, Resources, Tier
from leptonic.core.scheduler import Request, place, refusal, too_large


def node(name: str, tier: str = "datacenter", cpu: float = 4, mem: float = 8192,
         gpu: float = 0, used: float = 0, alive: bool = True, cordoned: bool = False,
         draining: bool = False, **labels: str) -> Node:
    return Node(name=name, tier=tier, capacity={"cpu": cpu, "memory_mb": mem, "gpu": gpu},
                allocated={"cpu": used, "memory_mb": 0, "gpu": 0}, alive=alive,
                labels={"tier": tier, **labels},
                control=NodeControl(cordoned=cordoned, draining=draining))


def req(cpu: float = 0, mem: int = 0, gpu: float = 0, tier: Tier = Tier.ANY,
        **selector: str) -> Request:
    return Request("d", Resources(cpu=cpu, memory_mb=mem, gpu=gpu),
                   PlacementSpec(tier=tier, node_selector=selector))


@pytest.mark.parametrize(("n", "r", "why"), [
    (node("a"), req(cpu=1), None),
    (node("a", alive=False), req(), "not ready"),
    (node("a", cordoned=True), req(), "cordoned"),
    (node("a", draining=True, cordoned=True), req(), "draining"),
    (node("a", tier="datacenter"), req(tier=Tier.EDGE), "a datacenter node, not edge"),
    (node("a", tier="edge"), req(tier=Tier.EDGE), None),
    (node("a", zone="x"), req(zone="y"), "no label zone=y"),
    (node("a", zone="x"), req(zone="x"), None),
    (node("a", cpu=4, used=3.5), req(cpu=1), "0.5 CPU free, 1 needed"),
    (node("a", cpu=4, used=3), req(cpu=1), None),                 # exactly full fits
    (node("a", mem=512), req(mem=1024), "512 MiB of memory free, 1024 needed"),
    (node("a", gpu=0), req(gpu=0.5), "0 GPU free, 0.5 needed"),
])
def test_refusal(n: Node, r: Request, why: str | None) -> None:
    assert refusal(n, r) == why


def test_spread_first_then_least_loaded_then_name() -> None:
    nodes = [node("b", used=1), node("a", used=2), node("c", used=0)]
    assert place(nodes, req(), {}).node == "c"
    assert place(nodes, req(), {"c": 1}).node == "b"              # spread: c has one
    assert place(nodes, req(), {"c": 1, "b": 1}).node == "a"
    tied = [node("y"), node("x")]
    assert place(tied, req(), {}).node == "x"                     # deterministic


def test_unschedulable_says_what_is_missing_and_why_each_node_was_refused() -> None:
    nodes = [node("dc", tier="datacenter"), node("e1", tier="edge", cpu=1),
             node("e2", tier="edge", alive=False)]
    placed = place(nodes, req(cpu=2, tier=Tier.EDGE), {})
    assert placed.node is None
    assert placed.reason.startswith("Unschedulable: no ready edge node with 2 CPU free")
    assert "1 not ready" in placed.reason
    assert "without enough CPU" in placed.reason
    assert "1 in tier datacenter" in placed.reason
    assert placed.refused == {"dc": "a datacenter node, not edge",
                              "e1": "1 CPU free, 2 needed", "e2": "not ready"}
    assert "there are no nodes" in place([], req(), {}).reason


def test_a_request_no_node_could_ever_hold_names_the_largest_node() -> None:
    nodes = [node("a", cpu=4), node("b", cpu=8, mem=16384)]
    assert too_large(nodes, Resources(cpu=8)) is None
    assert too_large(nodes, Resources(cpu=16)) == \
        "a replica asks for 16 CPU, but the largest node has 8"
    assert "MiB of memory" in (too_large(nodes, Resources(memory_mb=32768)) or "")
    assert too_large([], Resources(cpu=99)) is None
