"""The autoscaling replay: a request trace against replicas that take time to start,
through ``core.autoscaler`` (reactive or predictive, with ``core.forecast``) or a peer's
policy (Knative-KPA-like, Ray-Serve-default), on a clock of its own.

The model, on the trace's own time (seconds from its first record):

* Requests arrive as the trace says (``qps-series``: a Poisson process at the trace's
  rate, seeded, so a run is repeatable). Each takes a service time: the trace's own
  (``exec_time_seconds`` of the GenAI LoRA trace), else from its tokens for the Azure LLM
  traces (:func:`token_service_s`), else ``service_s``.
* A replica serves ``slots`` requests at once (default twice the target concurrency, so
  the target leaves headroom); the rest wait in one FIFO queue, as at the gateway. A
  replica started takes ``startup_s`` to be ready (default: leptonic's measured cold
  start, docs/BENCHMARKS.md); a replica stopped takes no new request and goes once its
  requests are done. Latency is arrival to completion.
* The policy decides every ``tick_s`` while anything is in flight (every ``idle_tick_s``
  otherwise, and at every arrival), from the requests in flight sampled at each decision
  and, for ``predictive``, the forecaster fed the arrival rate every ``interval_s`` (the
  platform's series interval) and the Little's-law service time, as the controller does.
* Figures: ``slo_miss_minutes`` are the minutes (by arrival) whose requests' p99 latency
  *beyond their own service time* (the wait for a replica: queueing and cold start, what an
  autoscaler controls; a trace's long requests would otherwise miss any SLO whatever the
  replicas) is above ``slo_ms``; ``p99_ms`` is the end-to-end latency, ``p99_wait_ms`` the
  wait; ``replica_hours`` integrate every replica that exists (starting,
  serving or draining); ``cold_starts`` count requests that arrived while no replica was
  ready; ``forecast_mape`` is the forecaster's weighted MAPE over the whole trace.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from leptonic.core import autoscaler
from leptonic.core.autoscaler import (
    AutoscaleInput,
    PredictiveInput,
    Sample,
    autoscale,
    initial_state,
    predictive,
    service_estimate,
)
from leptonic.core.forecast import (
    Forecast,
    ForecastConfig,
    Forecaster,
    KeepAlive,
    idle_gaps,
    keep_alive,
)
from leptonic.core.models import AutoscaleState, AutoscalingSpec
from leptonic.simulate.traces import TraceRate, TraceRequest

#: leptonic's cold start (docs/BENCHMARKS.md, "Failover and cold start")
STARTUP_S = autoscaler.STARTUP_S
#: the service time of a request whose trace gives neither a time nor tokens
SERVICE_S = 1.0
TICK_S = 1.0
IDLE_TICK_S = 10.0
INTERVAL_S = 10.0           # the platform's series interval (observe settings)
SLO_MS = 1000.0             # default SLO on the wait for a replica

# the token model of the Azure LLM traces (a batched LLM server: prefill in parallel,
# decode one token after another), documented in docs/AUTOSCALING.md
OVERHEAD_S = 0.05
PREFILL_S_PER_TOKEN = 1e-4  # 10,000 prompt tokens/s
DECODE_S_PER_TOKEN = 0.02   # 50 generated tokens/s per request


def token_service_s(context_tokens: int, generated_tokens: int) -> float:
    """Seconds an LLM request of these tokens takes: overhead + prefill + decode."""
    return OVERHEAD_S + PREFILL_S_PER_TOKEN * context_tokens + \
        DECODE_S_PER_TOKEN * generated_tokens


class SimPolicy(StrEnum):
    REACTIVE = "reactive"               # core.autoscaler.autoscale, the given spec
    PREDICTIVE = "predictive"           # core.autoscaler.predictive, the given spec
    KPA = "kpa"                         # Knative KPA-like (sim only)
    RAY_SERVE = "ray-serve"             # Ray Serve's defaults through the reactive policy


@dataclass(frozen=True)
class Work:
    at_s: float
    service_s: float


def requests_work(requests: Sequence[TraceRequest], service_s: float = SERVICE_S
                  ) -> list[Work]:
    out = []
    for r in requests:
        if r.service_s is not None:
            s = r.service_s
        elif r.context_tokens is not None and r.generated_tokens is not None:
            s = token_service_s(r.context_tokens, r.generated_tokens)
        else:
            s = service_s
        out.append(Work(r.at_s, max(s, 1e-3)))
    return out


def rates_work(rates: Sequence[TraceRate], service_s: float = SERVICE_S, seed: int = 0,
               scale: float = 1.0) -> list[Work]:
    """Poisson arrivals at each row's rate until the next row (the last row: for the
    median step)."""
    rng = np.random.default_rng(seed)
    times = [r.at_s for r in rates]
    steps = np.diff(times) if len(times) > 1 else np.array([60.0])
    last = float(np.median(steps)) if len(steps) else 60.0
    out: list[Work] = []
    for i, r in enumerate(rates):
        span = times[i + 1] - times[i] if i + 1 < len(times) else last
        n = int(rng.poisson(max(0.0, r.rate * scale) * span))
        for at in np.sort(rng.uniform(times[i], times[i] + span, n)):
            out.append(Work(float(at), service_s))
    return out


@dataclass
class Result:
    policy: str
    requests: int
    slo_ms: float
    slo_miss_minutes: int
    minutes: int                 # minutes with at least one request
    replica_hours: float
    cold_starts: int             # requests that arrived with no replica ready
    replica_starts: int
    p50_ms: float
    p99_ms: float
    p99_wait_ms: float
    max_replicas: int
    forecast_mape: float | None  # predictive only
    startup_s: float
    horizon_s: float
    wall_s: float
    trace: str = ""
    series: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def to_dict(self, *, series: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not series:
            del out["series"]
        return out


@dataclass
class _Replica:
    rid: int
    ready_at: float
    busy: int = 0
    stopping: bool = False


@dataclass
class _Kpa:
    """Knative KPA's memory: panic mode until ``panic_until``."""

    panic_until: float = -math.inf
    last_busy: float = 0.0


