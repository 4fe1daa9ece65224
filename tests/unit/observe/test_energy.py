"""Live energy accounting: the RAPL reader on a fake sysfs tree, a node's draw from its
model, Kepler's split over replicas, the trapezoid integration, persisted totals and the
/metrics families."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from leptonic.core.models import Node, Replica, ReplicaState, Resources
from leptonic.core.power import NodePower, PowerModel, node_power
from leptonic.observe.energy import (
    Energy,
    EnergyCollector,
    Holder,
    Integrator,
    NodeDraw,
    RaplMeter,
    attribute,
    counter_increase,
    node_draw,
    rapl_delta_uj,
    rapl_zones,
    utilisation,
)
from leptonic.store.energy import EnergyStore
from leptonic.store.store import Store

MAX = 262143328850


def zone(root: Path, name: str, label: str, uj: int, max_uj: int = MAX) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_uj(zone_dir: Path, uj: int) -> None:
    (zone_dir / "energy_uj").write_text(f"{uj}\n")


# -- RAPL ------------------------------------------------------------------------------------

def test_rapl_counts_packages_not_their_subzones_nor_the_mmio_copy(tmp_path: Path) -> None:
    (tmp_path / "intel-rapl").mkdir()                      # the control type: no counter
    zone(tmp_path, "intel-rapl:0", "package-0", 1_000)
    zone(tmp_path, "intel-rapl:0:0", "core", 500)          # inside package-0
    zone(tmp_path, "intel-rapl:0:1", "dram", 300)
    zone(tmp_path, "intel-rapl:1", "package-1", 2_000)
    zone(tmp_path, "intel-rapl-mmio:0", "package-0", 1_000)    # package-0 again
    assert [z.name for z in rapl_zones(tmp_path)] == ["package-0", "package-1"]


def test_rapl_prefers_psys_which_covers_the_packages(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", 1)
    zone(tmp_path, "intel-rapl:1", "psys", 1)
    assert [z.name for z in rapl_zones(tmp_path)] == ["psys"]


def test_no_rapl_or_unreadable_counters_mean_none(tmp_path: Path) -> None:
    assert rapl_zones(tmp_path / "missing") == []
    d = zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (d / "energy_uj").unlink()
    (d / "energy_uj").mkdir()                   # reading it fails as root-only files do
    assert rapl_zones(tmp_path) == []
    assert RaplMeter(tmp_path).read(1.0) is None


@pytest.mark.parametrize(("before", "after", "max_uj", "delta"), [
    (1_000, 6_000, 10_000, 5_000),
    (9_000, 1_000, 10_000, 2_000),              # wrapped once
    (5_000, 5_000, 10_000, 0),
])
def test_rapl_delta_across_the_wrap(before: int, after: int, max_uj: int, delta: int) -> None:
    assert rapl_delta_uj(before, after, max_uj) == delta


def test_rapl_meter_gives_mean_watts_between_reads(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000, max_uj=100_000_000)
    p1 = zone(tmp_path, "intel-rapl:1", "package-1", 99_000_000, max_uj=100_000_000)
    meter = RaplMeter(tmp_path)
    assert meter.available
    assert meter.read(10.0) is None                         # the first read has no delta
    set_uj(p0, 51_000_000)                                  # +50 J
    set_uj(p1, 29_000_000)                                  # +30 J, across the wrap
    assert meter.read(12.0) == pytest.approx(40.0)          # 80 J over 2 s
    set_uj(p0, 51_000_000)
    set_uj(p1, 29_000_000)
    assert meter.read(14.0) == pytest.approx(0.0)


# -- a node's draw and its split ---------------------------------------------------------------

def mk_node(name: str = "n1", cpu: float = 32.0, gpu: float = 0.0, alloc_cpu: float = 0.0,
            alloc_gpu: float = 0.0, **kw: object) -> Node:
    return Node(name=name, capacity={"cpu": cpu, "memory_mb": 0.0, "gpu": gpu},
                allocated={"cpu": alloc_cpu, "memory_mb": 0.0, "gpu": alloc_gpu}, **kw)


@pytest.mark.parametrize(("alloc_cpu", "alloc_gpu", "cpu", "gpus"), [
    (0.0, 0.0, 0.0, [0.0, 0.0, 0.0, 0.0]),
    (16.0, 2.5, 0.5, [1.0, 1.0, 0.5, 0.0]),
    (64.0, 4.0, 1.0, [1.0, 1.0, 1.0, 1.0]),
])
def test_utilisation_is_what_replicas_hold(alloc_cpu: float, alloc_gpu: float, cpu: float,
                                           gpus: list[float]) -> None:
    assert utilisation(mk_node(gpu=4.0, alloc_cpu=alloc_cpu, alloc_gpu=alloc_gpu)) == (
        cpu, gpus)


LINEAR = NodePower(PowerModel.linear(100.0, 200.0), PowerModel.linear(50.0, 400.0), 2,
                   standby_w=8.0)


@pytest.mark.parametrize(("node", "measured", "watts", "idle", "source"), [
    (mk_node(gpu=2.0), None, 100.0 + 2 * 50.0, 200.0, "model"),
    (mk_node(gpu=2.0, alloc_cpu=16.0, alloc_gpu=1.0), None, 150.0 + 400.0 + 50.0, 200.0,
     "model"),
    (mk_node(gpu=2.0, alloc_cpu=32.0), 180.0, 180.0 + 100.0, 200.0, "rapl"),
    (mk_node(gpu=2.0), 60.0, 60.0 + 100.0, 160.0, "rapl"),     # measured below model idle
    (mk_node(gpu=2.0, alloc_cpu=32.0, status="Standby"), None, 8.0, 8.0, "model"),
    (mk_node(gpu=2.0, standby=True), 50.0, 8.0, 8.0, "model"),     # RAPL or not
])
def test_node_draw(node: Node, measured: float | None, watts: float, idle: float,
                   source: str) -> None:
    d = node_draw(node, LINEAR, measured)
    assert (d.watts, d.idle_w, d.source) == (pytest.approx(watts), pytest.approx(idle), source)


def test_node_draw_of_the_defaults_is_the_node_power_model() -> None:
    n = mk_node(cpu=16.0, gpu=2.0, alloc_cpu=4.0, alloc_gpu=1.5, gpu_model="H100")
    p = node_power(n)
    assert node_draw(n, p).watts == pytest.approx(p.watts(0.25, [1.0, 0.5]))


@pytest.mark.parametrize(("draw", "holders", "split"), [
    # dynamic CPU power (50 W) by CPU requests 3:1; idle (100 W) not attributed
    (NodeDraw("n", 150.0, 100.0), [Holder("a", 3.0), Holder("b", 1.0)],
     {"a": 37.5, "b": 12.5}),
    # two replicas of one deployment add up
    (NodeDraw("n", 150.0, 100.0), [Holder("a", 1.0), Holder("a", 1.0), Holder("b", 2.0)],
     {"a": 25.0, "b": 25.0}),
    # nothing requests CPU (RAPL measured above idle): evenly
    (NodeDraw("n", 160.0, 100.0, source="rapl"), [Holder("a"), Holder("b"), Holder("c")],
     {"a": 20.0, "b": 20.0, "c": 20.0}),
    # GPU dynamic power by GPU requests, CPU by CPU requests
    (NodeDraw("n", 120.0, 100.0, 450.0, 100.0), [Holder("a", 1.0, 1.0), Holder("b", 1.0, 0.0)],
     {"a": 10.0 + 350.0, "b": 10.0}),
    # idle node: nothing to attribute, but its replicas are listed at 0
    (NodeDraw("n", 100.0, 100.0), [Holder("a", 1.0)], {"a": 0.0}),
    (NodeDraw("n", 100.0, 100.0), [], {}),
    (NodeDraw("n", 8.0, 8.0, standby=True), [Holder("a", 1.0)], {"a": 0.0}),
])
def test_attribution_splits_the_dynamic_power(draw: NodeDraw, holders: list[Holder],
                                              split: dict[str, float]) -> None:
    got = attribute(draw, holders)
    assert got == pytest.approx(split)
    if holders and not draw.standby:
        assert sum(got.values()) + draw.idle_w == pytest.approx(draw.watts)


# -- integration ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("steps", "joules"), [
    ([(0.0, 100.0), (10.0, 100.0)], 1000.0),
    ([(0.0, 100.0), (10.0, 200.0)], 1500.0),                   # trapezoid
    ([(0.0, 100.0), (10.0, 100.0), (20.0, 300.0)], 1000.0 + 2000.0),
    ([(0.0, 100.0), (1000.0, 100.0), (1010.0, 100.0)], 1000.0),   # the gap is skipped
    ([(0.0, 100.0)], 0.0),
    ([(10.0, 100.0), (10.0, 100.0)], 0.0),                     # no time passed
])
def test_integrator_trapezoid(steps: list[tuple[float, float]], joules: float) -> None:
    it = Integrator(max_gap_s=60.0)
    for now, w in steps:
        it.advance(now, {("node", "n"): w})
    assert it.totals[("node", "n")] == pytest.approx(joules)


def test_a_key_that_goes_away_keeps_its_total_and_starts_afresh() -> None:
    it = Integrator(totals={("deployment", "a"): 5.0})
    it.advance(0.0, {("deployment", "a"): 10.0})
    it.advance(1.0, {("deployment", "a"): 10.0})
    it.advance(2.0, {})                                 # gone
    it.advance(3.0, {("deployment", "a"): 10.0})        # back: nothing for 1..3
    it.advance(4.0, {("deployment", "a"): 10.0})
    assert it.totals[("deployment", "a")] == pytest.approx(5.0 + 10.0 + 10.0)


@pytest.mark.parametrize(("values", "inc"), [
    ([1.0, 2.0, 4.0], 3.0),
    ([None, 1.0, None, 3.0], 2.0),
    ([10.0, 9.5, 12.0], 2.5),              # a restart lost 0.5 J: not a reset from 0
    ([], 0.0),
])
def test_counter_increase(values: list[float | None], inc: float) -> None:
    assert counter_increase(values) == pytest.approx(inc)


# -- the accounting of a cycle ------------------------------------------------------------------

def replica(rid: str, dep: str, node: str, cpu: float,
            state: ReplicaState = ReplicaState.READY) -> Replica:
    return Replica(id=rid, deployment=dep, node=node, state=state,
                   resources=Resources(cpu=cpu))


def cluster() -> tuple[list[Node], list[Replica]]:
    override = {"idle_w": 100.0, "max_w": 200.0}
    nodes = [mk_node("n1", cpu=10.0, alloc_cpu=5.0, power=override),
             mk_node("n2", cpu=10.0, power=override),
             mk_node("n3", cpu=10.0, alloc_cpu=10.0, alive=False, power=override)]
    replicas = [replica("a-1", "a", "n1", 4.0), replica("b-1", "b", "n1", 1.0),
                replica("b-2", "b", "n3", 10.0),
                replica("b-3", "b", "n1", 3.0, ReplicaState.STOPPED)]
    return nodes, replicas


def test_a_cycle_accounts_nodes_and_deployments(tmp_path: Path) -> None:
    energy = Energy(None, rapl=RaplMeter(tmp_path / "none"))
    nodes, replicas = cluster()
    energy.tick(0.0, nodes, replicas)
    samples = energy.tick(10.0, nodes, replicas)
    # n1 at 50%: 150 W, 50 W dynamic split 4:1; n2 idle; n3 down: not accounted
    assert samples["node/n1"] == pytest.approx({"node_power_watts": 150.0,
                                                "node_energy_joules": 1500.0})
    assert samples["node/n2"] == pytest.approx({"node_power_watts": 100.0,
                                                "node_energy_joules": 1000.0})
    assert "node/n3" not in samples
    assert samples["deployment/a"] == pytest.approx({"power_watts": 40.0,
                                                     "energy_joules": 400.0})
    assert samples["deployment/b"] == pytest.approx({"power_watts": 10.0,
                                                     "energy_joules": 100.0})
    assert energy.snapshot.nodes["n1"].source == "override"


def test_the_local_node_is_measured_by_rapl(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    energy = Energy(None, local_node="n1", rapl=RaplMeter(tmp_path))
    nodes, replicas = cluster()
    energy.tick(0.0, nodes, replicas)            # first read: the model meanwhile
    assert energy.snapshot.nodes["n1"].source == "override"
    set_uj(p0, 1_800_000_000)                    # 1800 J in 10 s: 180 W
    energy.tick(10.0, nodes, replicas)
    n1 = energy.snapshot.nodes["n1"]
    assert (n1.source, n1.watts) == ("rapl", pytest.approx(180.0))
    assert energy.snapshot.nodes["n2"].source == "override"       # not the local node
    # 80 W above the model's idle, split 4:1 by CPU requests
    assert energy.snapshot.deployments["a"][0] == pytest.approx(64.0)


def test_totals_are_persisted_and_taken_up_again(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'leptonic.db'}")
    store.migrate()
    nodes, replicas = cluster()
    first = Energy(store, rapl=RaplMeter(tmp_path / "none"), flush_s=5.0)
    first.tick(0.0, nodes, replicas)
    first.tick(10.0, nodes, replicas)                        # flushed (>= 5 s)
    assert EnergyStore(store).totals()[("node", "n1")] == pytest.approx(1500.0)
    first.tick(12.0, nodes, replicas)                        # not flushed yet
    assert EnergyStore(store).totals()[("node", "n1")] == pytest.approx(1500.0)
    # a restart: the totals go on from the store, the gap is not integrated
    second = Energy(store, rapl=RaplMeter(tmp_path / "none"))
    assert second.totals()[("deployment", "a")] == pytest.approx(400.0)
    second.tick(20.0, nodes, replicas)
    second.tick(30.0, nodes, replicas)
    assert second.snapshot.nodes["n1"].joules == pytest.approx(3000.0)
    store.close()


def test_collector_serves_watts_joules_and_source(tmp_path: Path) -> None:
    energy = Energy(None, rapl=RaplMeter(tmp_path / "none"))
    registry = CollectorRegistry()
    registry.register(EnergyCollector(energy))
    nodes, replicas = cluster()
    energy.tick(0.0, nodes, replicas)
    energy.tick(10.0, nodes, replicas)
    fams = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode())}
    assert fams["leptonic_node_energy_joules"].type == "counter"
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in fams.values() for s in f.samples}
    assert values[("leptonic_node_power_watts", (("node", "n1"),))] == 150.0
    assert values[("leptonic_node_energy_joules_total", (("node", "n2"),))] == 1000.0
    assert values[("leptonic_node_power_source", (("node", "n1"), ("source", "override")))] == 1
    assert values[("leptonic_deployment_power_watts", (("deployment", "a"),))] == 40.0
    assert values[("leptonic_deployment_energy_joules_total", (("deployment", "b"),))] == 100.0


def test_a_stored_override_that_no_longer_validates_falls_back_to_the_defaults(
        tmp_path: Path) -> None:
    energy = Energy(None, rapl=RaplMeter(tmp_path / "none"))
    bad = mk_node("n1", power={"table": [1.0, 0.0]})
    energy.tick(0.0, [bad], [])
    assert energy.snapshot.nodes["n1"].source == "model"
    assert energy.snapshot.nodes["n1"].watts == pytest.approx(node_power(
        mk_node("n1")).watts(0.0))


def test_after_a_stop_the_next_cycle_starts_from_the_store(tmp_path: Path) -> None:
    """Another control plane may have led (and accounted) while this one did not."""
    store = Store(f"sqlite:///{tmp_path / 'leptonic.db'}")
    store.migrate()
    nodes, replicas = cluster()
    energy = Energy(store, rapl=RaplMeter(tmp_path / "none"))
    energy.tick(0.0, nodes, replicas)
    energy.tick(2.0, nodes, replicas)                   # 300 J on n1, not flushed yet
    energy.stop(3.0)                                    # flushed on the way out
    assert EnergyStore(store).totals()[("node", "n1")] == pytest.approx(300.0)
    EnergyStore(store).save({("node", "n1"): 1000.0}, 20.0)     # the other leader's
    assert energy.totals()[("node", "n1")] == pytest.approx(1000.0)
    energy.tick(21.0, nodes, replicas)                  # nothing integrated over 2..21
    energy.tick(22.0, nodes, replicas)
    assert energy.snapshot.nodes["n1"].joules == pytest.approx(1150.0)
    store.close()
