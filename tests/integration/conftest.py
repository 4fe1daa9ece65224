"""Integration tier: the control-plane API in-process (ASGI) on a real SQLite store.

The platform runs its real controller against the fake backend, so deployments become
ready without processes; the photon inspector (a subprocess by design) is real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from leptonic.auth.tokens import ensure_admin_token
from leptonic.config import Settings
from leptonic.platform import Platform
from leptonic.runtime.fake import FakeBackend, FakeProber


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=18080,
                    max_body_bytes=64 * 1024, max_bundle_bytes=1024 * 1024)


@pytest.fixture
def platform(settings: Settings) -> Platform:
    return Platform(settings, tick_s=0.02, backend=FakeBackend(), prober=FakeProber())


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
