"""The replay clock on small synthetic traces whose energy, waits and active nodes are
known by hand."""

from __future__ import annotations

import pytest

from leptonic.core.power import NodePower, PowerModel
from leptonic.core.scheduler import NodeSpec, Policy, Request
from leptonic.simulate import schedule
from leptonic.simulate.schedule import Arrival
from leptonic.simulate.traces import TraceNode, TracePod

#: 100 W idle, 200 W at full CPU; 10 W in standby; 45 s to wake
POWER = NodePower(PowerModel.linear(100.0, 200.0), standby_w=10.0, wake_s=45.0)
KWH = 3.6e6
HOUR = 3600.0


def node(name: str, cpu: float = 4.0, gpus: int = 0) -> NodeSpec:
    return NodeSpec(name, cpu=cpu, memory_mb=16384, gpus=gpus, gpu_model="A100" if gpus else None,
                    power=POWER if not gpus else None)


def pod(owner: str, at: float, duration: float | None, cpu: float = 1.0,
        gpu: float = 0.0) -> Arrival:
    return Arrival(at, Request(owner, cpu=cpu, memory_mb=1024, gpu=gpu), duration)


@pytest.mark.parametrize(("policy", "active", "watts"), [
    # two pods of 1 CPU on two 4-CPU nodes; the empty node sleeps at once
    (Policy.PACK, 1.0, 150.0 + 10.0),
    (Policy.ENERGY, 1.0, 150.0 + 10.0),
    (Policy.RAY_HYBRID, 1.0, 150.0 + 10.0),
    (Policy.SPREAD, 2.0, 125.0 * 2),
])
def test_packing_keeps_one_node_awake(policy: Policy, active: float, watts: float) -> None:
    work = [pod("a", 0.0, 10 * HOUR), pod("b", 0.0, 10 * HOUR)]
    r = schedule.replay([node("n1"), node("n2")], work, policy, standby_after_s=0.0)
    assert (r.pods, r.placed, r.unscheduled, r.wakes) == (2, 2, 0, 0)
    assert r.mean_active_nodes == pytest.approx(active)
    assert r.energy_kwh == pytest.approx(watts * 10 * HOUR / KWH, abs=1e-6)
    assert r.max_wait_s == 0.0
    assert r.horizon_s == 10 * HOUR


def test_energy_beats_spread_by_the_standby_of_the_node_it_spares() -> None:
    work = [pod("a", 0.0, 10 * HOUR), pod("b", 0.0, 10 * HOUR)]
    spread, energy = schedule.compare([node("n1"), node("n2")], work,
                                      [Policy.SPREAD, Policy.ENERGY], standby_after_s=0.0)
    assert spread.energy_kwh - energy.energy_kwh == pytest.approx(0.9, abs=1e-6)


def test_a_pod_that_does_not_fit_waits_for_capacity() -> None:
    work = [pod("big", 0.0, 100.0, cpu=3.0), pod("next", 10.0, 50.0, cpu=2.0),
            pod("huge", 20.0, 10.0, cpu=5.0), pod("late", 30.0, 200.0, cpu=1.0)]
    r = schedule.replay([node("n1")], work, Policy.PACK, standby_after_s=None)
    # "next" starts when "big" leaves at 100 s; "late" fits beside "big" at once; "huge"
    # is larger than any node and is never placed
    assert (r.pods, r.placed, r.unscheduled) == (4, 3, 1)
    assert r.max_wait_s == 90.0
    assert r.mean_wait_s == 30.0
    # 0-10 s: 3 CPU of 4; 10-30: the same ("next" waits); 30-100: 4 of 4; 100-230: 3 of 4
    # ("next" to 150 s, "late" to 230 s: 150-230 at 1 of 4)
    joules = 30 * 175 + 70 * 200 + 50 * 175 + 80 * 125
    assert r.horizon_s == 230.0
    assert r.energy_kwh == pytest.approx(joules / KWH, abs=1e-6)


def test_queue_is_retried_only_for_pods_a_freed_node_could_take() -> None:
    small = [pod(f"s{i}", float(i), 5.0, cpu=0.5) for i in range(20)]
    work = [pod("huge", 0.0, 1.0, cpu=8.0), *small]
    r = schedule.replay([node("n1")], work, Policy.SPREAD, standby_after_s=None)
    assert r.unscheduled == 1
    # one decision per arrival: the departures never retry "huge", which no node fits
    assert r.decisions == len(work)


def test_queue_is_fifo_and_backfills() -> None:
    work = [pod("first", 0.0, 100.0, cpu=4.0), pod("wide", 1.0, 10.0, cpu=3.0),
            pod("narrow", 2.0, 10.0, cpu=1.0)]
    r = schedule.replay([node("n1")], work, Policy.PACK, standby_after_s=None)
    # both wait for "first"; at 100 s the head ("wide") goes first, "narrow" beside it
    assert (r.placed, r.unscheduled) == (3, 0)
    assert r.max_wait_s == 99.0
    assert r.mean_wait_s == pytest.approx((0 + 99 + 98) / 3, abs=1e-3)


