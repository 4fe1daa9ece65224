"""Login, registration by invitation, logout, whoami; users, invitations and API tokens."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from leptonic.api.deps import ApiPlatform, bearer, client_address, get_platform, principal_of
from leptonic.auth.passwords import hash_password, verify_password
from leptonic.auth.roles import Role
from leptonic.auth.tokens import SESSION_TTL_S, Principal, create_token, hash_token
from leptonic.core.models import check_name
from leptonic.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized

router = APIRouter(tags=["auth"])

MAX_TOKEN_TTL_S = 10 * 365 * 86400


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Session(BaseModel):
    token: str
    expires_at: float
    username: str
    role: Role


class Register(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invitation: str = Field(min_length=1, max_length=256)
    username: str
    password: str = Field(max_length=1024)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str = Field(max_length=1024)
    role: Role = Role.VIEWER


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(default=None, max_length=1024)
    role: Role | None = None
    disabled: bool | None = None


class User(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: float
    last_login_at: float | None = None


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role = Role.VIEWER
    expires_in_s: float = Field(default=7 * 86400, gt=0, le=90 * 86400)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    role: Role = Role.VIEWER
    expires_in_s: float | None = Field(default=None, gt=0, le=MAX_TOKEN_TTL_S)
    deployment: str | None = None
    rate_limit_rps: float | None = Field(default=None, gt=0, le=1_000_000)


class TokenInfo(BaseModel):
    id: int
    name: str
    role: Role
    kind: str
    deployment: str | None = None
    rate_limit_rps: float | None = None
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked: bool
    created_by: str | None = None


class NewToken(TokenInfo):
    token: str = Field(description="shown once; only its hash is stored")


def _user(row: dict[str, Any]) -> User:
    return User.model_validate(row)


def _token_info(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in TokenInfo.model_fields}


# -- sessions -----------------------------------------------------------------------------
@router.post("/auth/login", response_model=Session)
def login(body: Login, request: Request, platform: ApiPlatform = Depends(get_platform)) -> Session:
    """Trade a username and password for a session token (12 h)."""
    now = time.monotonic()
    ip = client_address(request)
    limits = platform.login_limits
    wait = max(limits["user"].retry_after(body.username, now),
               limits["address"].retry_after(ip, now))
    if wait:
        raise TooManyRequests(f"too many failed logins; try again in {wait}s",
                              retry_after=wait)
    user = platform.store.find_user(body.username)
    ok = verify_password(user["password_hash"] if user else None, body.password)
    if not ok or user is None or user["disabled"]:
        limits["user"].fail(body.username, now)
        limits["address"].fail(ip, now)
        raise_unauthorized("wrong username or password")
    assert user is not None
    expires = time.time() + SESSION_TTL_S
    token, row = create_token(platform.store, f"session:{user['username']}", user["role"],
                              kind="session", user_id=user["id"], expires_at=expires,
                              created_by=f"user:{user['username']}")
    # the audit log records the call under whoever the route found (a public route has
    # no principal until now): the user who just logged in
    request.state.principal = Principal(token_id=row["id"], name=row["name"],
                                        role=Role(user["role"]), kind="session",
                                        username=user["username"], expires_at=expires)
    platform.store.update_user(user["username"], last_login_at=time.time())
    return Session(token=token, expires_at=expires, username=user["username"],
                   role=Role(user["role"]))


def raise_unauthorized(detail: str) -> None:
    raise Unauthorized(detail)


@router.post("/auth/register", response_model=User, status_code=201)
def register(body: Register, platform: ApiPlatform = Depends(get_platform)) -> User:
    """Create an account with an invitation token from an admin (used once)."""
    check_name(body.username, "username")
    row = platform.store.token_by_hash(hash_token(body.invitation.strip()))
    if (row is None or row["revoked"] or row.get("kind") != "invite"
            or (row["expires_at"] is not None and row["expires_at"] <= time.time())):
        raise_unauthorized("the invitation is not valid (unknown, used or expired)")
    assert row is not None
    user = platform.store.add_user(body.username, hash_password(body.password), row["role"])
    platform.store.revoke_token(row["id"])
    return _user(user)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, platform: ApiPlatform = Depends(get_platform)) -> Response:
    """End this session (or revoke the token used)."""
    token = bearer(request)
    if token:
        platform.store.revoke_token_hash(hash_token(token))
        platform.verifier.forget()
    return Response(status_code=204)


@router.get("/auth/whoami")
def whoami(request: Request) -> dict[str, Any]:
    p: Principal = principal_of(request)
    return {"name": p.name, "username": p.username, "role": p.role.value, "kind": p.kind,
            "expires_at": p.expires_at}


# -- users --------------------------------------------------------------------------------
@router.post("/users", response_model=User, status_code=201)
def create_user(body: UserCreate, platform: ApiPlatform = Depends(get_platform)) -> User:
    check_name(body.username, "username")
    return _user(platform.store.add_user(body.username, hash_password(body.password),
                                         body.role.value))


@router.get("/users", response_model=list[User])
def list_users(platform: ApiPlatform = Depends(get_platform)) -> list[User]:
    return [_user(u) for u in platform.store.list_users()]


@router.get("/users/{username}", response_model=User)
def get_user(username: str, platform: ApiPlatform = Depends(get_platform)) -> User:
    return _user(platform.store.get_user(username))


@router.patch("/users/{username}", response_model=User)
def update_user(username: str, body: UserPatch, request: Request,
                platform: ApiPlatform = Depends(get_platform)) -> User:
    current = platform.store.get_user(username)
    fields: dict[str, Any] = {}
    if body.password is not None:
        fields["password_hash"] = hash_password(body.password)
    if body.role is not None:
        fields["role"] = body.role.value
    if body.disabled is not None:
        fields["disabled"] = body.disabled
    losing_admin = current["role"] == "admin" and not current["disabled"] and (
        (body.role is not None and body.role is not Role.ADMIN) or body.disabled)
    if losing_admin and platform.store.count_admins() <= 1 \
            and principal_of(request).username == username:
        raise Conflict("you are the last admin user; make another admin first")
    user = platform.store.update_user(username, **fields)
    platform.verifier.forget()
    return _user(user)


@router.delete("/users/{username}", status_code=204)
def delete_user(username: str, request: Request,
                platform: ApiPlatform = Depends(get_platform)) -> Response:
    if principal_of(request).username == username:
        raise Conflict("you cannot delete your own account")
    platform.store.delete_user(username)
    platform.verifier.forget()
    return Response(status_code=204)


@router.post("/invitations", status_code=201)
def create_invitation(body: InvitationCreate, request: Request,
                      platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """An invitation token that lets one person register with ``role``."""
    expires = time.time() + body.expires_in_s
    token, row = create_token(platform.store, "invitation", body.role.value, kind="invite",
                              expires_at=expires, created_by=principal_of(request).actor)
    return {"invitation": token, "role": body.role.value, "expires_at": expires,
            "id": row["id"]}


# -- API tokens ---------------------------------------------------------------------------
@router.post("/tokens", response_model=NewToken, status_code=201)
def create_api_token(body: TokenCreate, request: Request,
                     platform: ApiPlatform = Depends(get_platform)) -> NewToken:
    """A named API token, shown once. Scoped to one deployment's gateway route when
    ``deployment`` is set."""
    check_name(body.name, "token name")
    me = principal_of(request)
    if not me.role.allows(body.role):
        raise Forbidden(f"you cannot create a token with role {body.role.value!r}, "
                        f"above your own ({me.role.value!r})")
    if body.deployment is not None:
        platform.store.get_deployment(body.deployment)
    expires = time.time() + body.expires_in_s if body.expires_in_s else None
    token, row = create_token(platform.store, body.name, body.role.value,
                              deployment=body.deployment, expires_at=expires,
                              rate_limit_rps=body.rate_limit_rps, created_by=me.actor)
    return NewToken(token=token, **_token_info(row))


@router.get("/tokens", response_model=list[TokenInfo])
def list_api_tokens(platform: ApiPlatform = Depends(get_platform)) -> list[TokenInfo]:
    return [TokenInfo.model_validate(_token_info(r)) for r in platform.store.list_tokens()]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_api_token(token_id: int, platform: ApiPlatform = Depends(get_platform)) -> Response:
    row = platform.store.get_token(token_id)
    if row.get("kind") != "api":
        raise NotFound(f"token {token_id} does not exist")
    platform.store.revoke_token(token_id)
    platform.verifier.forget()
    return Response(status_code=204)
