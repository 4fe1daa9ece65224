"""Integration tier: the control-plane API in-process (ASGI) on a real SQLite store.

The platform runs its real controller against the fake backend, so deployments become
ready without processes; the photon inspector (a subprocess by design) is real.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.auth.tokens import ensure_admin_token
from leptonic.config import Settings
from leptonic.platform import Platform
from leptonic.runtime.fake import FakeBackend, FakeProber


def _postgres_admin_url() -> str:
    url = os.environ.get("LEPTONIC_TEST_POSTGRES_URL", "")
    if not url:
        if os.environ.get("LEPTONIC_REQUIRE_SYSTEM_DEPS"):
            pytest.fail("LEPTONIC_TEST_POSTGRES_URL is not set; .ci/postgres.sh starts a server")
        pytest.skip("no PostgreSQL: set LEPTONIC_TEST_POSTGRES_URL (make test does it with "
                    ".ci/postgres.sh where it can install and start a server)")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Every integration test runs on SQLite (the embedded default) and on a fresh
    database of a real PostgreSQL server."""
    if request.param == "sqlite":
        yield None
        return
    import psycopg

    admin = _postgres_admin_url()
    name = f"leptonic_test_{uuid.uuid4().hex[:12]}"
    base, _, _ = admin.rpartition("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=18080, database_url=database_url,
                    max_body_bytes=64 * 1024, max_bundle_bytes=1024 * 1024)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    p = Platform(settings, tick_s=0.02, backend=FakeBackend(), prober=FakeProber())
    yield p
    p.store.close()


@pytest.fixture
def token(platform: Platform) -> str:
    token = ensure_admin_token(platform.store, platform.layout)
    assert token is not None
    return token


@pytest.fixture
def api(platform: Platform, token: str) -> Iterator[TestClient]:
    """A client of the running platform (lifespan on), authorised as the admin."""
    with TestClient(platform, base_url="http://testserver") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture
def anon(platform: Platform, api: TestClient) -> TestClient:
    """A client of the same (already started) platform with no token."""
    return TestClient(platform, base_url="http://testserver")


@pytest.fixture
def cli(api: TestClient, token: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``leptonic`` CLI (typer's CliRunner) pointed at the running platform:
    ``cli("deployment", "list", input=None)``."""
    from tests.integration.clitools import make_cli

    return make_cli(api, token, monkeypatch)
