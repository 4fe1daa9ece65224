"""Bad credentials cost nothing and are limited per address; refusals that never reach a
route are audited; a login is audited under its user; env and secrets per deployment are
bounded; the dashboard's login refuses cross-origin posts."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from leptonic.auth.tokens import FAILURE_LIMIT
from leptonic.config import Settings
from leptonic.core.models import MAX_ENV_BYTES, MAX_ENV_VARS, MAX_SECRETS
from leptonic.platform import Platform

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    """Bodies up to 1 MiB, so that an env over its own bound gets past the body limit."""
    return Settings(data_dir=tmp_path / "data", port=18080, database_url=database_url,
                    max_body_bytes=1024 * 1024, max_bundle_bytes=1024 * 1024)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refusals(platform: Platform, code: int) -> float:
    return platform.registry.get_sample_value("leptonic_api_auth_refusals_total",
                                              {"code": str(code)}) or 0.0


def test_bad_tokens_from_one_address_get_429_and_valid_ones_still_work(
        api: TestClient, anon: TestClient, platform: Platform,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.get("/api/v1/status").status_code == 200      # the admin token, now known
    created = api.post("/api/v1/tokens", json={"name": "later", "role": "viewer"})
    later = created.json()["token"]                          # valid, never used yet
    for _ in range(FAILURE_LIMIT):
        bad = anon.get("/api/v1/status", headers=bearer("lep_" + secrets.token_urlsafe(32)))
        assert bad.status_code == 401
    # past the limit: no store query for tokens not known valid
    lookups: list[str] = []
    real = platform.store.token_by_hash
    monkeypatch.setattr(platform.store, "token_by_hash",
                        lambda digest: lookups.append(digest) or real(digest))
    limited = anon.get("/api/v1/status", headers=bearer("lep_" + secrets.token_urlsafe(32)))
    assert limited.status_code == 429, limited.text
    assert limited.headers["content-type"].startswith(PROBLEM)
    assert 1 <= int(limited.headers["retry-after"]) <= 10
    assert "retry in" in limited.json()["detail"]
    assert anon.get("/api/v1/status", headers=bearer(later)).status_code == 429
    assert lookups == []
    # a token already known valid keeps being served from the same address
    assert api.get("/api/v1/deployments").status_code == 200
    # and the gateway applies the same limit to the same address
    api.post("/api/v1/deployments", json={"name": "priv", "photon": "builtin:echo",
                                          "replicas": 0})
    run = anon.post("/run/priv/echo", headers=bearer("lep_" + secrets.token_urlsafe(32)),
                    json={})
    assert run.status_code == 429
    assert int(run.headers["retry-after"]) >= 1
    assert lookups == []
    assert refusals(platform, 401) == FAILURE_LIMIT
    assert refusals(platform, 429) == 2
    # counted by the gateway too (under "priv", or "(unknown)" until its route exists)
    gateway = sum(platform.registry.get_sample_value(
        "leptonic_gateway_requests_total", {"deployment": name, "code": "429"}) or 0
        for name in ("priv", "(unknown)"))
    assert gateway == 1


def test_a_body_too_large_is_audited(api: TestClient, anon: TestClient,
                                     platform: Platform) -> None:
    big = b"{" + b" " * platform.settings.max_body_bytes + b"}"
    r = anon.post("/api/v1/deployments", content=big,
                  headers={"content-type": "application/json"})
    assert r.status_code == 413
    entries = api.get("/api/v1/audit").json()
    refused = [e for e in entries if e["status"] == 413]
    assert len(refused) == 1
    assert (refused[0]["action"], refused[0]["object"], refused[0]["actor"]) == \
        ("POST", "/api/v1/deployments", "anonymous")


def test_a_login_is_audited_under_the_user(api: TestClient, anon: TestClient) -> None:
    api.post("/api/v1/users", json={"username": "alice", "password": "correct horse"})
    assert anon.post("/api/v1/auth/login",
                     json={"username": "alice", "password": "wrong one"}).status_code == 401
    assert anon.post("/api/v1/auth/login",
                     json={"username": "alice", "password": "correct horse"}
                     ).status_code == 200
    logins = [e for e in api.get("/api/v1/audit").json()
              if e["object"] == "/api/v1/auth/login"]
    assert {(e["status"], e["actor"]) for e in logins} == {(200, "user:alice"),
                                                          (401, "anonymous")}


def test_env_and_secrets_per_deployment_are_bounded(api: TestClient,
                                                    platform: Platform) -> None:
    too_many = {f"V{i}": "x" for i in range(MAX_ENV_VARS + 1)}
    r = api.post("/api/v1/deployments", json={"name": "d", "photon": "builtin:echo",
                                              "replicas": 0, "env": too_many})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)
    assert str(MAX_ENV_VARS) in r.json()["detail"]
    r = api.post("/api/v1/deployments", json={
        "name": "d", "photon": "builtin:echo", "replicas": 0,
        "secrets": [f"S{i}" for i in range(MAX_SECRETS + 1)]})
    assert r.status_code == 422
    assert str(MAX_SECRETS) in r.json()["detail"]
    assert platform.store.list_deployments() == []

    ok = api.post("/api/v1/deployments", json={"name": "d", "photon": "builtin:echo",
                                               "replicas": 0, "env": {"A": "1"}})
    assert ok.status_code == 201
    before = api.get("/api/v1/deployments/d").json()
    huge = {"BIG": "x" * 100_000, "BIGGER": "y" * 100_000, "BIGGEST": "z" * 100_000}
    r = api.patch("/api/v1/deployments/d", json={"env": huge})
    assert r.status_code == 422
    assert str(MAX_ENV_BYTES) in r.json()["detail"]
    after = api.get("/api/v1/deployments/d").json()
    assert (after["spec"], after["generation"]) == (before["spec"], before["generation"])
    # within the bounds is fine
    r = api.patch("/api/v1/deployments/d", json={"env": {"BIG": "x" * 100_000}})
    assert r.status_code == 200, r.text


def test_dashboard_login_refuses_cross_origin_posts(platform: Platform, token: str,
                                                    api: TestClient) -> None:
    web = TestClient(platform, base_url="http://testserver", follow_redirects=False)
    form = {"token": token, "next": "/"}
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"referer": "http://evil.example/login"},
                    {"origin": "http://testserver.evil.example"}):
        r = web.post("/login", data=form, headers=headers)
        assert r.status_code == 403, headers
        assert "cross-origin login refused" in r.text
        assert "set-cookie" not in r.headers
    for headers in ({"origin": "http://testserver"}, {"origin": "https://testserver"},
                    {"referer": "http://testserver/login?next=/"}, {}):
        r = web.post("/login", data=form, headers=headers)
        assert r.status_code == 303, (headers, r.text)
        assert "leptonic_session=" in r.headers["set-cookie"]
