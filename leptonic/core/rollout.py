"""The rollout planner: how many replicas of which template, and how much traffic to each.

A rollout moves a deployment from its *stable* template (what serves now) to its *target*
(what the spec asks for). ``plan_rollout`` is a pure function of the stored rollout state,
the user's requests (pause, promote, abort), the replica sets, the traffic figures of the
analysis window and ``now``; it returns the next state, which says how many replicas each
template should have (``desired``) and what share of traffic each gets (``weights``; empty
means every ready replica alike). The controller persists that state, then makes the
replicas and the gateway's routes match it (STYLE 3).

* rolling — Kubernetes' rules: at most ``N + max_surge`` replicas, at least
  ``N - max_unavailable`` ready; old replicas go (drained) as new ones become ready.
* blue-green — a full new set beside the old; once it is all ready (and its smoke check
  passed) all traffic switches at once; the old set is kept ``keep_old_s`` for rollback.
* canary — traffic moves by ``steps``; each step is held ``step_interval_s`` while
  ``core.analysis`` compares the canary with the stable set; a failed check rolls back.

Every strategy rolls back by itself when the new replicas crash-loop or make no progress
for ``progress_deadline_s``. Rolled-back and aborted rollouts converge to the stable set
without dropping below the available replicas they had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from leptonic.core.analysis import TrafficCounters, analyse, describe, verdict
from leptonic.core.models import (
    DONE_PHASES,
    CheckResult,
    RolloutControl,
    RolloutPhase,
    RolloutStatus,
    StrategySpec,
    StrategyType,
    Template,
)


@dataclass(frozen=True)
class SetState:
    """What the planner sees of the replicas of one template."""

    active: int = 0                 # starting, ready or failed (not draining)
    ready: int = 0                  # ready and passing probes
    crashing: str | None = None     # set when one of them crash-loops: its last error


@dataclass(frozen=True)
class SmokeResult:
    """The blue-green smoke check of the target set: one request to each new replica."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class RolloutEvent:
    reason: str
    message: str
    kind: str = "Normal"


@dataclass(frozen=True)
class RolloutInput:
    status: RolloutStatus
    control: RolloutControl
    replicas: int                           # N: what the deployment should run
    sets: Mapping[int, SetState]            # by template generation
    canary: TrafficCounters = field(default_factory=TrafficCounters)  # target, in the window
    stable: TrafficCounters = field(default_factory=TrafficCounters)
    smoke: SmokeResult | None = None
    now: float = 0.0


@dataclass(frozen=True)
class RolloutPlan:
    status: RolloutStatus                   # persist this before acting on it
    events: tuple[RolloutEvent, ...] = ()
    smoke_wanted: bool = False              # ask for a smoke check of the target set

    @property
    def targets(self) -> dict[int, int]:
        """Replicas wanted per template generation (generations not listed: none)."""
        return {int(g): n for g, n in self.status.desired.items()}

    @property
    def weights(self) -> dict[int, int]:
        return {int(g): w for g, w in self.status.weights.items()}


# -- helpers -------------------------------------------------------------------------------

def amount(text: str, n: int, *, round_up: bool) -> int:
    """``"25%"`` of ``n`` (rounded up or down) or a plain count."""
    if text.endswith("%"):
        exact = n * int(text[:-1]) / 100.0
        return math.ceil(exact - 1e-9) if round_up else math.floor(exact + 1e-9)
    return int(text)


def replicas_for_weight(weight: int, n: int) -> int:
    """Canary replicas for a traffic share: proportional, at least one, all at 100%."""
    if n <= 0:
        return 0
    if weight >= 100:
        return n
    return max(1, math.ceil(n * weight / 100.0 - 1e-9))


def serving(st: RolloutStatus) -> Template:
    """The template that serves once this rollout has settled (or while it is undecided)."""
    return st.target if st.phase is RolloutPhase.SUCCEEDED else st.stable


def known_generation(st: RolloutStatus | None, template_hash: str) -> int | None:
    """The generation of a template this rollout still knows (for instant rollbacks: its
    replicas may still run), or None."""
    if st is None:
        return None
    for t in (st.target, st.stable, st.previous):
        if t is not None and t.hash == template_hash:
            return t.generation
    return None


def _g(t: Template) -> str:
    return str(t.generation)


def describe_strategy(s: StrategySpec) -> str:
    if s.type is StrategyType.CANARY:
        return (f"canary, steps {'/'.join(str(w) for w in s.steps)}% every "
                f"{s.step_interval_s:g}s, success rate >= {100 * s.analysis.min_success_rate:g}%,"
                f" p99 <= {s.analysis.max_p99_ms:g} ms")
    if s.type is StrategyType.BLUE_GREEN:
        smoke = f", smoke check POST {s.smoke_path}" if s.smoke_path else ""
        return f"blue-green{smoke}, old set kept {s.keep_old_s:g}s"
    return f"rolling, max surge {s.max_surge}, max unavailable {s.max_unavailable}"


