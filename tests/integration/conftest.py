"""Integration tier: the control-plane API in-process (ASGI) on a real SQLite store.

The platform runs its real controller against the fake backend, so deployments become
ready without processes; the photon inspector (a subprocess by design) is real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.auth.tokens import ensure_admin_token
from leptonic.config import Settings
from leptonic.platform import Platform
from leptonic.runtime.fake import FakeBackend, FakeProber
from tests.pg import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Every integration test runs on SQLite (the embedded default) and on a fresh
    database of a real PostgreSQL server."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_database() as url:
        yield url


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
