"""Readiness/liveness probes and smoke checks of replicas over HTTP."""

from __future__ import annotations

import json
from typing import Any, Protocol

import httpx

from leptonic.core.models import ProbeResult

__all__ = ["HttpProber", "ProbeResult", "Prober"]


class Prober(Protocol):
    async def probe(self, url: str, timeout_s: float = 1.0) -> ProbeResult: ...

    async def ready(self, url: str) -> bool: ...

    async def smoke(self, url: str, path: str, body: Any, timeout_s: float = 5.0
                    ) -> str | None:
        """POST ``body`` as JSON to ``url + path``: None if it answered 2xx, else why not."""
        ...

    async def aclose(self) -> None: ...


class HttpProber:
    """``GET {url}/readyz``: 200 means ready; anything else, or no answer in time, does not."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, trust_env=False,
                                         limits=httpx.Limits(max_keepalive_connections=64))

    async def probe(self, url: str, timeout_s: float | None = None) -> ProbeResult:
        try:
            resp = await self._client.get(f"{url}/readyz",
                                          timeout=timeout_s or self.timeout_s)
        except httpx.HTTPError:
            return ProbeResult.NO_ANSWER
        if resp.status_code == 200:
            return ProbeResult.READY
        if resp.headers.get("x-leptonic-stuck"):
            # alive but every worker hung past twice its timeout: as good as no answer,
            # so the liveness count replaces it
            return ProbeResult.NO_ANSWER
        return ProbeResult.NOT_READY

    async def ready(self, url: str) -> bool:
        return await self.probe(url) is ProbeResult.READY

    async def smoke(self, url: str, path: str, body: Any, timeout_s: float = 5.0
                    ) -> str | None:
        try:
            resp = await self._client.post(f"{url}{path}", content=json.dumps(body),
                                           headers={"content-type": "application/json"},
                                           timeout=timeout_s)
        except httpx.HTTPError as exc:
            return f"no answer from {url}{path}: {type(exc).__name__}"
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code} from {url}{path}: {resp.text[:200]}"

    async def aclose(self) -> None:
        await self._client.aclose()
