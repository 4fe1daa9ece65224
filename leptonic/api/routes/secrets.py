"""Secrets: written once, encrypted at rest, injected into replicas by name, never read
back through the API."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from leptonic.api.deps import ApiPlatform, get_platform, principal_of
from leptonic.core.models import ENV_NAME_RE

router = APIRouter(tags=["secrets"])
MAX_SECRET_BYTES = 64 * 1024


class SecretCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    value: str = Field(max_length=MAX_SECRET_BYTES)


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(max_length=MAX_SECRET_BYTES)


class SecretInfo(BaseModel):
    """A secret's metadata; its value is never returned."""

    name: str
    created_at: float
    updated_at: float
    created_by: str | None = None


def check_secret_name(name: str) -> str:
    from leptonic.errors import InvalidInput
    if not ENV_NAME_RE.match(name) or name.startswith("LEPTONIC_") or len(name) > 64:
        raise InvalidInput(f"invalid secret name {name!r}: it becomes an environment "
                           "variable, so use letters, digits and '_' (not starting with a "
                           "digit or LEPTONIC_), at most 64 characters")
    return name


@router.post("/secrets", status_code=201, response_model=SecretInfo)
def create_secret(body: SecretCreate, request: Request,
                  platform: ApiPlatform = Depends(get_platform)) -> SecretInfo:
    check_secret_name(body.name)
    meta = platform.store.put_secret(body.name, platform.secrets.encrypt(body.value),
                                     principal_of(request).actor, create=True)
    return SecretInfo.model_validate(meta)


@router.put("/secrets/{name}", response_model=SecretInfo)
def update_secret(name: str, body: SecretValue, request: Request,
                  platform: ApiPlatform = Depends(get_platform)) -> SecretInfo:
    meta = platform.store.put_secret(name, platform.secrets.encrypt(body.value),
                                     principal_of(request).actor, create=False)
    return SecretInfo.model_validate(meta)


@router.get("/secrets", response_model=list[SecretInfo])
def list_secrets(platform: ApiPlatform = Depends(get_platform)) -> list[SecretInfo]:
    return [SecretInfo.model_validate(s) for s in platform.store.list_secrets()]


@router.delete("/secrets/{name}", status_code=204)
def delete_secret(name: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    platform.store.delete_secret(name)
    return Response(status_code=204)
