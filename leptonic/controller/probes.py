"""Readiness/liveness probes of replicas over HTTP."""

from __future__ import annotations

from typing import Protocol

import httpx


class Prober(Protocol):
    async def ready(self, url: str) -> bool: ...

    async def aclose(self) -> None: ...


class HttpProber:
    """``GET {url}/readyz``: 200 means ready; anything else, or no answer in time, does not."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, trust_env=False,
                                         limits=httpx.Limits(max_keepalive_connections=64))

    async def ready(self, url: str) -> bool:
        try:
            resp = await self._client.get(f"{url}/readyz")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()
