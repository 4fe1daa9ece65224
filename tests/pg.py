"""A fresh database on the test PostgreSQL server, for the integration and e2e tiers."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest


def admin_url() -> str:
    """``$LEPTONIC_TEST_POSTGRES_URL``; without it the test skips, or fails in CI."""
    url = os.environ.get("LEPTONIC_TEST_POSTGRES_URL", "")
    if not url:
        if os.environ.get("LEPTONIC_REQUIRE_SYSTEM_DEPS"):
            pytest.fail("LEPTONIC_TEST_POSTGRES_URL is not set; .ci/postgres.sh starts a server")
        pytest.skip("no PostgreSQL: set LEPTONIC_TEST_POSTGRES_URL (make test does it with "
                    ".ci/postgres.sh where it can install and start a server)")
    return url


@contextlib.contextmanager
def fresh_database(prefix: str = "leptonic_test") -> Iterator[str]:
    """Create a database, yield its URL, drop it (closing whatever still uses it)."""
    import psycopg

    admin = admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
