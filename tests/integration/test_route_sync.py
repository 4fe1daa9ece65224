"""A follower's gateway builds its route table from the store and keeps the last table
when the store cannot be read."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from leptonic.platform import Platform


def test_follower_routes_from_store_and_last_table_kept(
        api: TestClient, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    api.post("/api/v1/deployments", json={"name": "r", "photon": "builtin:echo",
                                          "replicas": 2})
    deadline = time.monotonic() + 10
    while api.get("/api/v1/deployments/r").json()["status"]["phase"] != "Ready":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    platform.routes.replace_all({})                   # as a fresh follower would start
    assert asyncio.run(platform.sync_routes_once())
    ready = {r["id"] for r in api.get("/api/v1/deployments/r/replicas").json()}
    assert {u.replica_id for u in platform.routes.get("r") or []} == ready

    def down(*_: object) -> None:
        raise OperationalError("SELECT", {}, ConnectionError("database is down"))

    monkeypatch.setattr(platform.store, "list_deployments", down)
    assert not asyncio.run(platform.sync_routes_once())
    assert {u.replica_id for u in platform.routes.get("r") or []} == ready
