"""API tokens: ``lep_`` + 43 random URL-safe characters + an 8-hex-digit checksum, stored
only as their sha256.

A token has high entropy, so a fast hash is the right tool (a slow password hash would
only make every request slower); the clear token exists once, when it is created.

The checksum (CRC32 of the random part, GitHub-style) lets the verifier refuse a token
that cannot exist — a typo, a guess, a flood of random strings — without a store query.
It is not a secret and proves nothing: a well-formed token still has to be in the store.

Kinds: ``api`` (created by an admin, optional expiry, optional deployment scope and
gateway rate limit), ``session`` (from a password login, short-lived) and ``invite``
(lets one person register; never authenticates anything else).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leptonic.auth.ratelimit import FailureWindow, TokenBuckets
from leptonic.auth.roles import Role
from leptonic.config import DataDir
from leptonic.core.routes import Refusal
from leptonic.errors import TooManyRequests

if TYPE_CHECKING:
    from leptonic.store.store import Store

PREFIX = "lep_"
SESSION_TTL_S = 12 * 3600

# Failed authentication per client address (docs/SECURITY.md): past FAILURE_LIMIT bad
# tokens within FAILURE_WINDOW_S, that address's requests whose token is not known to be
# valid get 429 without a store query; known-valid tokens keep being served.
FAILURE_LIMIT = 20
FAILURE_WINDOW_S = 10.0
# ... and those 429s are held this long before they are sent, so that a client that waits
# for each answer (every brute-force tool) sends a few requests a second per connection
# rather than as many as the server can refuse (pam_faildelay's idea).
THROTTLE_DELAY_S = 0.1
# Hashes known not to be a valid token: at most NEGATIVE_MAX_ENTRIES (least recently
# seen dropped first), each for NEGATIVE_TTL_S, so a token created by another control
# plane works here within that long (at once in the process that created it).
NEGATIVE_MAX_ENTRIES = 10_000
NEGATIVE_TTL_S = 10.0

# Telling the formats apart: the random part is always token_urlsafe(32), 43 characters,
# so a token of the current format is exactly 55 characters (prefix, 43, 8 hex digits)
# and one of the old, checksum-less format (every token made before the checksum, e.g.
# existing DATA_DIR/admin-token files) exactly 47. Any other shape cannot exist.
_RANDOM_CHARS = 43
_CHECK_CHARS = 8
TOKEN_LENGTH = len(PREFIX) + _RANDOM_CHARS + _CHECK_CHARS
OLD_TOKEN_LENGTH = len(PREFIX) + _RANDOM_CHARS
_RANDOM_RE = re.compile(rf"[A-Za-z0-9_-]{{{_RANDOM_CHARS}}}")


def _checksum(random_part: str) -> str:
    return f"{zlib.crc32(random_part.encode()):08x}"


def new_token() -> str:
    random_part = secrets.token_urlsafe(32)
    return PREFIX + random_part + _checksum(random_part)


def could_exist(token: str) -> bool:
    """Is ``token`` shaped like a token leptonic makes (and, if of the current format, is
    its checksum right)? False means no store holds it; True proves nothing more."""
    n = len(token)
    if not token.startswith(PREFIX):
        return False
    if n == TOKEN_LENGTH:
        random_part = token[len(PREFIX):OLD_TOKEN_LENGTH]
        return bool(_RANDOM_RE.fullmatch(random_part)) \
            and token[OLD_TOKEN_LENGTH:] == _checksum(random_part)
    if n == OLD_TOKEN_LENGTH:      # the old format: no checksum, the store decides
        return bool(_RANDOM_RE.fullmatch(token, len(PREFIX)))
    return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Every live verifier of this process, so that creating a token drops its hash from their
# negative caches (whoever creates it need not know which verifiers exist).
_VERIFIERS: weakref.WeakSet[TokenVerifier] = weakref.WeakSet()


def _created(digest: str) -> None:
    for verifier in list(_VERIFIERS):
        verifier.created(digest)


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


def create_token(store: Store, name: str, role: str = "admin", *, kind: str = "api",
                 user_id: int | None = None, deployment: str | None = None,
                 expires_at: float | None = None, rate_limit_rps: float | None = None,
                 created_by: str | None = None) -> tuple[str, dict[str, Any]]:
    """Store a new token's hash; return the token itself (shown once) and its row."""
    token = new_token()
    digest = hash_token(token)
    row = store.insert_token(name=name, token_hash=digest, role=role, kind=kind,
                             user_id=user_id, deployment=deployment, expires_at=expires_at,
                             rate_limit_rps=rate_limit_rps, created_by=created_by)
    _created(digest)
    return token, row


def ensure_admin_token(store: Store, layout: DataDir) -> str | None:
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
    digest = hash_token(token)
    store.insert_token(name="admin", token_hash=digest, role="admin",
                       created_by="leptonic up")
    _created(digest)
    os.replace(tmp, path)      # the file appears only once its hash is stored
    return token


class TokenVerifier:
    """Resolves bearer tokens to principals, with short in-memory caches so that neither
    a valid token nor a bad one touches the database on every request.

    * valid tokens: cached ``ttl_s`` seconds; revocations take effect within that long (at
      once in the process that revoked, which calls :meth:`forget`);
    * tokens that cannot exist (:func:`could_exist`): refused without a store query;
    * hashes the store did not know: a bounded negative cache (``NEGATIVE_*``);
    * failures per client address (``FAILURE_*``): past the limit, only tokens this
      verifier has seen valid are looked at; everything else gets :class:`TooManyRequests`.
    """

    def __init__(self, store: Store, ttl_s: float = 5.0, max_entries: int = 10_000,
                 is_public: Callable[[str], bool] | None = None, *,
                 failure_limit: int = FAILURE_LIMIT,
                 failure_window_s: float = FAILURE_WINDOW_S,
                 negative_ttl_s: float = NEGATIVE_TTL_S,
                 negative_max_entries: int = NEGATIVE_MAX_ENTRIES) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.is_public = is_public or (lambda _name: False)
        self.buckets = TokenBuckets()
        self.failures = FailureWindow(failure_limit, failure_window_s)
        self.negative_ttl_s = negative_ttl_s
        self.negative_max_entries = negative_max_entries
        # digest -> (principal, fresh until, generation). An entry that is no longer fresh
        # (expired, or from before a forget()) is re-read from the store, but it still
        # marks the token as known-valid: a throttled address may use it.
        self._cache: dict[str, tuple[Principal, float, int]] = {}
        self._generation = 0
        self._negative: OrderedDict[str, float] = OrderedDict()   # digest -> until
        self._lock = threading.Lock()
        _VERIFIERS.add(self)

    def forget(self) -> None:
        """Make every cached answer stale (after a revocation, a role change or a user
        enabled again in this process): the next use of each token asks the store."""
        with self._lock:
            self._generation += 1
            self._negative.clear()

    def created(self, digest: str) -> None:
        """A token with this hash was just stored: it must not stay known-bad."""
        with self._lock:
            self._negative.pop(digest, None)

    def authenticate(self, token: str | None, client: str | None = None, *,
                     memory_only: bool = False) -> Principal | None:
        """The principal of ``token``, or None. With ``client`` (the caller's address) a
        bad token counts against that address, and an address over the limit gets
        :class:`TooManyRequests` (with ``retry_after``) for any token not known valid.
        With ``memory_only``, :class:`NeedsStore` where the answer needs a store query
        (nothing is counted then: ask again without it, off the event loop)."""
        if not token:
            return None
        now = time.monotonic()
        digest, hit, fresh = self._lookup(token, now)
        if fresh:
            return _unexpired(hit[0])
        if client is not None and hit is None:
            wait = self.failures.retry_after(client, now)
            if wait:
                raise TooManyRequests(
                    f"too many requests with a token that is not valid from {client}; "
                    f"retry in {wait}s", retry_after=wait)
        if not digest or not could_exist(token) or self._known_bad(digest, now):
            self._failed(client, now)
            return None
        if memory_only:
            raise NeedsStore
        principal = self._load(digest)
        with self._lock:
            if principal is None:
                self._cache.pop(digest, None)
                self._negative[digest] = now + self.negative_ttl_s
                self._negative.move_to_end(digest)
                while len(self._negative) > self.negative_max_entries:
                    self._negative.popitem(last=False)
            else:
                if digest not in self._cache and len(self._cache) >= self.max_entries:
                    self._cache.clear()
                self._cache[digest] = (principal, now + self.ttl_s, self._generation)
        if principal is None:
            self._failed(client, now)
            return None
        return _unexpired(principal)

    def _lookup(self, token: str, now: float) -> tuple[str, Any, bool]:
        """``token``'s digest ("" if too long to be one), its cache entry, and whether
        that entry is fresh."""
        digest = hash_token(token) if len(token) <= 256 else ""
        hit = self._cache.get(digest)
        return digest, hit, hit is not None and hit[1] > now and hit[2] == self._generation

    def fresh(self, token: str) -> Principal | None:
        """The principal of ``token`` if this verifier has it cached and fresh, else None
        (which proves nothing: ask :meth:`authenticate`). Never touches the store."""
        hit = self._cache.get(hash_token(token)) if len(token) <= 256 else None
        if hit is None or hit[1] <= time.monotonic() or hit[2] != self._generation:
            return None
        return _unexpired(hit[0])

    def _known_bad(self, digest: str, now: float) -> bool:
        with self._lock:
            until = self._negative.get(digest)
            if until is None:
                return False
            if until <= now:
                del self._negative[digest]
                return False
            self._negative.move_to_end(digest)
            return True

    def _failed(self, client: str | None, now: float) -> None:
        if client is not None:
            self.failures.fail(client, now)

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

    def authorize_run(self, token: str | None, deployment: str,
                      client: str | None = None, *, memory_only: bool = False
                      ) -> Refusal | bool:
        """The gateway's check for ``/run/{deployment}/...`` from address ``client``
        (``memory_only``: :class:`NeedsStore` rather than a store query; the token is
        hashed once either way on the common path, a cached token)."""
        try:
            principal = self.authenticate(token, client, memory_only=memory_only)
        except TooManyRequests as exc:
            if self.is_public(deployment):
                return True         # served as anonymous, and no store query was made
            retry = int(exc.extra["retry_after"])
            return Refusal(429, "Too many requests", exc.detail,
                           ((b"retry-after", str(retry).encode()),), THROTTLE_DELAY_S)
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


class NeedsStore(Exception):
    """A ``memory_only`` check would have to query the store."""


def _unexpired(principal: Principal) -> Principal | None:
    if principal.expires_at is not None and principal.expires_at <= time.time():
        return None
    return principal
