"""Deployments: the user's spec in, the controller's status out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leptonic.api.deps import ApiPlatform, get_platform, principal_of
from leptonic.api.model_serving import serving_for
from leptonic.core.models import (
    ENV_NAME_RE,
    MAX_REPLICAS,
    AutoscalingPolicy,
    AutoscalingSpec,
    Deployment,
    DeploymentSpec,
    Event,
    LimitsSpec,
    ModelServing,
    PhotonRef,
    PhotonVersion,
    PlacementSpec,
    ProbeSpec,
    Replica,
    Resources,
    StrategySpec,
    check_env_bounds,
    check_labels,
    check_name,
)
from leptonic.core.scheduler import too_large
from leptonic.errors import Conflict, GenerationChanged, InvalidInput, NotFound
from leptonic.observe.logs import compile_grep, follow, search_file

router = APIRouter(tags=["deployments"])


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    photon: str | None = Field(default=None,
                               description="NAME, NAME@N, NAME@vN or builtin:NAME")
    model: str | None = Field(default=None, description="NAME@ALIAS or NAME@VERSION: serve "
                              "a registered model (instead of a photon); an alias is "
                              "followed as it moves")
    monitor: bool = Field(default=True, description="with model: sample its answers for "
                          "live accuracy and drift (feedback, model-metrics)")
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, max_length=100,
                               description="secrets injected as env variables by name")
    public: bool = Field(default=False, description="serve /run/NAME without a token")
    strategy: StrategySpec | None = Field(
        default=None, description="how new versions roll out (default: rolling, 25%/25%)")
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="replicas follow the load; `replicas` is then ignored")
    probes: ProbeSpec | None = None
    drain_timeout_s: float | None = Field(default=None, ge=0, le=3600)
    limits: LimitsSpec | None = Field(default=None, description="memory, cpu, open files, "
                                      "processes per replica")
    handler_timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    debug_errors: bool | None = None
    resources: Resources | None = Field(default=None, description="cpu, memory_mb, gpu "
                                        "one replica needs of its node")
    placement: PlacementSpec | None = Field(
        default=None, description="which nodes may run the replicas: tier, node_selector "
        "(labels), gpu_models; policy: spread|pack|ray-hybrid|energy")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="for usage and cost: --by label:KEY")


class DeploymentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photon: str | None = None
    model: str | None = Field(default=None, description="serve this model version or alias "
                              "instead (NAME@ALIAS or NAME@VERSION)")
    monitor: bool | None = Field(default=None, description="sample the model's answers")
    replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    env: dict[str, str] | None = None
    secrets: list[str] | None = Field(default=None, max_length=100)
    public: bool | None = None
    strategy: StrategySpec | None = Field(
        default=None, description="fields given replace the current ones")
    # a plain object: its fields are checked together with the current ones (min <= max)
    autoscaling: dict[str, Any] | None = Field(
        default=None, description="AutoscalingSpec fields to change; null turns "
                                  "autoscaling off")
    probes: ProbeSpec | None = Field(default=None,
                                     description="fields given replace the current ones")
    drain_timeout_s: float | None = Field(default=None, ge=0, le=3600)
    limits: LimitsSpec | None = Field(default=None,
                                      description="fields given replace the current ones")
    handler_timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    debug_errors: bool | None = None
    resources: Resources | None = Field(default=None,
                                        description="fields given replace the current ones")
    placement: PlacementSpec | None = Field(
        default=None, description="fields given replace the current ones (a node_selector "
                                  "given replaces the whole selector)")
    labels: dict[str, str] | None = Field(default=None, description="replace the labels "
                                          "(usage and cost); {} removes them")
    expected_generation: int | None = Field(
        default=None, ge=1, description="apply only to this generation (409 if the spec was "
                                        "changed since); the If-Match header says the same")


#: a PATCH without an expected generation is applied to the spec as it is: when another
#: write lands between its read and its write, it is merged again this many times
MERGE_TRIES = 5


def _generation_of(if_match: str | None) -> int | None:
    """The generation in an ``If-Match`` header (``"3"``, ``W/"3"`` or ``3``)."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"If-Match {if_match!r} is not a deployment generation; send the "
                           'ETag of GET /api/v1/deployments/NAME, e.g. If-Match: "3"')
    return int(text)


