"""``builtin:echo``: answers with its input. The benchmark baseline, so it stays minimal."""

from __future__ import annotations

from collections.abc import AsyncIterator

from leptonic.photon.handler import handler
from leptonic.photon.photon import Photon


class Echo(Photon):
    """Echoes text back; ``count`` streams 0..n-1."""

    @handler
    async def echo(self, text: str) -> str:
        """Return ``text`` unchanged."""
        return text

    @handler
    async def count(self, n: int = 3) -> AsyncIterator[int]:
        """Stream the integers 0..n-1, one event each."""
        for i in range(n):
            yield i
