"""The model registry: versions with their artifacts, aliases behind a promotion gate, and
the history of every alias move.

A version is registered by uploading its artifact with what the client knows of it
(``meta``: signature, metrics, params, data set fingerprint, drift reference, lineage).
The control plane never loads the artifact: unpickling a joblib file runs its code, and
that is only done by user code in its sandbox (a replica, a training job). The file is
written under ``DATA_DIR/models/<model>/<version>/`` (0600) with its SHA-256, then the row.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leptonic.api.deps import ApiPlatform, get_platform, principal_of
from leptonic.api.model_serving import follow_alias
from leptonic.core.models import check_name
from leptonic.core.registry import (
    AliasMove,
    ModelVersion,
    RegisteredModel,
    VersionMeta,
    check_alias,
    gate,
    parse_requirement,
)
from leptonic.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from leptonic.store.model_files import register, registered_event, version_dir

router = APIRouter(tags=["models"])
MAX_META_BYTES = 8 << 20              # a drift reference of many features fits


class AliasSet(BaseModel):
    """Move an alias to a version, if it passes the gate."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    require: list[str] = Field(default_factory=list, max_length=32,
                               description="each METRIC OP NUMBER, e.g. 'f1>=0.9'")
    better_than: str | None = Field(
        default=None, description="an alias (e.g. champion) whose version this one must beat")
    metric: str | None = Field(default=None, max_length=64,
                               description="the metric better_than compares (default: f1, "
                                           "accuracy or r2, whichever both have)")


def _dir(platform: ApiPlatform, name: str, version: int) -> Path:
    return version_dir(platform.layout.models, name, version)


