"""A node's power: its override validated (naming what is wrong), merged over the defaults
for its cores and GPU model."""

from __future__ import annotations

from typing import Any

import pytest

from leptonic.core.models import Node
from leptonic.core.power import (
    HP_ML110_G5,
    NodePower,
    PowerModelError,
    check_override,
    gpu_power,
    node_power,
)

TABLE = list(HP_ML110_G5.points)


def node(cpu: float = 32.0, gpu: float = 0.0, gpu_model: str | None = None,
         power: dict[str, Any] | None = None) -> Node:
    return Node(name="n1", capacity={"cpu": cpu, "memory_mb": 1024.0, "gpu": gpu},
                gpu_model=gpu_model, power=power)


@pytest.mark.parametrize(("override", "says"), [
    ({"table": TABLE[:10]}, "11 points"),
    ({"table": [*TABLE[:3], -1.0, *TABLE[4:]]}, "point 3 (30%) is -1 W"),
    ({"table": [*TABLE[:5], 100.0, *TABLE[6:]]}, "point 5 (50%) is 100 W, below point 4"),
    ({"gpu_table": [*TABLE[:9], 1.0, TABLE[10]]}, "GPU table: point 9 (90%)"),
    ({"table": ["a"] * 11}, "must be 11 numbers"),
    ({"idle_w": 200.0, "max_w": 100.0}, "idle power 200 W is above max power 100 W"),
    ({"idle_w": -5.0, "max_w": 100.0}, "CPU idle power is -5 W"),
    ({"idle_w": 50.0}, "idle and max watts together"),
    ({"gpu_max_w": 300.0}, "GPU idle and max watts together"),
    ({"idle_w": 50.0, "max_w": 90.0, "table": TABLE}, "not both"),
    ({"standby_w": -1.0}, "standby_w is -1 W"),
    ({"wake_s": -2.0}, "wake_s is -2 s"),
    ({}, "nothing to set"),
    ({"idle_w": None}, "nothing to set"),
    ({"turbo": 1}, "unknown power setting(s) turbo"),
])
def test_bad_overrides_say_what_is_wrong(override: dict[str, Any], says: str) -> None:
    with pytest.raises(PowerModelError) as err:
        check_override(override)
    assert says in str(err.value)


def test_a_good_override_keeps_only_what_was_given() -> None:
    assert check_override({"idle_w": 50, "max_w": 150, "table": None, "standby_w": 4}) == {
        "idle_w": 50, "max_w": 150, "standby_w": 4}


def test_without_an_override_the_defaults_for_cores_and_gpu_model() -> None:
    p = node_power(node(cpu=16.0, gpu=2.0, gpu_model="H100"))
    assert p == NodePower.default(16.0, 2, "H100")
    assert p.source == "model"
    assert p.gpus == 2
    assert p.gpu == gpu_power("H100")
    assert p.idle_w() == pytest.approx(58.4 / 2 + 2 * 70.0)
    assert node_power(node(gpu=0.0, gpu_model="H100")).gpu is None


@pytest.mark.parametrize(("override", "cpu_points", "gpu_max", "standby", "wake", "source"), [
    ({"idle_w": 100.0, "max_w": 200.0}, [100.0 + 10 * i for i in range(11)], 400.0, 10.0,
     45.0, "override"),
    ({"table": TABLE}, TABLE, 400.0, 10.0, 45.0, "override"),
    ({"gpu_idle_w": 30.0, "gpu_max_w": 250.0}, None, 250.0, 10.0, 45.0, "override"),
    ({"standby_w": 3.0, "wake_s": 20.0}, None, 400.0, 3.0, 20.0, "model"),
])
def test_an_override_replaces_only_what_it_sets(
        override: dict[str, Any], cpu_points: list[float] | None, gpu_max: float,
        standby: float, wake: float, source: str) -> None:
    base = NodePower.default(32.0, 1, "A100")
    p = node_power(node(gpu=1.0, gpu_model="A100", power=override))
    assert list(p.cpu.points) == pytest.approx(cpu_points or list(base.cpu.points))
    assert p.gpu is not None
    assert p.gpu.max_w == gpu_max
    assert (p.standby_w, p.wake_s, p.source) == (standby, wake, source)


def test_the_linear_override_is_read_between_its_points() -> None:
    p = node_power(node(power={"idle_w": 100.0, "max_w": 200.0}))
    assert p.watts(0.25) == pytest.approx(125.0)
    assert p.watts(1.5) == pytest.approx(200.0)       # clamped
