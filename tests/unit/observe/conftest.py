from __future__ import annotations

from pathlib import Path

import pytest

from leptonic.store.observe import ObserveStore
from leptonic.store.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'leptonic.db'}")
    s.migrate()
    return s


@pytest.fixture
def ostore(store: Store) -> ObserveStore:
    return ObserveStore(store)