def test_whole_gpus_wait_for_shared_ones_to_leave() -> None:
    gpu_node = node("g1", cpu=32.0, gpus=2)
    work = [pod("share-a", 0.0, 100.0, gpu=0.5), pod("share-b", 0.0, 50.0, gpu=0.5),
            pod("two", 1.0, 10.0, gpu=2.0)]
    r = schedule.replay([gpu_node], work, Policy.ENERGY, standby_after_s=None)
    # best fit puts both shares on one GPU, yet two whole GPUs are free only at 100 s
    assert (r.placed, r.unscheduled) == (3, 0)
    assert r.max_wait_s == 99.0


def test_standby_and_wake_up_delay() -> None:
    work = [pod("p", 1000.0, 1000.0)]
    r = schedule.replay([node("n1")], work, Policy.ENERGY, standby_after_s=60.0,
                        until_s=3000.0)
    # 0-60 s idle (100 W), 60-1000 standby (10 W), 1000-1045 waking at idle power,
    # 1045-2045 running 1 of 4 CPUs (125 W), 2045-2105 idle, then standby to 3000 s
    joules = 60 * 100 + 940 * 10 + 45 * 100 + 1000 * 125 + 60 * 100 + 895 * 10
    assert r.wakes == 1
    assert r.max_wait_s == 45.0
    assert r.energy_kwh == pytest.approx(joules / KWH, abs=1e-6)
    assert r.mean_active_nodes == pytest.approx((60 + 45 + 1000 + 60) / 3000, abs=1e-3)


def test_work_on_a_waking_node_starts_when_it_is_awake() -> None:
    work = [pod("first", 1000.0, 500.0), pod("second", 1020.0, 500.0)]
    r = schedule.replay([node("n1")], work, Policy.PACK, standby_after_s=60.0)
    assert r.wakes == 1
    assert r.max_wait_s == 45.0
    assert r.mean_wait_s == pytest.approx((45 + 25) / 2)


def test_no_standby_keeps_every_node_awake() -> None:
    r = schedule.replay([node("n1"), node("n2")], [pod("p", 0.0, HOUR)], Policy.PACK,
                        standby_after_s=None)
    assert r.mean_active_nodes == 2.0
    assert r.energy_kwh == pytest.approx((125 + 100) * HOUR / KWH, abs=1e-6)


def test_series_samples_the_whole_trace() -> None:
    work = [pod("a", 0.0, 1000.0), pod("b", 500.0, 1000.0)]
    r = schedule.replay([node("n1"), node("n2")], work, Policy.SPREAD, standby_after_s=0.0,
                        samples=16)
    s = r.series
    assert len(s.t_s) == len(s.active_nodes) == len(s.power_w) == len(s.waiting) == 16
    assert s.t_s[0] == 0.0
    assert s.t_s[-1] == pytest.approx(1500.0)
    assert max(s.active_nodes) == 2
    assert "series" not in r.to_dict()
    assert set(r.to_dict(series=True)["series"]) == {"t_s", "active_nodes", "power_w",
                                                      "waiting"}


def test_a_pod_without_deletion_runs_to_the_end() -> None:
    work = [pod("forever", 0.0, None), pod("short", 0.0, 100.0)]
    r = schedule.replay([node("n1")], work, Policy.PACK, standby_after_s=None)
    assert r.horizon_s == 100.0
    assert r.energy_kwh == pytest.approx(150 * 100 / KWH, abs=1e-6)


def test_trace_records_convert() -> None:
    specs = schedule.node_specs([TraceNode("n", 96.0, 1024.0, 8, "V100M32")])
    assert specs == [NodeSpec("n", 96.0, 1024.0, 8, "V100M32")]
    pods = [TracePod("late", 1.0, 512.0, 1, 250, ("T4",), creation_s=50.0, deletion_s=80.0,
                     scheduled_s=60.0),
            TracePod("early", 2.0, 256.0, creation_s=10.0)]
    assert schedule.arrivals(pods) == [
        Arrival(10.0, Request("early", 2.0, 256.0), None),
        Arrival(50.0, Request("late", 1.0, 512.0, 0.25, ("T4",)), 20.0)]
    assert len(schedule.arrivals(pods, limit=1)) == 1


def test_bad_standby_is_refused() -> None:
    with pytest.raises(ValueError, match="standby after -1"):
        schedule.replay([node("n1")], [], Policy.PACK, standby_after_s=-1.0)


def test_empty_trace() -> None:
    r = schedule.replay([node("n1")], [], Policy.ENERGY, standby_after_s=None)
    assert (r.pods, r.placed, r.unscheduled, r.energy_kwh) == (0, 0, 0, 0.0)


def test_a_pod_of_no_duration_frees_its_room_at_once() -> None:
    work = [pod("long", 0.0, 10.0, cpu=4.0), pod("blink", 1.0, 0.0, cpu=4.0),
            pod("waits", 2.0, 5.0, cpu=4.0)]
    r = schedule.replay([node("n1")], work, Policy.PACK, standby_after_s=None)
    # at 10 s "long" leaves, "blink" takes its room and leaves the same instant, and the
    # queue is retried once more for "waits"
    assert (r.placed, r.unscheduled) == (3, 0)
    assert r.max_wait_s == 9.0
    assert r.mean_wait_s == pytest.approx((0 + 9 + 8) / 3, abs=1e-3)
