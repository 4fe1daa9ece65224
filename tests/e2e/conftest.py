from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import RunningPlatform, free_port


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A real ``leptonic up`` in a temp data dir; torn down with all its replicas."""
    p = RunningPlatform(tmp_path / "data", free_port())
    p.start()
    try:
        yield p
    finally:
        p.stop()
        p.kill_all_runners()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server (see .ci/postgres.sh)."""
    import os
    import uuid

    import psycopg

    admin = os.environ.get("LEPTONIC_TEST_POSTGRES_URL", "")
    if not admin:
        if os.environ.get("LEPTONIC_REQUIRE_SYSTEM_DEPS"):
            pytest.fail("LEPTONIC_TEST_POSTGRES_URL is not set; .ci/postgres.sh starts one")
        pytest.skip("no PostgreSQL: set LEPTONIC_TEST_POSTGRES_URL")
    name = f"leptonic_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