def _parse_meta(text: str) -> VersionMeta:
    if len(text.encode()) > MAX_META_BYTES:
        raise PayloadTooLarge(f"meta is over {MAX_META_BYTES >> 20} MiB")
    try:
        return VersionMeta.model_validate_json(text or "{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "meta"
        raise InvalidInput(f"meta: {where}: {first['msg']}") from exc


@router.post("/models/{name}/versions", status_code=201, response_model=ModelVersion)
async def register_version(name: str, request: Request, file: UploadFile = File(...),
                           meta: str = Form("{}"),
                           platform: ApiPlatform = Depends(get_platform)) -> ModelVersion:
    """Register a new version of model ``name`` (created with its first version) from its
    artifact (``.joblib``/``.pkl``/``.skops`` for scikit-learn, ``.pt``/``.ts``/``.pt2``
    for torch) and ``meta`` (JSON: signature, metrics, params, dataset, reference,
    lineage, tags)."""
    check_name(name, "model name")
    parsed = _parse_meta(meta)
    by = principal_of(request).actor
    version: ModelVersion = await asyncio.to_thread(
        register, platform.store, platform.layout.models, name,
        file.filename or "model.joblib", parsed, file.file, by)
    await asyncio.to_thread(platform.store.add_event, f"model/{name}", "Registered",
                            registered_event(version))
    return version


@router.get("/models", response_model=list[RegisteredModel])
def list_models(platform: ApiPlatform = Depends(get_platform)) -> list[RegisteredModel]:
    models: list[RegisteredModel] = platform.store.list_models()
    return models


@router.get("/models/{name}", response_model=RegisteredModel)
def get_model(name: str, platform: ApiPlatform = Depends(get_platform)) -> RegisteredModel:
    model: RegisteredModel = platform.store.get_model(name)
    return model


def resolve(platform: ApiPlatform, name: str, ref: str) -> ModelVersion:
    """``ref`` is a version number (``3``, ``v3``), an alias or ``latest``."""
    store = platform.store
    if ref == "latest":
        latest = store.get_model(name).latest
        if latest is None:
            raise NotFound(f"model {name!r} has no versions")
        version: ModelVersion = store.get_model_version(name, latest)
        return version
    digits = ref[1:] if ref[:1] == "v" else ref
    if digits.isdigit():
        version = store.get_model_version(name, int(digits))
        return version
    version = store.get_model_version(name, store.resolve_model_alias(name, check_alias(ref)))
    return version


@router.get("/models/{name}/versions/{ref}", response_model=ModelVersion)
def get_version(name: str, ref: str, platform: ApiPlatform = Depends(get_platform)) -> ModelVersion:
    """One version, by number, alias or ``latest``."""
    return resolve(platform, name, ref)


@router.get("/models/{name}/versions/{ref}/artifact")
def download_artifact(name: str, ref: str,
                      platform: ApiPlatform = Depends(get_platform)) -> FileResponse:
    """The version's artifact file, as registered (its SHA-256 is in the version)."""
    version = resolve(platform, name, ref)
    path = _dir(platform, name, version.version) / version.artifact
    if not path.is_file():
        raise NotFound(f"the artifact of {name}@{version.version} is missing from the data "
                       f"dir ({path}); register the model again")
    return FileResponse(path, filename=version.artifact,
                        media_type="application/octet-stream",
                        headers={"x-leptonic-sha256": version.sha256})


@router.put("/models/{name}/aliases/{alias}", response_model=AliasMove)
def set_alias(name: str, alias: str, body: AliasSet, request: Request,
              platform: ApiPlatform = Depends(get_platform)) -> AliasMove:
    """Point ``alias`` at a version, if the version passes the gate: every ``require``
    holds on its metrics and, with ``better_than``, it beats the version that alias holds
    now. A refusal is 409 with the figures."""
    check_alias(alias)
    requires = [parse_requirement(r) for r in body.require]
    if body.better_than is not None:
        check_alias(body.better_than)
    store = platform.store
    candidate: ModelVersion = store.get_model_version(name, body.version)
    current = store.get_model(name).aliases.get(alias)
    incumbent = None
    if body.better_than is not None:
        held = store.get_model(name).aliases.get(body.better_than)
        incumbent = store.get_model_version(name, held) if held is not None else None
    failures = gate(candidate, requires, incumbent, better_than=body.better_than,
                    metric=body.metric)
    if failures:
        raise Conflict(f"version {body.version} of model {name!r} may not become {alias}: "
                       + "; ".join(failures))
    move: AliasMove = store.move_model_alias(name, alias, body.version, current,
                                             principal_of(request).actor)
    store.add_event(f"model/{name}", "AliasMoved",
                    f"{alias}: version {move.from_version or '-'} -> {move.to_version}")
    follow_alias(platform, name, alias, candidate, principal_of(request).actor)
    return move


@router.delete("/models/{name}/aliases/{alias}", response_model=AliasMove)
def remove_alias(name: str, alias: str, request: Request,
                 platform: ApiPlatform = Depends(get_platform)) -> AliasMove:
    store = platform.store
    current = store.get_model(name).aliases.get(check_alias(alias))
    if current is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    move: AliasMove = store.move_model_alias(name, alias, None, current,
                                             principal_of(request).actor)
    store.add_event(f"model/{name}", "AliasRemoved", f"{alias} (was version {current})")
    return move


@router.get("/models/{name}/history", response_model=list[AliasMove])
def alias_history(name: str, platform: ApiPlatform = Depends(get_platform)) -> list[AliasMove]:
    """Every alias move of the model, oldest first: which version held which alias when."""
    moves: list[AliasMove] = platform.store.model_alias_history(name)
    return moves


@router.delete("/models/{name}/versions/{version}", status_code=204)
def delete_version(name: str, version: int, platform: ApiPlatform = Depends(get_platform)
                   ) -> Response:
    """Remove one version and its artifact (409 while an alias points at it)."""
    platform.store.delete_model_version(name, version)
    shutil.rmtree(_dir(platform, name, version), ignore_errors=True)
    platform.store.add_event(f"model/{name}", "VersionDeleted", f"version {version}")
    return Response(status_code=204)


@router.delete("/models/{name}", status_code=204)
def delete_model(name: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    """Remove a model with every version, alias and artifact."""
    platform.store.delete_model(name)
    shutil.rmtree(Path(platform.layout.models) / name, ignore_errors=True)
    return Response(status_code=204)

