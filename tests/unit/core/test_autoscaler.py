"""The autoscaler as a table: spec + previous state + observed load + now -> replicas."""

from __future__ import annotations

import pytest

from leptonic.core.autoscaler import (
    AutoscaleInput,
    Sample,
    autoscale,
    average_in_flight,
    initial_state,
)
from leptonic.core.models import AutoscaleState, AutoscalingSpec

NOW = 1000.0
SPEC = AutoscalingSpec(min_replicas=1, max_replicas=5, target_concurrency=2,
                       upscale_delay_s=30, downscale_delay_s=600, look_back_s=30,
                       scale_to_zero_after_s=300)
ZERO = SPEC.model_copy(update={"min_replicas": 0})


def state(replicas: int, proposal: int | None = None, since: float | None = None,
          active: float = NOW) -> AutoscaleState:
    return AutoscaleState(replicas=replicas, proposal=replicas if proposal is None else proposal,
                          proposal_since=since, last_active_at=active)


def flat(load: float, seconds: float = 30) -> list[Sample]:
    return [Sample(NOW - t, load) for t in range(int(seconds) + 1)]


CASES = [
    # name, spec, state, samples, waiting, active, expected replicas
    ("steady at target", SPEC, state(2), flat(4), 0, True, 2),
    ("more load: waits for the upscale delay", SPEC, state(2), flat(9), 0, True, 2),
    ("more load for the whole delay: scales up", SPEC, state(2, 5, NOW - 30), flat(9), 0,
     True, 5),
    ("scales up to what the load asks now, not when it started", SPEC,
     state(2, 5, NOW - 31), flat(6), 0, True, 3),
    ("capped at max_replicas", SPEC, state(2, 5, NOW - 40), flat(100), 0, True, 5),
    ("less load: waits for the downscale delay", SPEC, state(4, 1, NOW - 599), flat(1), 0,
     True, 4),
    ("less load for the whole delay: scales down", SPEC, state(4, 1, NOW - 600), flat(1), 0,
     True, 1),
    ("a flip in direction restarts the delay", SPEC, state(2, 1, NOW - 500), flat(9), 0,
     True, 2),
    ("never below min_replicas", SPEC, state(1), flat(0), 0, False, 1),
    ("light traffic keeps one replica at min 0", ZERO, state(1, active=NOW - 299), flat(0),
     0, False, 1),
    ("idle past the period goes to zero", ZERO, state(1, active=NOW - 301), flat(0), 0,
     False, 0),
    ("idle from three replicas goes straight to zero", ZERO,
     state(3, active=NOW - 301), flat(0), 0, False, 0),
    ("a waiting request scales from zero at once", ZERO, state(0, active=NOW - 900), [], 1,
     True, 1),
    ("a burst of waiting requests from zero", ZERO, state(0, active=NOW - 900),
     [Sample(NOW, 7)], 7, True, 4),
    ("no samples and no requests keep zero at zero", ZERO, state(0, active=NOW - 900), [], 0,
     False, 0),
    ("max lowered by the user applies at once", SPEC, state(8), flat(100), 0, True, 5),
    ("min raised by the user applies at once",
     SPEC.model_copy(update={"min_replicas": 3}), state(1), flat(0), 0, False, 3),
]


@pytest.mark.parametrize(("spec", "st", "samples", "waiting", "active", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_autoscale(spec: AutoscalingSpec, st: AutoscaleState, samples: list[Sample],
                   waiting: int, active: bool, expected: int) -> None:
    d = autoscale(AutoscaleInput(spec, st, samples, waiting, active, NOW))
    assert d.replicas == expected
    assert d.state.replicas == expected
    assert bool(d.reason) == (expected != st.replicas)


def test_delay_is_remembered_between_decisions() -> None:
    """Walk time forward: a sustained rise is acted on exactly after the upscale delay."""
    st = state(1)
    replicas = []
    for t in range(0, 41, 5):
        d = autoscale(AutoscaleInput(SPEC, st, [Sample(NOW + t, 6)], 0, True, NOW + t))
        st = d.state
        replicas.append(d.replicas)
    assert replicas == [1, 1, 1, 1, 1, 1, 3, 3, 3]


def test_average_uses_only_the_look_back_window() -> None:
    samples = [Sample(NOW - 100, 50), Sample(NOW - 10, 2), Sample(NOW, 4)]
    assert average_in_flight(samples, NOW, 30) == 3
    assert average_in_flight([], NOW, 30) == 0


def test_initial_state_starts_one_even_at_min_zero() -> None:
    assert initial_state(ZERO, NOW).replicas == 1
    assert initial_state(SPEC.model_copy(update={"min_replicas": 3}), NOW).replicas == 3
