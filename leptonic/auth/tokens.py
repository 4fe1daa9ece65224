"""API tokens: ``lep_`` + 43 random URL-safe characters, stored only as their sha256.

A token has high entropy, so a fast hash is the right tool (a slow password hash would
only make every request slower); the clear token exists once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from typing import Any

from leptonic.config import DataDir

PREFIX = "lep_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Any, name: str, role: str = "admin",
                 expires_at: float | None = None) -> str:
    """Store a new token's hash and return the token itself (shown once)."""
    token = new_token()
    store.add_token(name, hash_token(token), role, expires_at)
    return token


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
    store.add_token("admin", hash_token(token), "admin")
    os.replace(tmp, path)      # the file appears only once its hash is stored
    return token


class TokenVerifier:
    """Checks bearer tokens against the store, with a short in-memory cache so the gateway
    does not touch the database on every request. Revocations take effect within
    ``ttl_s`` seconds."""

    def __init__(self, store: Any, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def authorize_run(self, token: str | None, deployment: str) -> bool:
        """May this token call ``/run/{deployment}/...``? (the gateway's check)"""
        return self.verify(token)

    def verify(self, token: str | None) -> bool:
        if not token or not token.startswith(PREFIX) or len(token) > 256:
            return False
        now = time.monotonic()
        digest = hash_token(token)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        row = self.store.token_by_hash(digest)
        ok = bool(row is not None and hmac.compare_digest(row["hash"], digest)
                  and not row["revoked"]
                  and (row["expires_at"] is None or row["expires_at"] > time.time()))
        if ok and row is not None:
            self.store.touch_token(row["id"], time.time())
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[digest] = (ok, now + self.ttl_s)
        return ok
