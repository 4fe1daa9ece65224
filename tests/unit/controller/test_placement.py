"""Replicas on nodes, tick by tick: placement by tier and spread, Unschedulable until a node
fits, a lost node's replicas replaced elsewhere, a drain that never drops below desired."""

from __future__ import annotations

from leptonic.core.models import (
    DeploymentPhase,
    DeploymentSpec,
    Node,
    NodeControl,
    PlacementSpec,
    ProbeSpec,
    ReplicaState,
    Resources,
    Tier,
)
from tests.unit.controller.world import World


def cluster_node(name: str, tier: str, cpu: float = 4) -> Node:
    return Node(name=name, id=f"id-{name}", tier=tier, address=f"10.0.0.{len(name)}",
                capacity={"cpu": cpu, "memory_mb": 8192, "gpu": 0}, labels={"tier": tier})


def deploy(w: World, replicas: int, tier: Tier = Tier.EDGE, cpu: float = 1) -> None:
    w.store.create_deployment("echo", DeploymentSpec(
        photon="builtin:echo", replicas=replicas, probes=ProbeSpec(period_s=1),
        resources=Resources(cpu=cpu), placement=PlacementSpec(tier=tier)))


def nodes_of(w: World, state: ReplicaState | None = ReplicaState.READY) -> list[str]:
    return sorted(r.node for r in w.replicas(state))


async def test_edge_replicas_spread_over_edge_nodes(world: World) -> None:
    w = world
    w.backend.cluster = [cluster_node("head", "datacenter"), cluster_node("e1", "edge"),
                         cluster_node("e2", "edge")]
    deploy(w, 2)
    await w.tick(2)
    assert nodes_of(w) == ["e1", "e2"]
    assert {launch.node for launch in w.backend.started} == {"e1", "e2"}
    stored = {n.name: n for n in w.store.list_nodes()}
    assert stored["e1"].allocated["cpu"] == 1.0
    assert stored["head"].allocated["cpu"] == 0.0


async def test_unschedulable_says_why_and_is_placed_once_a_node_fits(world: World) -> None:
    w = world
    w.backend.cluster = [cluster_node("head", "datacenter")]
    deploy(w, 1)
    await w.tick(2)
    d = w.store.get_deployment("echo")
    assert d.status.phase is DeploymentPhase.UNSCHEDULABLE
    assert d.status.message.startswith("Unschedulable: no ready edge node with 1 CPU free")
    assert w.backend.started == []
    events = [e.reason for e in w.store.list_events("deployment/echo")]
    assert events.count("Unschedulable") == 1          # said once, not every tick
    w.backend.cluster.append(cluster_node("e1", "edge"))
    await w.tick(2)
    assert nodes_of(w) == ["e1"]
    assert w.phase() is DeploymentPhase.READY


async def test_a_lost_node_shows_not_ready_and_its_replicas_move(world: World) -> None:
    w = world
    e1, e2 = cluster_node("e1", "edge"), cluster_node("e2", "edge")
    w.backend.cluster = [e1, e2]
    deploy(w, 2)
    await w.tick(2)
    assert nodes_of(w) == ["e1", "e2"]
    w.backend.cluster = [e1, e2.model_copy(update={"alive": False})]
    await w.tick(3, advance=1.0)
    assert {n.name: n.status for n in w.store.list_nodes()} == {"e1": "Ready",
                                                                "e2": "NotReady"}
    assert nodes_of(w) == ["e1", "e1"]                # both on the surviving edge node
    lost = [e for e in w.store.list_events("deployment/echo") if "NodeLost" in e.message
            or "lost with node e2" in e.message]
    assert lost
    # back again: used again for new replicas
    w.backend.cluster = [e1, e2]
    await w.tick()
    assert {n.name: n.status for n in w.store.list_nodes()}["e2"] == "Ready"


async def test_a_node_the_runtime_forgets_stays_listed_not_ready(world: World) -> None:
    w = world
    w.backend.cluster = [cluster_node("e1", "edge"), cluster_node("e2", "edge")]
    await w.tick()
    w.backend.cluster = w.backend.cluster[:1]
    await w.tick()
    assert {n.name: n.status for n in w.store.list_nodes()} == {"e1": "Ready",
                                                                "e2": "NotReady"}


