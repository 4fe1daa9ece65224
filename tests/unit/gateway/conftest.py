"""Fixtures for the gateway tests: real replica stand-ins on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import uvicorn

from tests.unit.gateway.gateway_servers import UpstreamApp, serve


@pytest.fixture
async def upstreams() -> AsyncIterator[list[tuple[str, UpstreamApp, uvicorn.Server]]]:
    """Two running replica stand-ins: [(url, app, server), ...]."""
    apps = [UpstreamApp("a"), UpstreamApp("b")]
    async with serve(apps[0]) as (url_a, srv_a), serve(apps[1]) as (url_b, srv_b):
        yield [(url_a, apps[0], srv_a), (url_b, apps[1], srv_b)]
