"""The autoscaler as a table: spec + previous state + observed load + now -> replicas."""

from __future__ import annotations

import pytest

from leptonic.core import autoscaler
from leptonic.core.autoscaler import (
    AutoscaleInput,
    PredictiveInput,
    Sample,
    autoscale,
    average_in_flight,
    initial_state,
    predictive,
    replicas_for,
)
from leptonic.core.forecast import Forecast, KeepAlive
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


# -- predictive ----------------------------------------------------------------------------

def forecast(rate: float, usable: bool = True, at: float = NOW - 5, later: float | None = None,
             mape: float = 0.1) -> Forecast:
    """A forecast of ``rate`` for the next interval (and ``later`` for the one after)."""
    rates = (rate,) if later is None else (rate, later)
    return Forecast(at=at, interval_s=10, rates=rates, upper=rates, period_s=60, mape=mape,
                    usable=usable, reason="test" if usable else "history too short")


PRED = SPEC.model_copy(update={"policy": "predictive"})
PZERO = PRED.model_copy(update={"min_replicas": 0, "scale_to_zero_after_s": 600})
IDLE = KeepAlive(prewarm_s=0.0, keep_alive_s=120.0, gaps=40)
PREWARM = KeepAlive(prewarm_s=300.0, keep_alive_s=900.0, gaps=40)

P_CASES = [
    # name, spec, state, samples, forecast, service_s, idle, expected replicas
    ("no forecast: reactive", PRED, state(2), flat(4), None, 1.0, None, 2),
    ("unusable forecast: reactive", PRED, state(2), flat(4), forecast(100, usable=False),
     1.0, None, 2),
    ("forecast above the load: scales up at once, no upscale delay", PRED, state(2),
     flat(4), forecast(8), 1.0, None, 4),
    ("forecast below the load: the reactive count", PRED, state(2), flat(4), forecast(1),
     1.0, None, 2),
    ("forecast needs replicas by its service time", PRED, state(1), flat(1), forecast(2),
     3.0, None, 3),
    ("no request timed yet: reactive", PRED, state(2), flat(4), forecast(100), None, None,
     2),
    ("forecast capped at max_replicas", PRED, state(2), flat(4), forecast(1000), 1.0, None,
     5),
    ("a forecast drop waits for the downscale delay", PRED, state(5, 5), flat(2),
     forecast(1), 1.0, None, 5),
    ("the peak by now + startup counts, not only the next interval", PRED, state(1),
     flat(1), forecast(1, later=10), 1.0, None, 5),
    ("keep-alive from the idle gaps: zero sooner than the fixed period", PZERO,
     state(1, active=NOW - 121), flat(0), None, 1.0, IDLE, 0),
    ("within the keep-alive: stays up", PZERO, state(1, active=NOW - 100), flat(0), None,
     1.0, IDLE, 1),
    ("the idle gaps do not apply above min 0", PRED, state(1, active=NOW - 5000), flat(0),
     None, 1.0, IDLE, 1),
    ("long pre-warm window: goes to zero right after the requests", PZERO,
     state(1, active=NOW - 20), flat(0), None, 1.0, PREWARM, 0),
    ("in the pre-warm window: back to one before the next request", PZERO,
     state(0, active=NOW - 299), [], None, 1.0, PREWARM, 1),
    ("past the keep-alive: zero", PZERO, state(1, active=NOW - 901), [], None, 1.0, PREWARM,
     0),
    ("a forecast keeps a replica at min 0", PZERO, state(0, active=NOW - 2000), [],
     forecast(0.5), 1.0, IDLE, 1),
]


@pytest.mark.parametrize(("spec", "st", "samples", "fc", "service_s", "idle", "expected"),
                         [c[1:] for c in P_CASES], ids=[c[0] for c in P_CASES])
def test_predictive(spec: AutoscalingSpec, st: AutoscaleState, samples: list[Sample],
                    fc: Forecast | None, service_s: float | None, idle: KeepAlive | None,
                    expected: int) -> None:
    d = predictive(PredictiveInput(AutoscaleInput(spec, st, samples, 0, False, NOW), fc,
                                   service_s, startup_s=10.0, idle=idle))
    assert d.replicas == expected
    assert d.state.replicas == expected
    assert bool(d.reason) == (expected != st.replicas)
    assert d.state.why
    if fc is not None and fc.usable and service_s:
        assert d.state.forecast_rate is not None
        assert d.state.forecast_error == fc.mape


@pytest.mark.parametrize(("name", "later", "mape", "expected"), [
    # the forecast over the downscale delay says the load stays low: down after the
    # trusted hold, not the whole delay
    ("vouched for", 1, 0.1, [4, 4, 4, 4, 1, 1, 1]),
    # it says the load comes back within the delay: the whole delay is held
    ("the load comes back", 8, 0.1, [4, 4, 4, 4, 4, 4, 1]),
    # a forecast not trusted vouches for nothing
    ("not trusted", 1, None, [4, 4, 4, 4, 4, 4, 1]),
])
def test_predictive_scale_up_then_down_after_the_hold_the_forecast_vouches_for(
        name: str, later: float, mape: float | None, expected: list[int]) -> None:
    """Walk time: the forecast raises replicas at once; when it and the load fall, the
    count comes down after TRUSTED_HOLD_S where the forecast vouches for it, else after
    the downscale delay, as reactive would."""
    st = state(1)
    seen, reasons = [], []
    hold = autoscaler.TRUSTED_HOLD_S
    for t, rate in ((0, 8), (10, 8), (20, 1), (20 + hold - 5, 1), (20 + hold + 1, 1),
                    (300, 1), (640, 1)):
        now = NOW + t
        fc = forecast(rate, at=now - 1, later=later if rate == 1 else None)
        if mape is None and rate == 1:
            fc = forecast(rate, at=now - 1, later=later, usable=False)
        d = predictive(PredictiveInput(
            AutoscaleInput(PRED, st, [Sample(now, 8 if rate == 8 else 2)], 0, True, now),
            fc, 1.0,
            startup_s=5.0))
        st = d.state
        seen.append(d.replicas)
        reasons.append(d.reason)
    assert seen == expected, name
    assert any("vouches" in r for r in reasons) == (name == "vouched for"), reasons


def test_replicas_for() -> None:
    assert replicas_for(10, 0.5, 2) == 3
    assert replicas_for(0, 0.5, 2) == 0
    assert replicas_for(4, 1.0, 2) == 2
