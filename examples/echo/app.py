"""A minimal photon: echo text back, and stream a count.

Run it alone with ``leptonic photon run -m app.py:Echo --port 8000`` (or
``python -m leptonic.photon.runner --entry app.py:Echo --port 8000``) from this folder.
"""

from __future__ import annotations

from collections.abc import Iterator

from leptonic import Photon, handler


class Echo(Photon):
    """Echoes text back; ``count`` streams 0..n-1 as server-sent events."""

    @handler
    def echo(self, text: str) -> str:
        """Return ``text`` unchanged."""
        return text

    @handler
    def count(self, n: int = 3) -> Iterator[int]:
        """Yield 0, 1, ..., n-1, one event each."""
        yield from range(n)
