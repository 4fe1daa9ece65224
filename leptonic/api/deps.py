"""Request dependencies: the platform, and the bearer-token check every route uses."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from leptonic.errors import Unauthorized


def get_platform(request: Request) -> Any:
    return request.app.state.platform


def require_token(request: Request) -> str:
    """Every ``/api/v1`` route needs ``Authorization: Bearer TOKEN``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this API needs a token: send 'Authorization: Bearer TOKEN' "
                           "(the admin token is in DATA_DIR/admin-token)")
    if not request.app.state.platform.verifier.verify(token.strip()):
        raise Unauthorized("the token is not valid (unknown, revoked or expired)")
    return token.strip()
