"""ASGI middleware that records every state-changing API call in the audit log: who
(the principal the auth dependency resolved), what (method and path), when, from where,
and the answer's status — refusals included."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leptonic.store.store import Store

log = logging.getLogger(__name__)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuditLog:
    def __init__(self, app: Any, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in _READS \
                or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            principal = scope.get("state", {}).get("principal")
            actor = principal.actor if principal is not None else "anonymous"
            client = scope.get("client")
            source = client[0] if client else "unknown"
            try:
                await asyncio.to_thread(self.store.add_audit, actor, scope["method"],
                                        scope["path"], status, source)
            except Exception:          # the audit must never turn an answer into an error
                log.exception("could not write the audit entry for %s %s",
                              scope["method"], scope["path"])
