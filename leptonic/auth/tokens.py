"""API tokens: ``lep_`` + 43 random URL-safe characters, stored only as their sha256.

A token has high entropy, so a fast hash is the right tool (a slow password hash would
only make every request slower); the clear token exists once, when it is created.

Kinds: ``api`` (created by an admin, optional expiry, optional deployment scope and
gateway rate limit), ``session`` (from a password login, short-lived) and ``invite``
(lets one person register; never authenticates anything else).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from leptonic.auth.ratelimit import TokenBuckets
from leptonic.auth.roles import Role
from leptonic.config import DataDir
from leptonic.gateway.proxy import Refusal

PREFIX = "lep_"
SESSION_TTL_S = 12 * 3600


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a bearer token."""

    token_id: int
    name: str                       # the token's name
    role: Role
    kind: str = "api"
    username: str | None = None     # the user the token acts for, if any
    deployment: str | None = None   # only /run/<deployment> when set
    rate_limit_rps: float | None = None
    expires_at: float | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.username}" if self.username else f"token:{self.name}"


def create_token(store: Any, name: str, role: str = "admin", *, kind: str = "api",
                 user_id: int | None = None, deployment: str | None = None,
                 expires_at: float | None = None, rate_limit_rps: float | None = None,
                 created_by: str | None = None) -> tuple[str, dict[str, Any]]:
    """Store a new token's hash; return the token itself (shown once) and its row."""
    token = new_token()
    row = store.insert_token(name=name, token_hash=hash_token(token), role=role, kind=kind,
                             user_id=user_id, deployment=deployment, expires_at=expires_at,
                             rate_limit_rps=rate_limit_rps, created_by=created_by)
    return token, row


def ensure_admin_token(store: Any, layout: DataDir) -> str | None:
    """On first start: create the admin token and write it to ``DATA_DIR/admin-token``
    (mode 0600, created exclusively). Returns the new token, or None if one exists."""
    path = layout.admin_token
    if path.exists() and store.count_tokens() > 0:
        return None
    token = new_token()
    tmp = path.with_name(f".admin-token-{os.getpid()}")
    tmp.unlink(missing_ok=True)         # left by a crash between open and rename
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    store.insert_token(name="admin", token_hash=hash_token(token), role="admin",
                       created_by="leptonic up")
    os.replace(tmp, path)      # the file appears only once its hash is stored
    return token


class TokenVerifier:
    """Resolves bearer tokens to principals, with a short in-memory cache so the gateway
    does not touch the database on every request. Revocations take effect within
    ``ttl_s`` seconds (at once in the process that revoked)."""

    def __init__(self, store: Any, ttl_s: float = 5.0, max_entries: int = 10_000,
                 is_public: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.is_public = is_public or (lambda _name: False)
        self.buckets = TokenBuckets()
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop the cache (after a revocation or a role change in this process)."""
        with self._lock:
            self._cache.clear()

    def authenticate(self, token: str | None) -> Principal | None:
        if not token or not token.startswith(PREFIX) or len(token) > 256:
            return None
        now = time.monotonic()
        digest = hash_token(token)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            principal = hit[0]
        else:
            principal = self._load(digest)
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
                self._cache[digest] = (principal, now + self.ttl_s)
        if principal is not None and principal.expires_at is not None \
                and principal.expires_at <= time.time():
            return None
        return principal

    def _load(self, digest: str) -> Principal | None:
        row = self.store.token_by_hash(digest)
        if row is None or row["revoked"] or row.get("kind", "api") == "invite":
            return None
        username = None
        if row.get("user_id") is not None:
            user = self.store.user_by_id(row["user_id"])
            if user is None or user["disabled"]:
                return None
            username = user["username"]
        self.store.touch_token(row["id"], time.time())
        return Principal(token_id=row["id"], name=row["name"], role=Role(row["role"]),
                         kind=row.get("kind") or "api", username=username,
                         deployment=row.get("deployment"),
                         rate_limit_rps=row.get("rate_limit_rps"),
                         expires_at=row.get("expires_at"))

    def verify(self, token: str | None) -> bool:
        return self.authenticate(token) is not None

    def authorize_run(self, token: str | None, deployment: str) -> Refusal | bool:
        """The gateway's check for ``/run/{deployment}/...``."""
        principal = self.authenticate(token)
        if principal is None:
            return bool(self.is_public(deployment))
        if principal.deployment is not None and principal.deployment != deployment:
            return Refusal(403, "Forbidden",
                           f"this token may only call deployment {principal.deployment!r}")
        if principal.rate_limit_rps:
            wait = self.buckets.take(str(principal.token_id), principal.rate_limit_rps,
                                     time.monotonic())
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                return Refusal(429, "Too many requests",
                               f"token {principal.name!r} is limited to "
                               f"{principal.rate_limit_rps:g} requests/s; retry in {retry}s",
                               ((b"retry-after", str(retry).encode()),))
        return True