KPA_STABLE_S = 60.0          # stable window
KPA_PANIC_S = 6.0            # panic window (10% of stable)
KPA_PANIC_THRESHOLD = 2.0    # 200% of the current capacity
KPA_ZERO_GRACE_S = 30.0      # scale-to-zero grace period


def ray_serve_spec(spec: AutoscalingSpec) -> AutoscalingSpec:
    """Ray Serve's defaults (target_ongoing_requests 2, upscale 30 s, downscale 600 s,
    look-back 30 s, min_replicas 1) within the given maximum."""
    return AutoscalingSpec(min_replicas=1, max_replicas=spec.max_replicas,
                           target_concurrency=2.0, upscale_delay_s=30.0,
                           downscale_delay_s=600.0, look_back_s=30.0)


class _Replay:
    def __init__(self, work: Sequence[Work], policy: SimPolicy, spec: AutoscalingSpec, *,
                 startup_s: float, slots: int, slo_ms: float, tick_s: float,
                 idle_tick_s: float, interval_s: float, forecast: ForecastConfig | None
                 ) -> None:
        self.work = work
        self.policy = policy
        self.spec = ray_serve_spec(spec) if policy is SimPolicy.RAY_SERVE else spec
        self.startup_s, self.slots, self.slo_ms = startup_s, slots, slo_ms
        self.tick_s, self.idle_tick_s, self.interval_s = tick_s, idle_tick_s, interval_s
        cfg = forecast or ForecastConfig(interval_s=interval_s)
        steps = max(1, math.ceil((startup_s + tick_s) / interval_s))
        self.fcfg = ForecastConfig(**{**asdict(cfg), "interval_s": interval_s,
                                      "horizon": steps})
        self.forecast_steps = max(steps, autoscaler.forecast_steps(self.spec, startup_s,
                                                                   interval_s))
        self.forecaster = Forecaster(self.fcfg)
        self.reps: list[_Replica] = []
        self.queue: deque[tuple[float, float]] = deque()     # (arrival, service)
        self.done: list[tuple[float, float, float]] = []     # (arrival, latency, wait)
        self.completions: list[tuple[float, int, int]] = []  # (time, seq, replica id)
        self.by_id: dict[int, _Replica] = {}
        self.seq = 0
        self.t = 0.0
        self.area = 0.0                  # replica-seconds
        self.cold = 0
        self.starts = 0
        self.peak = 0
        self.samples: deque[Sample] = deque()
        self.state: AutoscaleState = initial_state(self.spec, 0.0)
        self.kpa = _Kpa()
        self.arrived_since_tick = 0
        # per forecast interval: arrivals, time-integral of requests in flight
        self.interval_arrivals = 0
        self.in_flight_area = 0.0
        self.next_interval = interval_s
        self.service: float | None = None
        self.rates: list[float] = []
        self._forecast: Forecast | None = None      # refreshed once per interval
        self._idle: KeepAlive | None = None
        self.series: dict[str, list[float]] = {"t": [], "rate": [], "forecast": [],
                                               "replicas": []}
        for _ in range(self.state.replicas):
            self.start(0.0, ready_now=True)

    # -- replicas -------------------------------------------------------------------------
    def start(self, now: float, ready_now: bool = False) -> None:
        self.seq += 1
        rep = _Replica(self.seq, ready_at=now if ready_now else now + self.startup_s)
        self.by_id[self.seq] = rep
        self.reps.append(rep)
        if not ready_now:
            self.starts += 1

    def live(self) -> list[_Replica]:
        return [r for r in self.reps if not r.stopping]

    def in_flight(self) -> int:
        return sum(r.busy for r in self.reps) + len(self.queue)

    def advance(self, now: float) -> None:
        dt = now - self.t
        if dt > 0:
            self.area += len(self.reps) * dt
            self.in_flight_area += self.in_flight() * dt
            self.t = now

    def dispatch(self, now: float) -> None:
        while self.queue:
            free = [r for r in self.reps if not r.stopping and r.ready_at <= now
                    and r.busy < self.slots]
            if not free:
                return
            rep = min(free, key=lambda r: r.busy)
            arrival, service = self.queue.popleft()
            rep.busy += 1
            self.seq += 1
            heapq.heappush(self.completions, (now + service, self.seq, rep.rid))
            self.done.append((arrival, now + service - arrival, now - arrival))

    def scale_to(self, n: int, now: float) -> None:
        live = self.live()
        if n > len(live):
            # a draining replica that is still busy is taken back before a new one starts
            for r in self.reps:
                if r.stopping and len(live) < n:
                    r.stopping = False
                    live.append(r)
            for _ in range(n - len(live)):
                self.start(now)
        elif n < len(live):
            # stop the starting ones first, then the least busy
            order = sorted(live, key=lambda r: (r.ready_at <= now, r.busy))
            for r in order[:len(live) - n]:
                r.stopping = True
            self.reap()
        self.peak = max(self.peak, len(self.live()))

    def reap(self) -> None:
        gone = [k for k, r in self.by_id.items() if r.stopping and r.busy == 0]
        for k in gone:
            rep = self.by_id.pop(k)
            self.reps.remove(rep)

    # -- deciding -------------------------------------------------------------------------
    def feed(self, now: float) -> None:
        """Close the forecast intervals that ended by ``now``."""
        while self.next_interval <= now + 1e-9:
            end = self.next_interval
            rate = self.interval_arrivals / self.interval_s
            mean_in_flight = self.in_flight_area / self.interval_s
            self.service = service_estimate(self.service, mean_in_flight, rate)
            self.rates.append(rate)
            if self.policy is SimPolicy.PREDICTIVE:
                self.forecaster.observe(end, rate)
                self._forecast = self.forecaster.forecast(self.forecast_steps)
                self._idle = keep_alive(idle_gaps(self.rates[-self.fcfg.window:],
                                                  self.interval_s))
            self.interval_arrivals = 0
            self.in_flight_area = 0.0
            self.next_interval += self.interval_s

    def decide(self, now: float) -> None:
        self.feed(now)
        spec = self.spec
        flight = self.in_flight()
        self.samples.append(Sample(now, float(flight)))
        keep = max(spec.look_back_s, KPA_STABLE_S if self.policy is SimPolicy.KPA else 0)
        while self.samples and self.samples[0].time < now - keep:
            self.samples.popleft()
        ready = [r for r in self.live() if r.ready_at <= now]
        waiting = len(self.queue) if not ready else 0
        active = self.arrived_since_tick > 0
        self.arrived_since_tick = 0
        if self.policy is SimPolicy.KPA:
            n = self.kpa_decide(now, flight, waiting, active)
        else:
            inp = AutoscaleInput(spec, self.state, list(self.samples), waiting, active, now)
            if self.policy is SimPolicy.PREDICTIVE:
                d = predictive(PredictiveInput(inp, self._forecast, self.service,
                                               self.startup_s, self._idle))
            else:
                d = autoscale(inp)
            self.state = d.state
            n = d.replicas
        if n != len(self.live()):
            self.scale_to(n, now)

    def kpa_decide(self, now: float, flight: int, waiting: int, active: bool) -> int:
        spec, k = self.spec, self.kpa
        current = len(self.live())

        def avg(window: float) -> float:
            xs = [s.in_flight for s in self.samples if s.time >= now - window - 1e-9]
            return sum(xs) / len(xs) if xs else 0.0

        if active or flight:
            k.last_busy = now
        stable = math.ceil(avg(KPA_STABLE_S) / spec.target_concurrency - 1e-9)
        panic = math.ceil(avg(KPA_PANIC_S) / spec.target_concurrency - 1e-9)
        ready = sum(1 for r in self.live() if r.ready_at <= now)
        if current == 0 and waiting:
            return max(1, panic)               # the activator: from zero at once
        if ready and avg(KPA_PANIC_S) / (ready * spec.target_concurrency) >= \
                KPA_PANIC_THRESHOLD:
            k.panic_until = now + KPA_STABLE_S
        if now < k.panic_until:
            want = max(current, panic)         # no scaling down in panic mode
        else:
            want = max(stable, math.ceil(current / 2))   # at most halved per decision
            if stable == 0 and now - k.last_busy < KPA_ZERO_GRACE_S:
                want = max(want, 1)
            elif stable == 0:
                want = 0
        return max(spec.min_replicas, min(spec.max_replicas, want))

    # -- the clock --------------------------------------------------------------------------
    def run(self) -> None:
        work = self.work
        i, n = 0, len(work)
        next_tick = 0.0
        end = (work[-1].at_s if work else 0.0)
        while True:
            starting = [r.ready_at for r in self.reps if r.ready_at > self.t]
            t_ready = min(starting, default=math.inf)
            t_done = self.completions[0][0] if self.completions else math.inf
            t_arrive = work[i].at_s if i < n else math.inf
            if i >= n and not self.completions and not self.queue:
                break
            now = min(next_tick, t_ready, t_done, t_arrive)
            self.advance(now)
            if now == t_done:
                _, _, rid = heapq.heappop(self.completions)
                rep = self.by_id[rid]
                rep.busy -= 1
                if rep.stopping and rep.busy == 0:
                    self.reap()
                self.dispatch(now)
            elif now == t_ready:
                self.dispatch(now)
            elif now == t_arrive:
                w = work[i]
                i += 1
                self.arrived_since_tick += 1
                self.interval_arrivals += 1
                if not any(r.ready_at <= now for r in self.live()):
                    self.cold += 1
                self.queue.append((w.at_s, w.service_s))
                self.dispatch(now)
                if self.queue and not self.live():
                    self.decide(now)           # held at zero: scale up at once
            else:
                self.decide(now)
                self.sample(now)
                busy = self.in_flight() > 0 or any(s.in_flight for s in self.samples) \
                    or any(r.ready_at > now for r in self.reps)
                step = self.tick_s if busy else self.idle_tick_s
                nxt = now + step
                if not busy and i < n:
                    nxt = min(nxt, max(now + self.tick_s, work[i].at_s))
                next_tick = nxt
        self.advance(max(self.t, end))

    def sample(self, now: float) -> None:
        s = self.series
        if s["t"] and now - s["t"][-1] < self.interval_s:
            return
        s["t"].append(round(now, 3))
        s["rate"].append(round(self.rates[-1], 4) if self.rates else 0.0)
        if self.policy is SimPolicy.PREDICTIVE:
            fc = self._forecast
            s["forecast"].append(round(fc.rates[0], 4) if fc and fc.rates else 0.0)
        s["replicas"].append(float(len(self.live())))

    def result(self, wall_s: float, trace: str) -> Result:
        latencies = np.array([lat for _, lat, _ in self.done]) if self.done else np.zeros(1)
        waits = np.array([w for _, _, w in self.done]) if self.done else np.zeros(1)
        minutes: dict[int, list[float]] = {}
        for arrival, _, wait in self.done:
            minutes.setdefault(int(arrival // 60), []).append(wait)
        slo_s = self.slo_ms / 1000
        missed = sum(1 for lats in minutes.values()
                     if float(np.quantile(lats, 0.99)) > slo_s)
        mape = self.forecaster.overall_error() if self.policy is SimPolicy.PREDICTIVE \
            else None
        return Result(
            policy=str(self.policy), requests=len(self.done), slo_ms=round(self.slo_ms, 1),
            slo_miss_minutes=missed, minutes=len(minutes),
            replica_hours=round(self.area / 3600, 3), cold_starts=self.cold,
            replica_starts=self.starts,
            p50_ms=round(float(np.quantile(latencies, 0.5)) * 1000, 1),
            p99_ms=round(float(np.quantile(latencies, 0.99)) * 1000, 1),
            p99_wait_ms=round(float(np.quantile(waits, 0.99)) * 1000, 1),
            max_replicas=self.peak,
            forecast_mape=None if mape is None else round(mape, 4), startup_s=self.startup_s,
            horizon_s=round(self.t, 1), wall_s=round(wall_s, 3), trace=trace,
            series=self.series)


def replay(work: Sequence[Work], policy: SimPolicy | str, spec: AutoscalingSpec, *,
           startup_s: float = STARTUP_S, slots: int | None = None,
           slo_ms: float | None = None, tick_s: float = TICK_S,
           idle_tick_s: float = IDLE_TICK_S, interval_s: float = INTERVAL_S,
           forecast: ForecastConfig | None = None, trace: str = "") -> Result:
    """Replay ``work`` (in arrival order) under ``policy``; ``slots`` default: twice the
    target concurrency; ``slo_ms`` default: :data:`SLO_MS`."""
    if startup_s < 0 or tick_s <= 0 or interval_s <= 0:
        raise ValueError("startup must be >= 0 s, tick and interval > 0 s")
    started = time.perf_counter()
    ordered = sorted(work, key=lambda w: w.at_s)
    run = _Replay(ordered, SimPolicy(policy), spec, startup_s=startup_s,
                  slots=slots or max(1, round(2 * spec.target_concurrency)),
                  slo_ms=SLO_MS if slo_ms is None else slo_ms,
                  tick_s=tick_s, idle_tick_s=max(tick_s, idle_tick_s),
                  interval_s=interval_s, forecast=forecast)
    run.run()
    return run.result(time.perf_counter() - started, trace)
