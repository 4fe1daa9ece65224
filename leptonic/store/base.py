"""What every repository of the store is: one family of tables on the platform's engine,
synchronous, one transaction per method.

``Store`` is the repositories the API and the controller share, mixed into one object
(``platform.store``); the observability families (samples and alerts, energy, gateway
traffic, usage) are repositories of their own on the same engine, built from the store
where they are used (``UsageStore(platform.store)``), so that the store everyone holds
does not grow a method for every series. Either way a repository is a ``Repository``:
the same engine, the same ``_tx``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection
from sqlalchemy.engine import Engine


class Repository:
    """Tables reached through ``engine``; each method runs in one ``_tx()``."""

    engine: Engine

    def __init__(self, on: Engine | Repository) -> None:
        """``on``: the engine, or a repository (the store) whose engine to share."""
        self.engine = on if isinstance(on, Engine) else on.engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn
