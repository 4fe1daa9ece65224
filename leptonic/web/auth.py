"""Dashboard login: one check for every way in, and the HttpOnly session cookie.

``check_login`` is the only place that decides whether a login form is good: an API token
(the admin token on a fresh platform) or a username and password (``auth.passwords``).
A good login gets a *session token* (the same kind ``POST /api/v1/auth/login`` issues,
12 h, revoked at logout), kept in an HttpOnly, SameSite=Strict cookie; page scripts never
see it.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from leptonic.auth.tokens import SESSION_TTL_S, Principal, create_token, hash_token
from leptonic.errors import TooManyRequests
from leptonic.web.platform import DashboardPlatform

COOKIE = "leptonic_session"


class LoginFailed(Exception):
    """The form did not log anyone in; ``str(exc)`` says why, safe to show."""

    def __init__(self, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_login(platform: DashboardPlatform, form: dict[str, str], address: str) -> Principal:
    """Who the login form proves to be, or LoginFailed.

    The form has ``token`` (an API token), or ``username`` and ``password``. Failures
    count against the platform's per-user and per-address limits, as API logins do."""
    now = time.monotonic()
    limits = platform.login_limits
    username = (form.get("username") or "").strip()
    wait = limits["address"].retry_after(address, now)
    if username:
        wait = max(wait, limits["user"].retry_after(username, now))
    if wait:
        raise LoginFailed(f"too many failed logins; try again in {wait}s", wait)
    token = (form.get("token") or "").strip()
    principal: Principal | None = None
    if token:
        principal = platform.verifier.authenticate(token)
        if principal is not None and principal.deployment is not None:
            principal = None            # a token scoped to one deployment's gateway route
    elif username:
        principal = _password_login(platform, username, form.get("password") or "")
    else:
        raise LoginFailed("give an API token, or a username and password")
    if principal is None:
        limits["address"].fail(address, now)
        if username:
            limits["user"].fail(username, now)
        raise LoginFailed("wrong username or password" if username else
                          "that token is not valid (unknown, revoked or expired)")
    return principal


def _password_login(platform: DashboardPlatform, username: str, password: str) -> Principal | None:
    from leptonic.auth.passwords import verify_password
    from leptonic.auth.roles import Role

    user = platform.store.find_user(username)
    ok = verify_password(user["password_hash"] if user else None, password)
    if not ok or user is None or user["disabled"]:
        return None
    return Principal(token_id=0, name=f"user:{username}", role=Role(user["role"]),
                     kind="session", username=username)


def start_session(platform: DashboardPlatform, principal: Principal, response: Response,
                  secure: bool) -> None:
    """Issue a session token for ``principal`` and set it as the cookie."""
    expires = time.time() + SESSION_TTL_S
    user_id = None
    if principal.username:
        user = platform.store.find_user(principal.username)
        user_id = user["id"] if user else None
    token, _ = create_token(platform.store, f"dashboard:{principal.name}"[:64],
                            principal.role.value, kind="session", user_id=user_id,
                            expires_at=expires, created_by=principal.actor)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL_S), httponly=True,
                        samesite="strict", secure=secure, path="/")


def session_principal(platform: DashboardPlatform, request: Request) -> Principal | None:
    """The principal of the request's session cookie, if it is (still) valid."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    address = request.client.host if request.client else "unknown"
    try:
        principal: Principal | None = platform.verifier.authenticate(token, address)
    except TooManyRequests:
        return None         # an address sending bad tokens: not looked up, log in again
    if principal is None or principal.deployment is not None:
        return None
    return principal


def cross_origin(request: Request) -> str | None:
    """Why a state-changing form post is not from the dashboard's own pages, or None.

    A browser sends ``Origin`` with every cross-origin POST (``Referer`` where an old one
    does not); either must name this very host (scheme aside: a TLS-terminating proxy in
    front makes the scheme differ). A request with neither is not from a browser form —
    curl, scripts — and is let through as before: it carries no ambient cookie to abuse.
    """
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if source is None:
        return None
    if source == "null":
        return "the request comes from an opaque origin"
    netloc = urlsplit(source).netloc.lower()
    if not host or netloc != host:
        what = "Origin" if origin is not None else "Referer"
        return f"{what} {source!r} is not this dashboard ({host or 'no Host header'})"
    return None


def end_session(platform: DashboardPlatform, request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        platform.store.revoke_token_hash(hash_token(token))
        platform.verifier.forget()
    response.delete_cookie(COOKIE, path="/")