def begin(previous: RolloutStatus | None, target: Template, strategy: StrategySpec,
          now: float) -> tuple[RolloutStatus, list[RolloutEvent]]:
    """The rollout that takes a deployment to ``target``. The first template of a
    deployment, and a return to the template that serves, need no rollout: they are
    recorded as succeeded at once."""
    if previous is None:
        return RolloutStatus(id=0, strategy=strategy, phase=RolloutPhase.SUCCEEDED,
                             stable=target, target=target, started_at=now,
                             step_started_at=now, finished_at=now,
                             message=f"{target.label} serves"), []
    stable = serving(previous)
    rid = previous.id + 1
    if stable.hash == target.hash:
        st = RolloutStatus(id=rid, strategy=strategy, phase=RolloutPhase.SUCCEEDED,
                           stable=stable, target=stable, started_at=now, step_started_at=now,
                           finished_at=now,
                           message=f"back to {stable.label}, which serves")
        return st, [RolloutEvent("RolloutSucceeded", f"rollout {rid}: {st.message}")]
    st = RolloutStatus(id=rid, strategy=strategy, stable=stable, target=target, started_at=now,
                       step_started_at=now,
                       message=f"starting: {stable.label} -> {target.label}")
    return st, [RolloutEvent("RolloutStarted",
                             f"rollout {rid}: {stable.label} -> {target.label} "
                             f"({describe_strategy(strategy)})")]


# -- the planner ---------------------------------------------------------------------------

def plan_rollout(inp: RolloutInput) -> RolloutPlan:
    st = inp.status
    ctl = inp.control if inp.control.id == st.id else RolloutControl(id=st.id)
    if st.phase in DONE_PHASES:
        return _settled(inp, st, [])
    events: list[RolloutEvent] = []
    if ctl.abort:
        st = _finish(st, RolloutPhase.ABORTED, "aborted by a user", inp.now)
        events.append(RolloutEvent(
            "RolloutAborted", f"rollout {st.id} aborted by a user; {st.stable.label} "
                              "serves again", "Warning"))
        return _settled(inp, st, events)
    crashing = inp.sets.get(st.target.generation, SetState()).crashing
    if crashing:
        return _rolled_back(inp, st, f"replicas of {st.target.label} keep crashing: "
                                     f"{crashing}", [])
    if ctl.paused:
        if st.phase is not RolloutPhase.PAUSED:
            st = st.model_copy(update={"phase": RolloutPhase.PAUSED,
                                       "message": f"paused by a user ({st.message})"})
            events.append(RolloutEvent("RolloutPaused", f"rollout {st.id} paused"))
        return RolloutPlan(st, tuple(events))
    if st.phase is RolloutPhase.PAUSED:
        # a resumed step is held for its whole interval again, with a fresh analysis window
        st = st.model_copy(update={"phase": RolloutPhase.PROGRESSING, "analysis": [],
                                   "step_started_at": inp.now, "waiting_since": None})
        events.append(RolloutEvent("RolloutResumed", f"rollout {st.id} resumed"))
    strategy = st.strategy.type
    if strategy is StrategyType.CANARY:
        return _canary(inp, st, ctl, events)
    if strategy is StrategyType.BLUE_GREEN:
        return _blue_green(inp, st, ctl, events)
    return _rolling(inp, st, ctl, events)


def _finish(st: RolloutStatus, phase: RolloutPhase, reason: str, now: float
            ) -> RolloutStatus:
    return st.model_copy(update={"phase": phase, "reason": reason, "finished_at": now})


def _rolled_back(inp: RolloutInput, st: RolloutStatus, reason: str,
                 events: list[RolloutEvent], checks: list[CheckResult] | None = None
                 ) -> RolloutPlan:
    update = {} if checks is None else {"analysis": checks}
    st = _finish(st.model_copy(update=update), RolloutPhase.ROLLED_BACK, reason, inp.now)
    events.append(RolloutEvent(
        "RolloutRolledBack", f"rollout {st.id} rolled back to {st.stable.label}: {reason}",
        "Warning"))
    return _settled(inp, st, events)