async def test_drain_moves_replicas_without_dropping_below_desired(world: World) -> None:
    w = world
    w.backend.cluster = [cluster_node("e1", "edge"), cluster_node("e2", "edge"),
                         cluster_node("e3", "edge")]
    deploy(w, 2)
    await w.tick(2)
    before = nodes_of(w)
    drained = before[0]
    w.store.set_node_control(drained, NodeControl(cordoned=True, draining=True))
    ready_counts = []
    for _ in range(6):
        await w.tick()
        ready_counts.append(len(w.replicas(ReplicaState.READY)))
    assert min(ready_counts) >= 2
    after = nodes_of(w)
    assert drained not in after
    assert len(after) == 2
    assert {n.name: n.status for n in w.store.list_nodes()}[drained] == "Draining"


async def test_cordoned_node_keeps_its_replicas_and_takes_no_new_ones(world: World) -> None:
    w = world
    w.backend.cluster = [cluster_node("e1", "edge"), cluster_node("e2", "edge")]
    deploy(w, 1)
    await w.tick(2)
    [where] = nodes_of(w)
    other = "e2" if where == "e1" else "e1"
    w.store.set_node_control(other, NodeControl(cordoned=True))
    d = w.store.get_deployment("echo")
    w.store.update_deployment_spec("echo", d.spec.model_copy(update={"replicas": 2}),
                                   expected_generation=d.generation)
    await w.tick(3)
    assert nodes_of(w) == [where, where]


def _pack(w: World, replicas: int, policy: str = "energy") -> None:
    w.store.create_deployment("echo", DeploymentSpec(
        photon="builtin:echo", replicas=replicas, probes=ProbeSpec(period_s=1),
        resources=Resources(cpu=1),
        placement=PlacementSpec(tier=Tier.ANY, policy=policy)))


async def test_energy_placement_fills_one_node_before_the_next(world: World) -> None:
    w = world
    w.backend.cluster = [cluster_node("n1", "datacenter"), cluster_node("n2", "datacenter")]
    _pack(w, 3)
    await w.tick(3)
    assert nodes_of(w) == ["n1", "n1", "n1"]


async def test_consolidation_moves_replicas_off_a_nearly_empty_node_then_it_stands_by(
        world: World) -> None:
    w = world
    w.controller.consolidator.period_s = 0.0
    w.controller.consolidator.standby_after_s = 5.0
    # servers of 32 cores: emptying one saves its idle draw (58 W by the default model)
    w.backend.cluster = [cluster_node("n1", "datacenter", cpu=32),
                         cluster_node("n2", "datacenter", cpu=32)]
    await w.tick(1)
    w.store.set_node_control("n2", NodeControl(cordoned=True))
    _pack(w, 1)
    await w.tick(3)
    w.store.set_node_control("n2", NodeControl())
    w.store.set_node_control("n1", NodeControl(cordoned=True))
    d = w.store.get_deployment("echo")
    w.store.update_deployment_spec("echo", d.spec.model_copy(update={"replicas": 2}),
                                   expected_generation=d.generation)
    await w.tick(3)
    w.store.set_node_control("n1", NodeControl())
    assert nodes_of(w) == ["n1", "n2"]           # one each: either node could be emptied
    ready = []
    for _ in range(15):
        await w.tick(advance=1.0)
        ready.append(len(w.replicas(ReplicaState.READY)))
    assert min(ready) >= 2                       # a replacement first, then the stop
    assert nodes_of(w) == ["n2", "n2"]
    events = [e.reason for e in w.store.list_events("node/n1")][::-1]    # oldest first
    assert events == ["NodeAdded", "Consolidating", "NodeStandby"], events
    assert {n.name: n.status for n in w.store.list_nodes()} == {"n1": "Standby",
                                                               "n2": "Ready"}
    # standby until something is placed there again: n2 is full, so the next lands on n1
    d = w.store.get_deployment("echo")
    w.store.update_deployment_spec("echo", d.spec.model_copy(update={"replicas": 33}),
                                   expected_generation=d.generation)
    await w.tick(3, advance=0.1)
    assert {n.name: n.status for n in w.store.list_nodes()}["n1"] == "Ready"
    assert "NodeAwake" in [e.reason for e in w.store.list_events("node/n1")]
