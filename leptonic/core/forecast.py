"""The load forecaster: the next minutes of a deployment's request rate, from its past.

Fed one point per interval of the request-rate series (``requests_per_s`` of the built-in
time series, or a trace's arrivals per interval in the simulator), it keeps:

* a **seasonal part** whose period is found in the data: the autocorrelation of the
  retained window (computed by FFT), its highest local peak between ``min_period_s`` and
  half the window, refined between lags by a parabola; a period counts when its
  autocorrelation is at least ``min_seasonality``. The period is looked for again every
  ``redetect_every`` points, and the model is refitted on the window when it changes.
* a **short-term part**: Holt's linear method with a damped trend (additive Holt-Winters
  when there is a period), updated online, one point at a time.
* an **upper quantile**: the forecast plus the ``quantile`` of its own recent errors at
  the same horizon (what it under-forecast by), never below the forecast.

It tracks its own error online: every forecast made ``horizon`` points ahead is compared
with the point that comes, as a weighted MAPE (sum of absolute errors over the sum of the
actual rates; a plain MAPE is undefined where the rate is zero) over the last
``error_window`` points, and so is its upper forecast, as the *shortfall*: the part of the
actual rate above the upper forecast made for it (what capacity planned on it would have
missed), over the same points. The forecast is *not usable* -- the caller falls back to the
reactive autoscaler -- while the history is shorter than ``min_points``, or while both the
error is above ``max_error`` and the shortfall above ``max_shortfall`` (e.g. just after a
step change the model has not learned yet). A noisy, bursty series has a point forecast
far from every point and still an upper forecast that holds: that is what capacity needs
(the policy provisions for the upper forecast), so it counts as usable.

Crane's EHPA finds the period the same way (FFT / autocorrelation); AWS predictive scaling
and EHPA both let the forecast only add to what is observed: that is the policy's job
(``core.autoscaler.predictive``). No clock: points carry their own times.

:func:`idle_gaps` and :func:`keep_alive` are the hybrid-histogram keep-alive policy of
Azure Functions (Shahrad et al., "Serverless in the Wild", USENIX ATC '20) for a deployment
that may scale to zero.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-9


@dataclass(frozen=True)
class ForecastConfig:
    """How the forecaster reads its history. Defaults suit a 10 s request-rate series."""

    interval_s: float = 10.0         # spacing of the points
    min_points: int = 12             # fewer points: no forecast
    window: int = 2880               # points kept (8 h at 10 s; 2 days at 60 s)
    min_period_s: float = 20.0       # shortest period looked for
    max_period_s: float = 7 * 86400.0
    min_seasonality: float = 0.3     # autocorrelation at the period for it to count
    redetect_every: int = 30         # points between looks for the period
    alpha: float = 0.5               # level smoothing
    beta: float = 0.1                # trend smoothing
    gamma: float = 0.3               # seasonal smoothing
    phi: float = 0.8                 # trend damping (1: none)
    horizon: int = 1                 # points ahead whose error is tracked
    quantile: float = 0.9            # of the errors, for the upper forecast
    error_window: int = 10           # points the error is measured over
    max_error: float = 0.3           # weighted MAPE above this and
    max_shortfall: float = 0.2       # the upper forecast short by more: fall back

    def __post_init__(self) -> None:
        if not (self.interval_s > 0 and self.min_points >= 2 and self.window >= 4
                and self.horizon >= 1 and self.error_window >= 1):
            raise ValueError(f"invalid forecast config {self}")


@dataclass(frozen=True)
class Forecast:
    """What the forecaster says after its latest point (``at``)."""

    at: float                        # time of the latest point
    interval_s: float
    rates: tuple[float, ...]         # point forecast 1..N intervals after ``at``
    upper: tuple[float, ...]         # upper quantile, same times
    period_s: float | None           # the seasonal period found, if any
    mape: float | None               # weighted MAPE over the error window (None: no data)
    usable: bool
    reason: str                      # why it is (not) usable
    shortfall: float | None = None   # the upper forecast's shortfall, same window

    def peak(self, until: float) -> tuple[float, float]:
        """The highest (point, upper) forecast from ``at`` up to ``until`` (at least the
        first interval's)."""
        steps = max(1, min(len(self.rates), math.ceil((until - self.at) / self.interval_s
                                                      - _EPS)))
        if not self.rates:
            return 0.0, 0.0
        return max(self.rates[:steps]), max(self.upper[:steps])


def detect_period(values: Sequence[float], min_lag: int, max_lag: int,
                  min_strength: float) -> tuple[float | None, float]:
    """The seasonal period of ``values`` in points (fractional: refined between lags) and
    the autocorrelation there; ``(None, best)`` when no lag in ``[min_lag, max_lag]``
    reaches ``min_strength`` or the window holds fewer than two periods."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    max_lag = min(max_lag, n // 2)
    min_lag = max(2, min_lag)
    if n < 8 or max_lag <= min_lag:
        return None, 0.0
    t = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(t, x, 1)
    x = x - (slope * t + intercept)         # a trend is not a season
    var = float(np.dot(x, x))
    if var <= _EPS * n:
        return None, 0.0
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[:max_lag + 2] / var
    best, best_lag = 0.0, -1
    for lag in range(min_lag, max_lag + 1):
        a = float(acf[lag])
        if a > best and a >= acf[lag - 1] and a >= acf[lag + 1]:
            best, best_lag = a, lag
    if best_lag < 0 or best < min_strength:
        return None, best
    # the peak between lags: the vertex of the parabola through the three points
    y0, y1, y2 = float(acf[best_lag - 1]), best, float(acf[best_lag + 1])
    denom = y0 - 2 * y1 + y2
    shift = 0.5 * (y0 - y2) / denom if abs(denom) > _EPS else 0.0
    return best_lag + max(-0.5, min(0.5, shift)), best


@dataclass
class _Model:
    """Holt-Winters (additive, damped trend) state; ``period`` 0: Holt alone."""

    period: int
    level: float
    trend: float = 0.0
    season: list[float] = field(default_factory=list)
    index: int = 0                   # points seen since the model was fitted

    def predict(self, h: int, phi: float) -> float:
        damped = sum(phi ** i for i in range(1, h + 1))
        seasonal = self.season[(self.index + h - 1) % self.period] if self.period else 0.0
        return self.level + damped * self.trend + seasonal

    def update(self, x: float, cfg: ForecastConfig) -> None:
        s = self.season[self.index % self.period] if self.period else 0.0
        previous = self.level
        self.level = cfg.alpha * (x - s) + (1 - cfg.alpha) * (previous + cfg.phi * self.trend)
        self.trend = cfg.beta * (self.level - previous) + (1 - cfg.beta) * cfg.phi * self.trend
        if self.period:
            self.season[self.index % self.period] = (cfg.gamma * (x - self.level)
                                                     + (1 - cfg.gamma) * s)
        self.index += 1


def _fit(values: Sequence[float], period: int) -> _Model:
    """A model started from the window's first period (or first point)."""
    if period and len(values) >= 2 * period:
        first = list(values[:period])
        second = list(values[period:2 * period])
        level = sum(first) / period
        trend = (sum(second) / period - level) / period
        return _Model(period, level, trend, [v - level for v in first], index=period)
    return _Model(0, float(values[0]), 0.0, [], index=1)


class Forecaster:
    """The online forecaster of one series. Deterministic; time comes with the points.

    ``observe(at, rate)`` adds a point (points are taken as ``interval_s`` apart; a point
    missing from the series, or None, is taken as what the model expected and is not
    scored; a point older than the latest is ignored);
    ``forecast(steps)`` says what comes. ``Forecaster.of(points)`` rebuilds one from a
    stored series, so a restarted controller forecasts as before.
    """

    def __init__(self, cfg: ForecastConfig | None = None) -> None:
        self.cfg = cfg or ForecastConfig()
        self.values: deque[float] = deque(maxlen=self.cfg.window)
        self.last_at: float | None = None
        self.period: float | None = None          # in points, fractional
        self.strength = 0.0
        self._model: _Model | None = None
        self._since_detect = 0
        # (point, upper) forecasts made ``horizon`` points ahead, waiting for their point
        self._pending: deque[tuple[float, float]] = deque()
        # (actual, actual - forecast, actual above the upper forecast) of the points that
        # came, newest last
        self._errors: deque[tuple[float, float, float]] = deque(
            maxlen=max(120, self.cfg.error_window))
        self._actual_sum = 0.0           # over every scored point, for overall_error
        self._missed_sum = 0.0

    @classmethod
    def of(cls, points: Iterable[tuple[float, float | None]],
           cfg: ForecastConfig | None = None) -> Forecaster:
        f = cls(cfg)
        for at, rate in points:
            f.observe(at, rate)
        return f

    def __len__(self) -> int:
        return len(self.values)

    # -- feeding --------------------------------------------------------------------------
    def observe(self, at: float, rate: float | None) -> None:
        cfg = self.cfg
        if self.last_at is not None:
            steps = round((at - self.last_at) / cfg.interval_s)
            if steps < 1:
                return                  # the same interval again, or older: ignored
            for _ in range(min(steps - 1, cfg.window)):
                self._add(None)         # a missing point (e.g. the platform was down)
        self.last_at = at
        self._add(None if rate is None else max(0.0, float(rate)))

    def _add(self, value: float | None) -> None:
        """One point; None (unknown) is taken as what the model expected, unscored."""
        cfg = self.cfg
        if value is None and self._model is None:
            return
        x = value if value is not None else max(0.0, self._model.predict(1, cfg.phi)) \
            if self._model is not None else 0.0
        self.values.append(x)
        if self._pending and len(self._pending) >= cfg.horizon:
            predicted, upper = self._pending.popleft()
            if value is not None:
                self._errors.append((x, x - predicted, max(0.0, x - upper)))
                self._actual_sum += x
                self._missed_sum += abs(x - predicted)
        if self._model is None:
            self._model = _fit(list(self.values), 0)
        else:
            self._model.update(x, cfg)
        self._since_detect += 1
        due = self._since_detect >= cfg.redetect_every or (
            self.period is None and len(self.values) >= 2 * self._min_lag()
            and self._since_detect >= max(1, cfg.redetect_every // 3))
        if due and self._detect():
            return
        self._pending.append(self._ahead(self._model, cfg.horizon))

    def _min_lag(self) -> int:
        return max(2, math.ceil(self.cfg.min_period_s / self.cfg.interval_s))

    def _detect(self) -> bool:
        """Look for the period again; True when the model was refitted."""
        cfg = self.cfg
        self._since_detect = 0
        max_lag = int(cfg.max_period_s / cfg.interval_s)
        period, self.strength = detect_period(list(self.values), self._min_lag(), max_lag,
                                              cfg.min_seasonality)
        old = round(self.period) if self.period else 0
        self.period = period
        new = round(period) if period else 0
        if new == old:
            return False
        # refit on the window with the new season; what it says of the next points
        values = list(self.values)
        model = _fit(values, new)
        for x in values[model.index:]:
            model.update(x, cfg)
        self._model = model
        self._pending = deque(self._ahead(model, h) for h in range(1, cfg.horizon + 1))
        return True

    def _ahead(self, model: _Model, h: int) -> tuple[float, float]:
        point = max(0.0, model.predict(h, self.cfg.phi))
        return point, point + self._margin()

    def _margin(self) -> float:
        """What the upper forecast adds: the ``quantile`` of the recent under-forecasts."""
        under = [e for _, e, _ in self._errors]
        return max(0.0, float(np.quantile(under, self.cfg.quantile))) if under else 0.0

    # -- asking ---------------------------------------------------------------------------
    def error(self) -> float | None:
        """Weighted MAPE of the ``horizon``-ahead forecasts over the error window."""
        return self._weighted(1)

    def shortfall(self) -> float | None:
        """The part of the actual rate above the upper forecast made for it, over the error
        window (0: the upper forecast covered every point)."""
        return self._weighted(2)

    def _weighted(self, column: int) -> float | None:
        recent = list(self._errors)[-self.cfg.error_window:]
        if not recent:
            return None
        actual = sum(e[0] for e in recent)
        missed = sum(abs(e[column]) for e in recent)
        if actual <= _EPS:
            return 0.0 if missed <= _EPS else math.inf
        return missed / actual

    def overall_error(self) -> float | None:
        """Weighted MAPE over every point scored since the start (None: none yet)."""
        if self._actual_sum <= _EPS:
            return None
        return self._missed_sum / self._actual_sum

    def forecast(self, steps: int = 1) -> Forecast:
        """The next ``steps`` intervals after the latest point."""
        cfg = self.cfg
        steps = max(1, steps)
        at = self.last_at if self.last_at is not None else 0.0
        period_s = self.period * cfg.interval_s if self.period else None
        mape = self.error()
        model = self._model
        if model is None:
            return Forecast(at, cfg.interval_s, (), (), None, None, False, "no history yet")
        rates = tuple(max(0.0, model.predict(h, cfg.phi)) for h in range(1, steps + 1))
        margin = self._margin()
        upper = tuple(r + margin for r in rates)
        short = self.shortfall()
        if len(self.values) < cfg.min_points:
            usable, why = False, (f"history of {len(self.values)} points is shorter than "
                                  f"{cfg.min_points} ({cfg.min_points * cfg.interval_s:g}s)")
        elif mape is None:
            usable, why = False, "no forecast checked against the series yet"
        elif mape > cfg.max_error and (short is None or short > cfg.max_shortfall):
            usable, why = False, (f"recent error {_pct(mape)} is above "
                                  f"{_pct(cfg.max_error)} and the upper forecast fell "
                                  f"short by {_pct(short or 0.0)}")
        else:
            season = f"period {period_s:g}s" if period_s else "no period found"
            usable, why = True, f"{season}, recent error {_pct(mape)}"
            if mape > cfg.max_error:
                why += (f", but the upper forecast fell short by only "
                        f"{_pct(short or 0.0)}")
        return Forecast(at, cfg.interval_s, rates, upper, period_s, mape, usable, why,
                        short)


def _pct(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x * 100:.0f}%"


# -- scale to zero: the hybrid histogram of idle gaps -------------------------------------

@dataclass(frozen=True)
class KeepAliveConfig:
    """Azure Functions' hybrid histogram policy: keep-alive up to the ``keep_q`` quantile
    of idle gaps (plus a margin), pre-warm from the ``prewarm_q`` quantile (less one)."""

    min_gaps: int = 10               # fewer idle gaps seen: not representative
    prewarm_q: float = 0.05
    keep_q: float = 0.99
    margin: float = 0.1              # 10%: keep-alive longer, pre-warm earlier
    max_gap_s: float = 4 * 3600.0    # the histogram's range; longer gaps are out of bounds
    max_out_of_bounds: float = 0.5   # share of gaps beyond the range: not representative


@dataclass(frozen=True)
class KeepAlive:
    """After a request: stay at zero until ``prewarm_s`` (0: do not unload), be ready from
    then until ``keep_alive_s`` of idleness."""

    prewarm_s: float
    keep_alive_s: float
    gaps: int


def idle_gaps(rates: Sequence[float], interval_s: float) -> list[float]:
    """Lengths (seconds) of the idle runs of a rate series between two busy points: the
    time from one arrival to the next, at the series' resolution."""
    gaps: list[float] = []
    run: int | None = None              # idle points since the last busy one
    for r in rates:
        if r > _EPS:
            if run is not None:
                gaps.append((run + 1) * interval_s)
            run = 0
        elif run is not None:
            run += 1
    return gaps


def keep_alive(gaps: Sequence[float], cfg: KeepAliveConfig | None = None
               ) -> KeepAlive | None:
    """The pre-warm and keep-alive windows from the idle gaps; None when the histogram is
    not representative (too few gaps, or too many beyond its range): then the fixed
    ``scale_to_zero_after_s`` applies."""
    cfg = cfg or KeepAliveConfig()
    if len(gaps) < cfg.min_gaps:
        return None
    inside = sorted(g for g in gaps if g <= cfg.max_gap_s)
    if len(inside) < cfg.min_gaps or 1 - len(inside) / len(gaps) > cfg.max_out_of_bounds:
        return None
    pre = float(np.quantile(inside, cfg.prewarm_q)) * (1 - cfg.margin)
    keep = float(np.quantile(inside, cfg.keep_q)) * (1 + cfg.margin)
    return KeepAlive(prewarm_s=round(pre, 3), keep_alive_s=round(keep, 3), gaps=len(gaps))