def _succeeded(inp: RolloutInput, st: RolloutStatus, events: list[RolloutEvent], *,
               keep_stable: bool = False, how: str = "", note: str = "") -> RolloutPlan:
    update: dict[str, object] = {}
    if keep_stable and st.strategy.keep_old_s > 0:
        update = {"previous": st.stable, "keep_until": inp.now + st.strategy.keep_old_s}
    st = _finish(st.model_copy(update=update), RolloutPhase.SUCCEEDED, "", inp.now)
    kept = (f"; {st.stable.label} kept for {st.strategy.keep_old_s:g}s for an instant "
            "rollback" if st.previous is not None else "")
    events.append(RolloutEvent("RolloutSucceeded",
                               f"rollout {st.id}{how}: {st.target.label} serves all "
                               f"traffic{kept}{note}"))
    return _settled(inp, st, events)


def _settled(inp: RolloutInput, st: RolloutStatus, events: list[RolloutEvent]
             ) -> RolloutPlan:
    """A finished rollout: the serving set at N, the other going (keeping availability)."""
    n, now = inp.replicas, inp.now
    if st.phase is RolloutPhase.SUCCEEDED:
        desired = {_g(st.target): n}
        weights: dict[str, int] = {}
        if st.previous is not None and st.previous.hash != st.target.hash and \
                st.keep_until is not None and now < st.keep_until:
            desired[_g(st.previous)] = n
            weights = {_g(st.target): 100}
            # no countdown in the message: it would change (and be stored) every second
            message = (f"{st.target.label} serves all traffic; {st.previous.label} is kept "
                       f"for an instant rollback until keep_until")
        else:
            if st.previous is not None:
                events.append(RolloutEvent("PreviousReleased",
                                           f"stopping {st.previous.label}, kept for "
                                           f"{st.strategy.keep_old_s:g}s for rollback"))
                st = st.model_copy(update={"previous": None, "keep_until": None})
            message = f"{st.target.label} serves all traffic"
    else:
        s = inp.sets.get(st.stable.generation, SetState())
        t = inp.sets.get(st.target.generation, SetState())
        keep_ready = n
        if st.strategy.type is StrategyType.ROLLING:
            keep_ready = n - amount(st.strategy.max_unavailable, n, round_up=False)
        t_keep = max(0, min(t.active, keep_ready - s.ready))
        desired = {_g(st.stable): n}
        if t_keep:
            desired[_g(st.target)] = t_keep
        weights = {}
        if st.strategy.type is not StrategyType.ROLLING and s.ready:
            weights = {_g(st.stable): 100}
        verb = "aborted" if st.phase is RolloutPhase.ABORTED else "rolled back"
        if t_keep or s.ready < n:
            message = (f"{verb}: bringing back {st.stable.label} ({s.ready}/{n} ready); "
                       f"{st.reason}")
        else:
            message = f"{verb}: {st.stable.label} serves; {st.reason}"
    st = st.model_copy(update={"desired": desired, "weights": weights, "message": message})
    return RolloutPlan(st, tuple(events))


def _progress(inp: RolloutInput, st: RolloutStatus, t: SetState, waiting: bool
              ) -> tuple[RolloutStatus, str | None]:
    """Track progress; a rollout waiting on new replicas for too long has failed."""
    now = inp.now
    since = st.waiting_since
    if not waiting:
        since = None
    elif since is None or t.ready > st.target_ready:
        since = now                 # started waiting, or a new replica got ready
    st = st.model_copy(update={"target_ready": t.ready, "waiting_since": since})
    deadline = st.strategy.progress_deadline_s
    if since is not None and now - since > deadline:
        return st, (f"no progress for {deadline:g}s: {t.ready} replica(s) of "
                    f"{st.target.label} ready")
    return st, None


def _rolling(inp: RolloutInput, st: RolloutStatus, ctl: RolloutControl,
             events: list[RolloutEvent]) -> RolloutPlan:
    n = inp.replicas
    s = inp.sets.get(st.stable.generation, SetState())
    t = inp.sets.get(st.target.generation, SetState())
    surge = amount(st.strategy.max_surge, n, round_up=True)
    unavailable = amount(st.strategy.max_unavailable, n, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1               # as Kubernetes requires: some room to make progress
    if ctl.promote:             # all new replicas at once; old ones go as they are replaced
        surge, unavailable = max(n, 1), 0
    min_available = max(0, n - unavailable)
    t_want = min(n, t.active + max(0, n + surge - s.active - t.active))
    t_want = max(t_want, min(t.active, n))
    # not-ready old replicas go at once; ready ones only while enough stay available
    s_want = max(0, s.ready - max(0, s.ready + t.ready - min_available))
    if t.ready >= n and s.active == 0:
        return _succeeded(inp, st, events, how=" (promoted)" if ctl.promote else "")
    st, stuck = _progress(inp, st, t, waiting=t.ready < n)
    if stuck:
        return _rolled_back(inp, st, stuck, events)
    desired = {_g(st.target): t_want}
    if s_want:
        desired[_g(st.stable)] = s_want
    st = st.model_copy(update={
        "desired": desired, "weights": {},
        "message": f"rolling: {t.ready}/{n} new replicas ready, {s.active} old left "
                   f"(max surge {surge}, max unavailable {unavailable})"})
    return RolloutPlan(st, tuple(events))


def _canary(inp: RolloutInput, st: RolloutStatus, ctl: RolloutControl,
            events: list[RolloutEvent]) -> RolloutPlan:
    n, now = inp.replicas, inp.now
    steps = st.strategy.steps
    t = inp.sets.get(st.target.generation, SetState())
    if n == 0:
        return _succeeded(inp, st, events, how=" (no replicas to compare)")
    i = st.step
    held = steps[i] if i >= 0 else 0
    checks: list[CheckResult] = []
    if i >= 0 and not ctl.promote:
        checks = analyse(st.strategy.analysis, inp.canary, inp.stable)
        st = st.model_copy(update={"analysis": checks})
        if verdict(checks) is False:
            failed = next(c for c in checks if c.passed is False)
            reason = (f"{failed.name} check failed at step {i + 1}/{len(steps)} "
                      f"({held}% of traffic): {describe(failed)}")
            return _rolled_back(inp, st, reason, events, checks)
    advance = i < 0 or ctl.promote or now - st.step_started_at >= st.strategy.step_interval_s
    j = len(steps) - 1 if ctl.promote else min(i + 1, len(steps) - 1) if advance else i
    weight = steps[j]
    need = replicas_for_weight(weight, n)
    t_want = max(need, replicas_for_weight(held, n) if i >= 0 else 0)
    if advance and t.ready >= need:
        note = ""
        if checks:
            decided = verdict(checks)
            note = ("; analysis of the last step: " + "; ".join(describe(c) for c in checks)
                    if decided else
                    f"; the last step had {inp.canary.requests} request(s), too few to "
                    f"judge (min {st.strategy.analysis.min_requests}): advanced on health")
        if weight >= 100:
            return _succeeded(inp, st, events, how=" (promoted)" if ctl.promote else "",
                              note=note)
        events.append(RolloutEvent("RolloutStep",
                                   f"rollout {st.id} step {j + 1}/{len(steps)}: {weight}% of "
                                   f"traffic to {st.target.label}{note}"))
        st = st.model_copy(update={"step": j, "step_started_at": now, "analysis": []})
        held = weight
    st, stuck = _progress(inp, st, t, waiting=advance and t.ready < need)
    if stuck:
        return _rolled_back(inp, st, stuck, events)
    weights = {_g(st.stable): 100 - held, _g(st.target): held} if held else \
        {_g(st.stable): 100}
    if st.step >= 0 and held == steps[st.step]:
        message = (f"canary step {st.step + 1}/{len(steps)}: {held}% to {st.target.label}, "
                   f"held {st.strategy.step_interval_s:g}s from step_started_at")
    else:
        message = f"canary: waiting for {need} replica(s) of {st.target.label} ({t.ready} ready)"
    st = st.model_copy(update={"desired": {_g(st.stable): n, _g(st.target): t_want},
                               "weights": weights, "message": message})
    return RolloutPlan(st, tuple(events))


def _blue_green(inp: RolloutInput, st: RolloutStatus, ctl: RolloutControl,
                events: list[RolloutEvent]) -> RolloutPlan:
    n = inp.replicas
    t = inp.sets.get(st.target.generation, SetState())
    if n == 0:
        return _succeeded(inp, st, events, how=" (no replicas)")
    smoke_wanted = False
    if t.ready >= n:
        if st.strategy.smoke_path and not ctl.promote:
            if inp.smoke is None:
                smoke_wanted = True
            elif not inp.smoke.ok:
                check = CheckResult(name="smoke", passed=False, detail=inp.smoke.detail)
                return _rolled_back(inp, st, f"smoke check POST {st.strategy.smoke_path} "
                                             f"failed: {inp.smoke.detail}", events, [check])
        if not smoke_wanted:
            return _succeeded(inp, st, events, keep_stable=True,
                              how=" (promoted)" if ctl.promote else " switched")
    st, stuck = _progress(inp, st, t, waiting=t.ready < n)
    if stuck:
        return _rolled_back(inp, st, stuck, events)
    message = (f"blue-green: smoke-checking {n} replica(s) of {st.target.label}"
               if smoke_wanted else
               f"blue-green: {t.ready}/{n} replicas of {st.target.label} ready; "
               f"{st.stable.label} serves all traffic")
    st = st.model_copy(update={"desired": {_g(st.stable): n, _g(st.target): n},
                               "weights": {_g(st.stable): 100}, "message": message})
    return RolloutPlan(st, tuple(events), smoke_wanted=smoke_wanted)
