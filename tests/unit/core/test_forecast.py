"""The forecaster on synthetic series: periods found, forecasts followed, fallbacks."""

from __future__ import annotations

import math

import pytest

from leptonic.core.forecast import (
    ForecastConfig,
    Forecaster,
    KeepAliveConfig,
    detect_period,
    idle_gaps,
    keep_alive,
)

CFG = ForecastConfig(interval_s=10)


def sine(period_s: float, n: int, base: float = 10, amp: float = 5, interval: float = 10,
         phase: float = 0.0) -> list[tuple[float, float]]:
    return [(i * interval, base + amp * math.sin(2 * math.pi * i * interval / period_s + phase))
            for i in range(n)]


@pytest.mark.parametrize(("period_s", "points", "interval"), [
    (60, 90, 2),          # a 60 s period on a 2 s series, three periods
    (300, 100, 10),
    (370, 300, 10),       # not a whole number of points
    (3600, 200, 60),      # an hour on a minute series
    (86400, 4 * 1440, 60),   # a day on a minute series
])
def test_a_sines_period_is_found_within_5_percent(period_s: float, points: int,
                                                  interval: float) -> None:
    f = Forecaster.of(sine(period_s, points, interval=interval),
                      ForecastConfig(interval_s=interval))
    fc = f.forecast()
    assert fc.period_s is not None
    assert abs(fc.period_s - period_s) / period_s < 0.05, fc.period_s


@pytest.mark.parametrize(("name", "values", "found"), [
    ("constant", [5.0] * 100, False),
    ("a straight ramp", [float(i) for i in range(100)], False),
    ("a square wave of 20 points", [10.0 if (i // 10) % 2 else 0.0 for i in range(100)], True),
    ("less than two periods", [math.sin(2 * math.pi * i / 60) for i in range(100)], False),
])
def test_detect_period(name: str, values: list[float], found: bool) -> None:
    period, _ = detect_period(values, 2, 1000, 0.3)
    assert (period is not None) == found
    if found:
        assert period == pytest.approx(20, rel=0.05)


def test_seasonal_forecast_leads_the_rise() -> None:
    """Three periods learned, the forecast one interval ahead follows the sine closely."""
    period = 300.0
    f = Forecaster.of(sine(period, 90), CFG)
    fc = f.forecast(3)
    assert fc.usable, fc.reason
    assert fc.mape is not None
    assert fc.mape < 0.05
    at = f.last_at
    assert at is not None
    for h, rate in enumerate(fc.rates, 1):
        truth = 10 + 5 * math.sin(2 * math.pi * (at + 10 * h) / period)
        assert rate == pytest.approx(truth, abs=0.5)
    assert all(u >= r for u, r in zip(fc.upper, fc.rates, strict=True))


def test_a_step_change_makes_it_fall_back_then_it_learns_again() -> None:
    f = Forecaster(CFG)
    usable = []
    for i in range(80):
        f.observe(i * 10, 10.0 if i < 50 else 100.0)
        usable.append(f.forecast().usable)
    assert all(usable[20:50])                   # flat: trusted
    assert not any(usable[50:53])               # the step: falls back at once
    assert "error" in Forecaster.of([(i * 10, 10.0 if i < 50 else 100.0)
                                     for i in range(51)], CFG).forecast().reason
    assert all(usable[70:])                     # the new level learned


@pytest.mark.parametrize(("name", "points", "reason"), [
    ("no history", [], "no history"),
    ("short history", [(i * 10, 5.0) for i in range(5)], "shorter than 12"),
])
def test_short_history_is_not_usable(name: str, points: list[tuple[float, float]],
                                     reason: str) -> None:
    fc = Forecaster.of(points, CFG).forecast()
    assert not fc.usable
    assert reason in fc.reason


def test_restart_from_the_stored_series_forecasts_the_same() -> None:
    points = sine(300, 120)
    live = Forecaster(CFG)
    for p in points:
        live.observe(*p)
    rebuilt = Forecaster.of(points, CFG)
    assert rebuilt.forecast(4) == live.forecast(4)


def test_missing_points_are_not_scored_and_old_points_are_ignored() -> None:
    f = Forecaster.of([(i * 10, 10.0) for i in range(30)], CFG)
    f.observe(400, 10.0)         # 10 points missing: filled with what it expected
    f.observe(395, 999.0)        # older than the latest: ignored
    f.observe(410, None)         # a sample without a rate
    fc = f.forecast()
    assert len(f) == 42
    assert fc.usable
    assert fc.mape == pytest.approx(0.0, abs=1e-6)
    assert fc.rates[0] == pytest.approx(10.0, abs=1e-6)


def test_peak_takes_the_highest_forecast_until_a_time() -> None:
    f = Forecaster.of([(i * 10, float(i)) for i in range(30)], CFG)     # a ramp
    fc = f.forecast(5)
    assert fc.peak(fc.at + 1)[0] == fc.rates[0]
    assert fc.peak(fc.at + 30)[0] == max(fc.rates[:3])
    assert fc.peak(fc.at + 1000)[0] == max(fc.rates)


@pytest.mark.parametrize(("rates", "gaps"), [
    ([0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0], [40.0, 10.0, 20.0]),
    ([1, 1, 1], [10.0, 10.0]),
    ([0, 0, 0], []),
])
def test_idle_gaps(rates: list[float], gaps: list[float]) -> None:
    assert idle_gaps(rates, 10) == gaps


@pytest.mark.parametrize(("name", "gaps", "expected"), [
    ("too few gaps: the fixed period applies", [60.0] * 5, None),
    ("gaps of about 10 minutes: pre-warm at 9, keep to 11",
     [600.0] * 20, (540.0, 660.0)),
    ("mostly short gaps: keep-alive at the 99th percentile",
     [30.0] * 95 + [120.0] * 5, (27.0, 132.0)),
    ("most gaps beyond the range: not representative", [10.0] * 10 + [20000.0] * 20, None),
])
def test_keep_alive(name: str, gaps: list[float],
                    expected: tuple[float, float] | None) -> None:
    window = keep_alive(gaps, KeepAliveConfig())
    if expected is None:
        assert window is None
    else:
        assert window is not None
        assert (window.prewarm_s, window.keep_alive_s) == pytest.approx(expected, rel=0.01)


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="invalid forecast config"):
        ForecastConfig(interval_s=0)


def test_a_bursty_series_is_usable_by_its_upper_forecast_not_its_point_forecast() -> None:
    """Bursts at random (0 or 20 req/s, a fixed seed): no point forecast follows them, but
    the upper forecast covers the rate, which is what capacity is planned on."""
    import random

    rng = random.Random(7)
    f = Forecaster(CFG)
    for i in range(200):
        f.observe(i * 10, 20.0 if rng.random() < 0.3 else rng.uniform(0, 2))
    fc = f.forecast()
    assert fc.mape is not None
    assert fc.mape > CFG.max_error
    assert fc.shortfall is not None
    assert fc.shortfall <= CFG.max_shortfall
    assert fc.usable, fc.reason
    assert "fell short by only" in fc.reason
    assert fc.upper[0] >= 15


def test_the_upper_forecasts_shortfall_is_measured_against_what_came() -> None:
    """Flat, then a step up: the upper forecast made before the step falls short of it by
    the step (less its margin); the shortfall says so, and the forecast is not used."""
    points = [(i * 10, 10.0) for i in range(40)] + [(400 + i * 10, 100.0) for i in range(2)]
    f = Forecaster.of(points, CFG)
    fc = f.forecast()
    assert fc.shortfall is not None
    assert fc.shortfall > 0.3
    assert not fc.usable
    assert "fell short by" in fc.reason
