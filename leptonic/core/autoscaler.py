"""The autoscaler: how many replicas a deployment wants, from its requests in flight.

A pure function of a snapshot and ``now`` (STYLE 4), shaped like Ray Serve's
``autoscaling_policy``: ``autoscale(inputs) -> (replicas, state)``. The load is the number
of requests in flight at the deployment's replicas plus those the gateway holds for want of
a replica, averaged over ``look_back_s``; the deployment wants ``ceil(load / target)``
replicas within ``[min_replicas, max_replicas]``. A wish to scale up must last
``upscale_delay_s`` and one to scale down ``downscale_delay_s`` before it is acted on, so a
burst does not start replicas it will not need and a lull does not stop them. A deployment
with ``min_replicas = 0`` goes to zero once no request was seen for
``scale_to_zero_after_s``; a request that then arrives is held by the gateway and scales
it back to one at once, with no delay.

:func:`predictive` (``policy: predictive``) wraps it: replicas = max(the reactive
decision, what the forecast rate by ``now + startup time`` needs at the target
concurrency), within the same bounds; only the reactive part waits out the upscale delay
(the forecast is the lead). Scaling down keeps the reactive downscale delay, which
guards against a lull the load comes back from, unless the forecast vouches that it will
not: while the forecast is usable and its upper forecast over the whole downscale delay
needs fewer replicas than are up, the reactive wish to scale down is acted on after
``TRUSTED_HOLD_S`` (Knative's stable window) instead. An unusable forecast (short history,
high recent error) leaves the reactive decision alone.
At ``min_replicas = 0`` the idle gaps' hybrid histogram (``core.forecast.keep_alive``)
replaces the fixed ``scale_to_zero_after_s`` (never lengthening it): stay up for the
keep-alive window, and where
the pre-warm window is long, go to zero at once and be back (ready) when it ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from leptonic.core.forecast import Forecast, KeepAlive
from leptonic.core.models import AutoscaleState, AutoscalingSpec

_EPS = 1e-9
#: a new replica's time to ready when nothing better is known: leptonic's measured cold
#: start (``POST /deployments`` -> first answer, 576 ms; docs/BENCHMARKS.md)
STARTUP_S = 0.58
#: how long a wish to scale down lasts before it is acted on when the forecast vouches for
#: it (the downscale delay is the most)
TRUSTED_HOLD_S = 90.0


@dataclass(frozen=True)
class Sample:
    """Requests in flight (at replicas, or held by the gateway) at ``time``."""

    time: float
    in_flight: float


@dataclass(frozen=True)
class AutoscaleInput:
    spec: AutoscalingSpec
    state: AutoscaleState       # the previous decision (see ``initial_state``)
    samples: Sequence[Sample]   # recent observations, any order
    waiting: int                # requests the gateway holds right now
    active: bool                # a request arrived since the previous decision
    now: float


@dataclass(frozen=True)
class AutoscaleDecision:
    replicas: int
    state: AutoscaleState
    reason: str = ""            # why the replica count changed ("" if it did not)


def initial_state(spec: AutoscalingSpec, now: float) -> AutoscaleState:
    """A new deployment starts with ``min_replicas``, and with one even when that is 0,
    so its creator sees it work; it goes to zero after the idle period."""
    start = max(spec.min_replicas, 1)
    return AutoscaleState(replicas=start, proposal=start, last_active_at=now)


def average_in_flight(samples: Sequence[Sample], now: float, look_back_s: float) -> float:
    recent = [s.in_flight for s in samples if now - look_back_s - _EPS <= s.time <= now + _EPS]
    return sum(recent) / len(recent) if recent else 0.0


def autoscale(inp: AutoscaleInput) -> AutoscaleDecision:
    spec, st, now = inp.spec, inp.state, inp.now
    current = st.replicas
    load = average_in_flight(inp.samples, now, spec.look_back_s)
    busy = inp.active or inp.waiting > 0 or load > _EPS
    last_active = now if busy else st.last_active_at
    idle_for = now - last_active

    want = math.ceil(load / spec.target_concurrency - _EPS) if load > _EPS else 0
    if want == 0 and (spec.min_replicas > 0 or idle_for < spec.scale_to_zero_after_s):
        want = 1                # traffic, however light, keeps one replica
    want = max(spec.min_replicas, min(spec.max_replicas, want))

    def decide(replicas: int, reason: str, since: float | None = None) -> AutoscaleDecision:
        return AutoscaleDecision(replicas, AutoscaleState(
            replicas=replicas, proposal=want, proposal_since=since,
            last_active_at=last_active, in_flight=round(load, 3)), reason)

    figures = (f"{load:.1f} requests in flight over the last {spec.look_back_s:g}s, "
               f"target {spec.target_concurrency:g} per replica")
    # bounds changed by the user apply at once
    if current < spec.min_replicas or current > spec.max_replicas:
        bounded = max(spec.min_replicas, min(spec.max_replicas, current))
        return decide(bounded, f"bounds are now {spec.min_replicas}..{spec.max_replicas}")
    # a request waits for a replica: start one now (cold start), no upscale delay
    if current == 0 and inp.waiting > 0:
        n = max(want, 1)
        return decide(n, f"{inp.waiting} request(s) waiting for a replica")
    if want == current:
        return decide(current, "")
    going_up = want > current
    same_way = st.proposal_since is not None and (st.proposal > current) == going_up \
        and st.proposal != current
    since = st.proposal_since if same_way and st.proposal_since is not None else now
    # (going to zero, the idle period has already been waited out)
    delay = spec.upscale_delay_s if going_up else 0.0 if want == 0 else spec.downscale_delay_s
    if now - since + _EPS >= delay:
        if want == 0:
            return decide(0, f"no request for {idle_for:.0f}s "
                             f"(scale to zero after {spec.scale_to_zero_after_s:g}s)")
        return decide(want, figures)
    return decide(current, "", since)


# -- predictive -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictiveInput:
    reactive: AutoscaleInput
    forecast: Forecast | None   # the forecaster's latest word (None: none yet)
    service_s: float | None     # mean seconds a request is in flight (None: not known yet)
    startup_s: float            # a new replica's time to ready
    idle: KeepAlive | None = None   # keep-alive windows from the idle gaps (min 0 only)


def forecast_steps(spec: AutoscalingSpec, startup_s: float, interval_s: float) -> int:
    """Intervals the predictive policy needs forecast: up to the startup time (the lead)
    and over the downscale delay (what vouches for scaling down early)."""
    return max(1, math.ceil((startup_s + min(spec.downscale_delay_s, 3600.0))
                            / interval_s - _EPS))


def replicas_for(rate: float, service_s: float, target: float) -> int:
    """Replicas that ``rate`` requests/s of ``service_s`` each need at ``target`` in flight
    per replica (Little's law: in flight = rate x time in flight)."""
    load = rate * service_s
    return math.ceil(load / target - _EPS) if load > _EPS else 0


def service_estimate(previous: float | None, in_flight: float, rate: float,
                     alpha: float = 0.3) -> float | None:
    """Mean seconds a request is in flight, by Little's law (mean requests in flight over
    their arrival rate) over one interval, smoothed with the ``previous`` estimate; an
    interval without requests leaves it as it was."""
    if rate <= _EPS or in_flight <= _EPS:
        return previous
    now = in_flight / rate
    return now if previous is None else alpha * now + (1 - alpha) * previous


def predictive(inp: PredictiveInput) -> AutoscaleDecision:
    r = inp.reactive
    spec, now = r.spec, r.now
    idle = inp.idle if spec.min_replicas == 0 else None
    if idle is not None and idle.keep_alive_s > spec.scale_to_zero_after_s:
        # the histogram may shorten the user's idle period, never lengthen it
        idle = KeepAlive(min(idle.prewarm_s, spec.scale_to_zero_after_s),
                         spec.scale_to_zero_after_s, idle.gaps)
    if idle is not None:
        r = AutoscaleInput(spec.model_copy(update={"scale_to_zero_after_s": idle.keep_alive_s}),
                           r.state, r.samples, r.waiting, r.active, r.now)
    base = autoscale(r)
    current = r.state.replicas
    st = base.state
    idle_for = now - st.last_active_at
    fc = inp.forecast
    rate = upper = None
    need = 0
    if fc is not None and fc.usable and inp.service_s:
        rate, upper = fc.peak(now + inp.startup_s)
        need = replicas_for(upper, inp.service_s, spec.target_concurrency)
    why_forecast = _forecast_words(inp, rate, upper, need)

    replicas = base.replicas
    why = base.reason or (f"reactive: {st.in_flight:.1f} in flight, target "
                          f"{spec.target_concurrency:g} per replica")
    if idle is not None:
        why += f"; keep-alive {idle.keep_alive_s:g}s from {idle.gaps} idle gaps"
    prewarm = idle is not None and idle.prewarm_s > inp.startup_s
    busy = r.active or r.waiting > 0 or st.in_flight > _EPS
    # (unloading early is for the last replica, as in Azure Functions: more replicas than
    # one are left to the downscale delay)
    if idle is not None and prewarm and not busy and need == 0 and current == 1 \
            and replicas == 1 and idle_for + inp.startup_s < idle.prewarm_s:
        replicas = 0
        why = (f"idle {idle_for:.0f}s; the next request is not due before "
               f"{idle.prewarm_s:g}s (pre-warm window from {idle.gaps} idle gaps)")
    elif idle is not None and prewarm and replicas == 0 and \
            idle.prewarm_s <= idle_for + inp.startup_s < idle.keep_alive_s:
        replicas = 1
        why = (f"pre-warm: idle {idle_for:.0f}s, requests come back from "
               f"{idle.prewarm_s:g}s ({idle.gaps} idle gaps)")
    wanted = min(spec.max_replicas, max(spec.min_replicas, need)) if need else 0
    if wanted > replicas:
        replicas = wanted
        why = f"{why_forecast}; reactive alone: {base.replicas}"
    else:
        why = f"{why}; {why_forecast}"
        early = _vouched_down(inp, replicas, wanted)
        if early is not None:
            replicas, why = early
    reason = "" if replicas == current else why
    overridden = replicas != base.replicas
    state = st.model_copy(update={
        "replicas": replicas,
        # a count set by the forecast: the reactive delays count from here
        "proposal": replicas if overridden else st.proposal,
        "proposal_since": None if overridden else st.proposal_since,
        "forecast_rate": None if rate is None else round(rate, 3),
        "forecast_upper": None if upper is None else round(upper, 3),
        "forecast_error": None if fc is None or fc.mape is None or math.isinf(fc.mape)
        else round(fc.mape, 3),
        "forecast_period_s": None if fc is None or fc.period_s is None
        else round(fc.period_s, 1),
        "service_s": None if inp.service_s is None else round(inp.service_s, 4),
        "why": why})
    return AutoscaleDecision(replicas, state, reason)


def _vouched_down(inp: PredictiveInput, replicas: int, wanted: int
                  ) -> tuple[int, str] | None:
    """Fewer replicas before the downscale delay is out, where the forecast vouches that
    the load does not come back within it (None: wait the delay out)."""
    r, fc = inp.reactive, inp.forecast
    spec, st, now = r.spec, r.state, r.now
    if fc is None or not fc.usable or not inp.service_s or r.waiting:
        return None
    current = st.replicas
    proposal = st.proposal
    if replicas != current or proposal >= current or proposal < 1 \
            or st.proposal_since is None:
        return None                 # not waiting out a downscale delay
    held = now - st.proposal_since
    hold = min(spec.downscale_delay_s, TRUSTED_HOLD_S)
    if held + _EPS < hold:
        return None
    _, ahead = fc.peak(now + inp.startup_s + spec.downscale_delay_s)
    later = min(spec.max_replicas, max(spec.min_replicas, proposal, wanted,
                                       replicas_for(ahead, inp.service_s,
                                                    spec.target_concurrency)))
    if later >= current:
        return None
    return later, (f"the forecast vouches for scaling down after {held:.0f}s of the "
                   f"{spec.downscale_delay_s:g}s delay: upper {ahead:.2f} req/s over it "
                   f"needs {later} replica(s); reactive wants {proposal}")


def _forecast_words(inp: PredictiveInput, rate: float | None, upper: float | None,
                    need: int) -> str:
    fc = inp.forecast
    if fc is None:
        return "forecast: none yet (reactive)"
    if not fc.usable:
        return f"forecast not used ({fc.reason}): reactive"
    if not inp.service_s:
        return "forecast not used (no request timed yet): reactive"
    return (f"forecast {rate:.2f} req/s (upper {upper:.2f}) by +{inp.startup_s:g}s x "
            f"{inp.service_s:.3g}s in flight each / target "
            f"{inp.reactive.spec.target_concurrency:g} -> {need} replica(s); {fc.reason}")
