from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import RunningPlatform, running_platform
from tests.pg import fresh_database


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A real ``leptonic up`` in a temp data dir; torn down with all its replicas."""
    with running_platform(tmp_path / "data") as p:
        yield p


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server (see .ci/postgres.sh)."""
    with fresh_database("leptonic_e2e") as url:
        yield url
