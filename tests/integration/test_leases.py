"""The lease SQL on SQLite and PostgreSQL: exclusive, renewable, expiring, releasable."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from leptonic.config import Settings
from leptonic.store.store import Store


def test_lease_is_exclusive_until_it_expires(settings: Settings) -> None:
    store = Store(settings.db_url)
    settings.layout.ensure()
    store.migrate()
    try:
        assert store.acquire_lease("controller", "a", 100.0, 10)
        assert not store.acquire_lease("controller", "b", 105.0, 10)
        assert store.acquire_lease("controller", "a", 105.0, 10)      # renewal
        assert store.lease_holder("controller", 106.0) == "a"
        assert not store.acquire_lease("controller", "b", 114.0, 10)
        assert store.acquire_lease("controller", "b", 115.1, 10)      # expired: taken
        store.release_lease("controller", "b")
        assert store.lease_holder("controller", 116.0) is None
        # many contenders at once: exactly one wins
        with ThreadPoolExecutor(8) as pool:
            wins = list(pool.map(lambda h: store.acquire_lease("race", h, 200.0, 10),
                                 [f"h{i}" for i in range(8)]))
        assert wins.count(True) == 1
    finally:
        store.close()
