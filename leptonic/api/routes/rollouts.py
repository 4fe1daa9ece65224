"""Rollouts: their live state, the user's pause/resume/promote/abort, rollback, and the
gateway's current route of a deployment (who gets traffic, with what weight)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.models import (
    DONE_PHASES,
    Deployment,
    Rollout,
    RolloutControl,
    RolloutPhase,
)
from leptonic.core.transitions import template_hash
from leptonic.errors import Conflict, NotFound

router = APIRouter(tags=["rollouts"])


def _rollout(platform: ApiPlatform, name: str) -> Rollout:
    platform.store.get_deployment(name)          # 404 for an unknown deployment
    ro: Rollout | None = platform.store.get_rollout(name)
    if ro is None:
        raise NotFound(f"deployment {name!r} has no rollout state yet: the controller has "
                       "not seen it; try again in a moment")
    return ro


@router.get("/deployments/{name}/rollout", response_model=Rollout)
def get_rollout(name: str, platform: ApiPlatform = Depends(get_platform)) -> Rollout:
    """The latest rollout: strategy, phase, step, weights, replicas per template, the
    analysis figures, and what a user asked of it."""
    return _rollout(platform, name)


def _control(platform: ApiPlatform, name: str, verb: str, **changes: bool) -> Rollout:
    ro = _rollout(platform, name)
    st = ro.status
    if st.id == 0 or st.phase in DONE_PHASES:
        what = "no rollout yet" if st.id == 0 else f"rollout {st.id} is {st.phase}"
        raise Conflict(f"deployment {name!r} has {what}; there is nothing to {verb}. "
                       f"Start one with `leptonic deployment update {name} --photon ...`")
    ctl = ro.control if ro.control.id == st.id else RolloutControl(id=st.id)
    platform.store.set_rollout_control(name, ctl.model_copy(update=changes))
    platform.store.add_event(f"deployment/{name}", f"Rollout{verb.capitalize()}Requested",
                             f"a user asked to {verb} rollout {st.id}")
    platform.wake()
    return _rollout(platform, name)


@router.post("/deployments/{name}/rollout/pause", response_model=Rollout)
def pause(name: str, platform: ApiPlatform = Depends(get_platform)) -> Rollout:
    """Hold the rollout where it is (replicas and weights stay) until resumed."""
    return _control(platform, name, "pause", paused=True)


@router.post("/deployments/{name}/rollout/resume", response_model=Rollout)
def resume(name: str, platform: ApiPlatform = Depends(get_platform)) -> Rollout:
    """Carry on; the current step is held for its whole interval again."""
    return _control(platform, name, "resume", paused=False)


@router.post("/deployments/{name}/rollout/promote", response_model=Rollout)
def promote(name: str, platform: ApiPlatform = Depends(get_platform)) -> Rollout:
    """Skip the remaining steps, analysis and smoke check: all traffic to the new template
    as soon as its replicas are ready."""
    return _control(platform, name, "promote", promote=True, paused=False)


@router.post("/deployments/{name}/rollout/abort", response_model=Rollout)
def abort(name: str, platform: ApiPlatform = Depends(get_platform)) -> Rollout:
    """Go back to the stable template; the spec keeps asking for the new one until it is
    updated or rolled back."""
    return _control(platform, name, "abort", abort=True)


@router.post("/deployments/{name}/rollback", response_model=Deployment)
def rollback(name: str, platform: ApiPlatform = Depends(get_platform)) -> Deployment:
    """Make the spec ask for the template that served before the latest rollout again
    (photon version, env, secrets). A kept blue-green set serves again at once; otherwise
    the deployment's strategy rolls it out."""
    current: Deployment = platform.store.get_deployment(name)
    ro = _rollout(platform, name)
    st = ro.status
    back = st.stable
    if st.id == 0 or back.hash == template_hash(current.spec):
        raise Conflict(f"deployment {name!r} has no earlier version to roll back to: its "
                       f"spec already asks for {back.label}")
    spec = current.spec.model_copy(update={
        "photon": back.spec.photon, "photon_version": back.spec.photon_version,
        "env": dict(back.spec.env), "secrets": list(back.spec.secrets)})
    d: Deployment = platform.store.update_deployment_spec(
        name, spec, expected_generation=current.generation)
    platform.store.add_event(f"deployment/{name}", "RollbackRequested",
                             f"generation {d.generation}: back to {back.label}"
                             + (" (kept for rollback, serves at once)"
                                if st.phase is RolloutPhase.SUCCEEDED and st.previous
                                and st.previous.hash == back.hash else ""))
    platform.wake()
    return d


class RoutedReplica(BaseModel):
    id: str
    url: str
    template: str                   # the replica template (generation) it runs
    in_flight: int


class RouteView(BaseModel):
    """``GET /deployments/{name}/routes``: the gateway's route of this control plane."""

    deployment: str
    replicas: list[RoutedReplica]
    weights: dict[str, float]       # template -> traffic share; empty: all alike
    held: int                       # requests waiting for a replica (scaled to zero)
    hold_max_queued: int | None = None
    hold_timeout_s: float | None = None


@router.get("/deployments/{name}/routes", response_model=RouteView)
def routes(name: str, platform: ApiPlatform = Depends(get_platform)) -> RouteView:
    """Which replicas the gateway sends this deployment's requests to, right now."""
    platform.store.get_deployment(name)
    route = platform.routes.route(name)
    gateway = platform.gateway
    if route is None:
        return RouteView(deployment=name, replicas=[], weights={}, held=0)
    return RouteView(
        deployment=name,
        replicas=[RoutedReplica(id=u.replica_id, url=u.url, template=u.group,
                                in_flight=gateway.outstanding.get(u.replica_id, 0))
                  for u in route.upstreams],
        weights=dict(route.weights), held=gateway.waiting(name),
        hold_max_queued=route.hold.max_queued if route.hold else None,
        hold_timeout_s=route.hold.timeout_s if route.hold else None)