def etag(response: Response, d: Deployment) -> Deployment:
    """The deployment's generation as its ETag: what a later If-Match states."""
    response.headers["ETag"] = f'"{d.generation}"'
    return d


def _deep_merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _merged(kind: type[BaseModel], current: BaseModel | None,
            given: BaseModel | dict[str, Any], *, deep: bool = True) -> Any:
    """``given``'s fields (those the client sent) over ``current``, validated again;
    with ``deep=False`` a field given (a whole mapping too) replaces the current one."""
    base = current.model_dump(mode="json") if current is not None else {}
    if isinstance(given, BaseModel):
        given = given.model_dump(mode="json", exclude_unset=True)
    try:
        return kind.model_validate(_deep_merge(base, given) if deep else {**base, **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"{kind.__name__} {where}: {first.get('msg')}") from exc


def _short(key: str, value: Any) -> str:
    if isinstance(value, ModelServing):
        return f"model={value.model}@{value.version}"
    if isinstance(value, StrategySpec):
        return f"strategy={value.type}"
    if isinstance(value, AutoscalingSpec):
        return (f"autoscaling={value.min_replicas}..{value.max_replicas} replicas at "
                f"{value.target_concurrency:g} in flight each ({value.policy.value})")
    if isinstance(value, ProbeSpec):
        return f"probes every {value.period_s:g}s"
    if isinstance(value, Resources):
        asks = [f"{value.cpu:g} CPU"] if value.cpu else []
        asks += [f"{value.memory_mb} MiB"] if value.memory_mb else []
        asks += [f"{value.gpu:g} GPU"] if value.gpu else []
        return f"resources={' '.join(asks) or 'none'}"
    if isinstance(value, PlacementSpec):
        where = [f"tier {value.tier.value}"]
        where += [f"{k}={v}" for k, v in sorted(value.node_selector.items())]
        where += [f"gpu {'|'.join(value.gpu_models)}"] if value.gpu_models else []
        where += [f"policy {value.policy.value}"] if value.policy else []
        return f"placement={' '.join(where)}"
    return f"{key}={value}"


def _check_fits(platform: ApiPlatform, resources: Resources) -> Resources:
    """Refuse a replica no node of the cluster could ever hold (a node that is down does
    not count; one that is merely full does: it may free up)."""
    alive = [n for n in platform.store.list_nodes() if n.alive]
    why = too_large(alive, resources)
    if why is not None:
        raise InvalidInput(f"resources: {why}; ask for less, or add a larger node "
                           "(`leptonic node list` shows them)")
    return resources


_BOUNDS = {"min_replicas": "--min-replicas", "max_replicas": "--max-replicas"}


def _check_predictive(spec: AutoscalingSpec | None, given: set[str],
                      had_autoscaling: bool) -> None:
    """Predictive autoscaling forecasts within bounds the user chose: a deployment that
    was not autoscaled must name them, not get the defaults by surprise."""
    if spec is None or spec.policy is not AutoscalingPolicy.PREDICTIVE or had_autoscaling:
        return
    missing = [k for k in _BOUNDS if k not in given]
    if missing:
        raise InvalidInput(
            "autoscaling policy predictive needs autoscaling bounds: set "
            + " and ".join(f"autoscaling.{k} ({_BOUNDS[k]})" for k in missing))


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not ENV_NAME_RE.match(key) or key.startswith("LEPTONIC_"):
            raise InvalidInput(f"invalid environment variable name {key!r}: use letters, "
                               "digits and '_', not starting with a digit or LEPTONIC_")
    return env


def _check_secrets(platform: ApiPlatform, names: list[str]) -> list[str]:
    """Every named secret must exist (its value is looked up when a replica starts)."""
    known = {s["name"] for s in platform.store.list_secrets()}
    missing = [n for n in names if n not in known]
    if missing:
        raise NotFound(f"secret(s) {', '.join(map(repr, missing))} do not exist; create "
                       "them with `leptonic secret create NAME`")
    return sorted(set(names))


def resolve_photon(platform: ApiPlatform, text: str) -> tuple[str, int]:
    """A photon reference -> (stored name or builtin:NAME, resolved version)."""
    ref = PhotonRef.parse(text)
    if ref.builtin:
        from leptonic.photon.builtin import BUILTINS
        if ref.name not in BUILTINS:
            raise NotFound(f"there is no built-in photon {ref.name!r}; built-ins are: "
                           + ", ".join(sorted(BUILTINS)))
        return f"builtin:{ref.name}", 0
    pv = platform.store.get_photon(ref.name, ref.version)
    return pv.name, pv.version


def _photon_defaults(platform: ApiPlatform, photon: str, version: int,
                     placement: PlacementSpec | None) -> dict[str, Any]:
    """The photon version's own resources (a classic ``resource_shape``) for a deployment
    that names none, and its GPU models unless the placement names some."""
    pv = platform.store.get_photon(photon, version)
    if pv.resources is None:
        return {}
    try:
        _check_fits(platform, pv.resources)
    except InvalidInput as exc:
        raise InvalidInput(f"photon {photon}@{version} asks for {_describe(pv)} (its "
                           f"resource_shape); {exc.detail}; or give the deployment smaller "
                           f"resources (--cpu/--memory/--gpu)") from None
    out: dict[str, Any] = {"resources": pv.resources}
    if pv.gpu_models and not (placement and placement.gpu_models):
        base = placement or PlacementSpec()
        out["placement"] = base.model_copy(update={"gpu_models": list(pv.gpu_models)})
    return out


def _describe(pv: PhotonVersion) -> str:
    r = pv.resources or Resources()
    gpus = f", {r.gpu:g} GPU ({'|'.join(pv.gpu_models) or 'any'})" if r.gpu else ""
    return f"{r.cpu:g} CPU, {r.memory_mb} MiB memory{gpus}"


@router.post("/deployments", status_code=201, response_model=Deployment)
def create_deployment(body: DeploymentCreate, response: Response, request: Request,
                      platform: ApiPlatform = Depends(get_platform)) -> Deployment:
    check_name(body.name, "deployment name")
    check_env_bounds(body.env, body.secrets)
    if body.autoscaling is not None:
        _check_predictive(body.autoscaling, body.autoscaling.model_fields_set, False)
    serving = None
    if (body.photon is None) == (body.model is None):
        raise InvalidInput("give a photon (--photon) or a registered model (--model "
                           "NAME@champion), one of them")
    if body.model is not None:
        serving = serving_for(platform, body.model).model_copy(
            update={"monitor": body.monitor})
        photon, version = serving.photon, 0
    else:
        if not body.monitor:
            raise InvalidInput("monitor is for a deployment of a registered model (--model)")
        photon, version = resolve_photon(platform, str(body.photon))
    extra: dict[str, Any] = {k: v for k, v in (
        ("strategy", body.strategy), ("autoscaling", body.autoscaling),
        ("probes", body.probes), ("drain_timeout_s", body.drain_timeout_s),
        ("limits", body.limits), ("handler_timeout_s", body.handler_timeout_s),
        ("max_concurrency", body.max_concurrency), ("debug_errors", body.debug_errors),
        ("resources", body.resources), ("placement", body.placement))
        if v is not None}
    if body.resources is not None:
        _check_fits(platform, body.resources)
    elif not photon.startswith("builtin:"):
        extra.update(_photon_defaults(platform, photon, version, body.placement))
    spec = DeploymentSpec(photon=photon, photon_version=version, replicas=body.replicas,
                          env=_check_env(body.env),
                          secrets=_check_secrets(platform, body.secrets), public=body.public,
                          model=serving, labels=check_labels(body.labels),
                          created_by=principal_of(request).actor, **extra)
    d: Deployment = platform.store.create_deployment(body.name, spec)
    what = f"model {serving.model}@{serving.version}" + (
        f" ({serving.alias})" if serving.alias else "") + f" on {photon}" if serving \
        else f"photon {photon}@{version}"
    platform.store.add_event(f"deployment/{d.name}", "Created",
                             f"{what}, {spec.replicas} replica(s)")
    platform.wake()
    return etag(response, d)


@router.get("/deployments", response_model=list[Deployment])
def list_deployments(platform: ApiPlatform = Depends(get_platform)) -> list[Deployment]:
    return list(platform.store.list_deployments())


@router.get("/deployments/{name}", response_model=Deployment)
def get_deployment(name: str, response: Response,
                   platform: ApiPlatform = Depends(get_platform)) -> Deployment:
    return etag(response, platform.store.get_deployment(name))


@router.patch("/deployments/{name}", response_model=Deployment)
def update_deployment(name: str, body: DeploymentPatch, response: Response,
                      if_match: str | None = Header(default=None),
                      platform: ApiPlatform = Depends(get_platform)) -> Deployment:
    """Change the fields given. With ``If-Match`` (or ``expected_generation``) the change
    applies only to that generation, else 409; without, it is merged into the spec as it
    is when written (a write landing in between is merged again), so concurrent changes
    of different fields all apply."""
    header = _generation_of(if_match)
    expected = body.expected_generation
    if header is not None and expected is not None and header != expected:
        raise InvalidInput(f"If-Match says generation {header} and expected_generation "
                           f"{expected}; send one of them")
    expected = expected if expected is not None else header
    for attempt in range(MERGE_TRIES):
        current: Deployment = platform.store.get_deployment(name)
        if expected is not None and current.generation != expected:
            raise GenerationChanged(
                f"deployment {name!r} is at generation {current.generation}, not "
                f"{expected}: read it again (GET) and apply the change to what it is now")
        spec, changes = _patched(platform, name, current, body)
        try:
            d: Deployment = platform.store.update_deployment_spec(
                name, spec, expected_generation=current.generation)
        except GenerationChanged:
            if expected is not None or attempt == MERGE_TRIES - 1:
                raise
            continue
        break
    if d.generation != current.generation:
        what = ", ".join(_short(k, v) for k, v in changes.items() if k != "env")
        if "env" in changes:
            what = f"{what}, env" if what else "env"
        platform.store.add_event(f"deployment/{name}", "Updated",
                                 f"generation {d.generation}: {what}")
        platform.wake()
    return etag(response, d)


def _patched(platform: ApiPlatform, name: str, current: Deployment, body: DeploymentPatch
             ) -> tuple[DeploymentSpec, dict[str, Any]]:
    """``current``'s spec with the patch's fields applied, checked; and what changed."""
    changes: dict[str, Any] = {}
    if body.photon is not None and body.model is not None:
        raise InvalidInput("give a photon or a model, not both")
    if body.photon is not None:
        changes["photon"], changes["photon_version"] = resolve_photon(platform, body.photon)
        changes["model"] = None
    if body.model is not None:
        changes["model"] = serving_for(platform, body.model)
        changes["photon"], changes["photon_version"] = changes["model"].photon, 0
    served = changes.get("model", current.spec.model)
    if body.monitor is not None and served is None:
        raise InvalidInput("monitor is for a deployment of a registered model (--model)")
    if served is not None and (body.monitor is not None or "model" in changes):
        keep = current.spec.model.monitor if current.spec.model else True
        changes["model"] = served.model_copy(update={
            "monitor": keep if body.monitor is None else body.monitor})
    if body.replicas is not None:
        changes["replicas"] = body.replicas
    if body.env is not None:
        changes["env"] = _check_env(body.env)
    if body.secrets is not None:
        changes["secrets"] = _check_secrets(platform, body.secrets)
    if body.public is not None:
        changes["public"] = body.public
    if body.labels is not None:
        changes["labels"] = check_labels(body.labels)
    given = body.model_fields_set
    if body.strategy is not None:
        changes["strategy"] = _merged(StrategySpec, current.spec.strategy, body.strategy)
    if body.probes is not None:
        changes["probes"] = _merged(ProbeSpec, current.spec.probes, body.probes)
    if body.autoscaling is not None:
        changes["autoscaling"] = _merged(AutoscalingSpec, current.spec.autoscaling,
                                         body.autoscaling)
        _check_predictive(changes["autoscaling"], set(body.autoscaling),
                          current.spec.autoscaling is not None)
    elif "autoscaling" in given:
        changes["autoscaling"] = None
    if body.drain_timeout_s is not None:
        changes["drain_timeout_s"] = body.drain_timeout_s
    if body.limits is not None:
        changes["limits"] = _merged(LimitsSpec, current.spec.limits, body.limits)
    for key in ("handler_timeout_s", "max_concurrency", "debug_errors"):
        if getattr(body, key) is not None:
            changes[key] = getattr(body, key)
    if body.resources is not None:
        changes["resources"] = _check_fits(platform, _merged(
            Resources, current.spec.resources, body.resources))
    if body.placement is not None:
        changes["placement"] = _merged(PlacementSpec, current.spec.placement, body.placement,
                                       deep=False)
    if body.replicas is not None and current.spec.autoscaling is not None \
            and changes.get("autoscaling", current.spec.autoscaling) is not None:
        a = current.spec.autoscaling
        raise Conflict(f"deployment {name!r} is autoscaled ({a.min_replicas}..{a.max_replicas} "
                       "replicas): change its bounds (--min-replicas/--max-replicas) or turn "
                       "autoscaling off (--no-autoscaling) to set a replica count")
    spec = current.spec.model_copy(update=changes)
    if "env" in changes or "secrets" in changes:    # a spec from before the bounds stays
        check_env_bounds(spec.env, spec.secrets)
    return spec, changes


@router.delete("/deployments/{name}", status_code=202, response_model=Deployment)
def delete_deployment(name: str, platform: ApiPlatform = Depends(get_platform)) -> Deployment:
    d: Deployment = platform.store.mark_deleting(name)
    platform.store.add_event(f"deployment/{name}", "Deleting", "delete requested")
    platform.wake()
    return d


@router.get("/deployments/{name}/replicas", response_model=list[Replica])
def deployment_replicas(name: str, platform: ApiPlatform = Depends(get_platform)) -> list[Replica]:
    platform.store.get_deployment(name)
    return list(platform.store.list_replicas(name))


@router.get("/deployments/{name}/events", response_model=list[Event])
def deployment_events(name: str, limit: int = Query(100, ge=1, le=1000),
                      platform: ApiPlatform = Depends(get_platform)) -> list[Event]:
    platform.store.get_deployment(name)
    return list(platform.store.list_events(f"deployment/{name}", limit))


def _log_sources(platform: ApiPlatform, name: str, replica: str | None) -> dict[str, str]:
    reps = platform.store.list_replicas(name)
    if replica is not None:
        reps = [r for r in reps if r.id == replica]
    return {r.id: r.log_path for r in reps if r.log_path}


@router.get("/deployments/{name}/logs", response_model=None)
def deployment_logs(name: str, tail: int = Query(200, ge=0, le=10_000),
                    replica: str | None = None, follow_: bool = Query(False, alias="follow"),
                    grep: str | None = Query(None, max_length=200,
                                             description="only lines matching this regex"),
                    ignore_case: bool = False,
                    platform: ApiPlatform = Depends(get_platform)
                    ) -> PlainTextResponse | StreamingResponse:
    """The last ``tail`` lines of each replica's log, prefixed ``[replica-id] ``; with
    ``follow=true`` the response keeps streaming new lines. ``grep`` keeps the lines that
    match a regular expression (searching the rotated files too)."""
    pattern = compile_grep(grep, ignore_case)
    platform.store.get_deployment(name)
    sources = _log_sources(platform, name, replica)
    if replica is not None and not sources:
        raise NotFound(f"deployment {name!r} has no replica {replica!r}")
    lines = [f"[{rid}] {line}" for rid, path in sources.items()
             for line in search_file(path, tail, pattern)] if tail else []
    if not follow_:
        return PlainTextResponse("".join(f"{line}\n" for line in lines))

    async def stream() -> AsyncIterator[str]:
        for line in lines:
            yield f"{line}\n"

        async def current() -> dict[str, str]:
            return await asyncio.to_thread(_log_sources, platform, name, replica)

        async for rid, line in follow(current):
            if pattern is not None and not pattern.search(line):
                continue
            yield f"[{rid}] {line}\n"

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8",
                             headers={"cache-control": "no-cache"})
