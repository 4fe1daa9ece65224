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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from leptonic.core.models import AutoscaleState, AutoscalingSpec

_EPS = 1e-9


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
