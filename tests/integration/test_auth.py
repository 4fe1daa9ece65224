"""Users, roles, tokens, secrets and the audit log, through the API in-process.

The permission walk calls every route of the app with a token of every role and checks
the answer against ``auth.roles.RULES``; a route with no rule fails the test.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.auth.roles import RULES, Role, has_rule, required_role
from leptonic.platform import Platform
from tests.integration.dbdump import dump

PROBLEM = "application/problem+json"


def make_token(api: TestClient, name: str, role: str, **extra: Any) -> str:
    r = api.post("/api/v1/tokens", json={"name": name, "role": role, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def as_token(client: TestClient, token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def api_routes(platform: Platform) -> list[tuple[str, str]]:
    """Every (method, path template) the API serves, from its own OpenAPI document."""
    app = platform.api.app.app          # AuditLog -> BodyLimit -> FastAPI
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items()
            if path.startswith("/api/v1") for method in ops]


def test_every_route_has_a_rule(platform: Platform) -> None:
    missing = [f"{m} {p}" for m, p in api_routes(platform) if not has_rule(m, p)]
    assert missing == [], f"routes with no permission rule in auth/roles.py: {missing}"
    stale = [f"{m} {p}" for (m, p) in RULES if (m, p) not in set(api_routes(platform))]
    assert stale == [], f"rules for routes that do not exist: {stale}"


def test_permission_table_walk(api: TestClient, anon: TestClient, platform: Platform) -> None:
    """Every route x every role: allowed roles get past the check, others get 403 (and
    no token gets 401), and a refused call changes nothing."""
    tokens = {role: make_token(api, f"walk-{role.value}", role.value) for role in Role}
    store = platform.store

    def state() -> tuple:
        return ([d.name for d in store.list_deployments()], store.list_photons(),
                store.list_users(), store.list_secrets())

    before = state()
    for method, path in api_routes(platform):
        needed = required_role(method, path)
        url = re.sub(r"\{[^}]+\}", "zz-none", path)
        if "{token_id}" in path:
            url = path.replace("{token_id}", "999999")
        if needed is None:
            continue                       # public: login/register, tested on their own
        no_token = anon.request(method, url)
        assert no_token.status_code == 401, (method, path, no_token.text)
        for role, token in tokens.items():
            if path == "/api/v1/auth/logout":       # it revokes the token it is called with
                token = make_token(api, f"bye-{role.value}", role.value)
            resp = anon.request(method, url, headers=as_token(anon, token))
            if role.allows(needed):
                assert resp.status_code not in (401, 403), (method, path, role, resp.text)
            else:
                assert resp.status_code == 403, (method, path, role, resp.text)
                assert resp.headers["content-type"].startswith(PROBLEM)
                assert needed.value in resp.json()["detail"]
    assert state() == before


def test_users_login_and_roles(api: TestClient, anon: TestClient) -> None:
    r = api.post("/api/v1/users", json={"username": "alice", "password": "correct horse",
                                        "role": "developer"})
    assert r.status_code == 201, r.text
    assert "password" not in r.text
    bad = anon.post("/api/v1/auth/login", json={"username": "alice", "password": "nope"})
    assert bad.status_code == 401
    ok = anon.post("/api/v1/auth/login",
                   json={"username": "alice", "password": "correct horse"})
    assert ok.status_code == 200, ok.text
    session = ok.json()["token"]
    who = anon.get("/api/v1/auth/whoami", headers=as_token(anon, session)).json()
    assert who == {"name": "session:alice", "username": "alice", "role": "developer",
                   "kind": "session", "expires_at": pytest.approx(time.time() + 12 * 3600,
                                                                  abs=60)}
    # developer: may deploy, may not manage users
    dep = anon.post("/api/v1/deployments", headers=as_token(anon, session),
                    json={"name": "d1", "photon": "builtin:echo", "replicas": 0})
    assert dep.status_code == 201
    assert anon.get("/api/v1/users", headers=as_token(anon, session)).status_code == 403
    # disabling the user ends the session at once
    assert api.patch("/api/v1/users/alice", json={"disabled": True}).status_code == 200
    assert anon.get("/api/v1/status", headers=as_token(anon, session)).status_code == 401
    assert anon.post("/api/v1/auth/login", json={"username": "alice",
                                                 "password": "correct horse"}
                     ).status_code == 401


def test_logout_ends_the_session(api: TestClient, anon: TestClient) -> None:
    api.post("/api/v1/users", json={"username": "bob", "password": "12345678x"})
    session = anon.post("/api/v1/auth/login",
                        json={"username": "bob", "password": "12345678x"}).json()["token"]
    assert anon.get("/api/v1/status", headers=as_token(anon, session)).status_code == 200
    assert anon.post("/api/v1/auth/logout",
                     headers=as_token(anon, session)).status_code == 204
    assert anon.get("/api/v1/status", headers=as_token(anon, session)).status_code == 401


def test_login_is_rate_limited_per_user(api: TestClient, anon: TestClient) -> None:
    api.post("/api/v1/users", json={"username": "carol", "password": "right password"})
    for _ in range(5):
        r = anon.post("/api/v1/auth/login", json={"username": "carol", "password": "wrong1"})
        assert r.status_code == 401
    limited = anon.post("/api/v1/auth/login",
                        json={"username": "carol", "password": "right password"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["content-type"].startswith(PROBLEM)


def test_invitation_registers_once(api: TestClient, anon: TestClient) -> None:
    inv = api.post("/api/v1/invitations", json={"role": "viewer"}).json()["invitation"]
    assert anon.get("/api/v1/status", headers=as_token(anon, inv)).status_code == 401
    body = {"invitation": inv, "username": "dave", "password": "long enough"}
    assert anon.post("/api/v1/auth/register", json=body).status_code == 201
    again = anon.post("/api/v1/auth/register", json={**body, "username": "eve"})
    assert again.status_code == 401
    assert [u["username"] for u in api.get("/api/v1/users").json()] == ["dave"]


@pytest.mark.parametrize(("body", "status", "word"), [
    ({"username": "Bad Name", "password": "12345678"}, 422, "lowercase"),
    ({"username": "short", "password": "123"}, 422, "8"),
    ({"username": "x1", "password": "12345678", "role": "root"}, 422, "role"),
])
def test_bad_users_are_rejected(api: TestClient, body: dict, status: int, word: str) -> None:
    r = api.post("/api/v1/users", json=body)
    assert r.status_code == status
    assert word in r.json()["detail"]
    assert api.get("/api/v1/users").json() == []


def test_tokens_are_shown_once_revocable_and_bounded_by_role(api: TestClient,
                                                              anon: TestClient,
                                                              platform: Platform) -> None:
    created = api.post("/api/v1/tokens", json={"name": "ci", "role": "developer"}).json()
    token = created["token"]
    listed = api.get("/api/v1/tokens").json()
    assert all("token" not in t and "hash" not in t for t in listed)
    assert token not in dump(platform.store)
    assert anon.get("/api/v1/status", headers=as_token(anon, token)).status_code == 200
    used = next(t for t in api.get("/api/v1/tokens").json() if t["name"] == "ci")
    assert used["last_used_at"] is not None
    # a developer cannot mint an admin token (and cannot mint tokens at all)
    r = anon.post("/api/v1/tokens", headers=as_token(anon, token),
                  json={"name": "x", "role": "admin"})
    assert r.status_code == 403
    assert api.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    assert anon.get("/api/v1/status", headers=as_token(anon, token)).status_code == 401


def test_expired_token_is_refused(api: TestClient, anon: TestClient,
                                  platform: Platform) -> None:
    token = make_token(api, "brief", "viewer", expires_in_s=0.5)
    assert anon.get("/api/v1/status", headers=as_token(anon, token)).status_code == 200
    time.sleep(0.6)
    assert anon.get("/api/v1/status", headers=as_token(anon, token)).status_code == 401


def test_secrets_are_write_only_and_encrypted(api: TestClient, platform: Platform) -> None:
    value = "s3cr3t-value-that-must-not-leak"
    r = api.post("/api/v1/secrets", json={"name": "HF_TOKEN", "value": value})
    assert r.status_code == 201
    assert value not in r.text
    assert value not in api.get("/api/v1/secrets").text
    assert value not in dump(platform.store)
    assert platform.secrets.decrypt(platform.store.secret_ciphertext("HF_TOKEN")) == value
    key = platform.layout.root / "secret-key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert api.post("/api/v1/secrets", json={"name": "HF_TOKEN", "value": "x"}
                    ).status_code == 409
    assert api.post("/api/v1/secrets", json={"name": "1bad", "value": "x"}).status_code == 422
    # deployments name secrets that exist; the replica gets the value in its environment
    missing = api.post("/api/v1/deployments", json={"name": "d", "photon": "builtin:echo",
                                                     "secrets": ["NOPE"]})
    assert missing.status_code == 404
    assert "NOPE" in missing.json()["detail"]
    ok = api.post("/api/v1/deployments", json={"name": "d", "photon": "builtin:echo",
                                                "secrets": ["HF_TOKEN"]})
    assert ok.status_code == 201
    deadline = time.monotonic() + 10
    while not platform.backend.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert platform.backend.started[0].env["HF_TOKEN"] == value
    assert value not in dump(platform.store)
    assert api.delete("/api/v1/secrets/HF_TOKEN").status_code == 409   # in use


def test_audit_records_state_changes(api: TestClient, anon: TestClient) -> None:
    api.post("/api/v1/deployments", json={"name": "aud", "photon": "builtin:echo",
                                          "replicas": 0})
    anon.post("/api/v1/deployments", json={"name": "nope", "photon": "builtin:echo"})
    api.get("/api/v1/deployments")
    entries = api.get("/api/v1/audit").json()
    created = [e for e in entries
               if e["object"] == "/api/v1/deployments" and e["status"] == 201]
    assert len(created) == 1
    assert created[0]["actor"] == "token:admin"
    assert created[0]["action"] == "POST"
    refused = [e for e in entries if e["status"] == 401]
    assert refused
    assert refused[0]["actor"] == "anonymous"
    assert all(e["action"] != "GET" for e in entries)


def test_public_and_scoped_deployment_access(api: TestClient, anon: TestClient,
                                             platform: Platform) -> None:
    api.post("/api/v1/deployments", json={"name": "open", "photon": "builtin:echo",
                                          "replicas": 0, "public": True})
    api.post("/api/v1/deployments", json={"name": "closed", "photon": "builtin:echo",
                                          "replicas": 0})
    # "public" travels with the route table the controller publishes (the gateway's loop
    # never reads the store for it): wait for the first table with both
    deadline = time.monotonic() + 10
    while platform.routes.route("open") is None or platform.routes.route("closed") is None:
        assert time.monotonic() < deadline, "the routes were never published"
        time.sleep(0.02)
    v = platform.verifier
    assert v.authorize_run(None, "open") is True
    assert v.authorize_run(None, "closed") is False
    scoped = make_token(api, "only-closed", "viewer", deployment="closed",
                        rate_limit_rps=2)
    assert v.authorize_run(scoped, "closed") is True
    other = v.authorize_run(scoped, "open")
    assert getattr(other, "status", None) == 403
    # the scoped token cannot use the API
    assert anon.get("/api/v1/status", headers=as_token(anon, scoped)).status_code == 403
    # rate limit: 2 requests/s, burst 2, then 429 with Retry-After
    assert v.authorize_run(scoped, "closed") is True
    limited = v.authorize_run(scoped, "closed")
    assert getattr(limited, "status", None) == 429
    assert dict(limited.headers)[b"retry-after"] == b"1"   # type: ignore[union-attr]


def test_gateway_enforces_deployment_access(api: TestClient, anon: TestClient) -> None:
    """Through the gateway itself: public needs no token, private does, scoped tokens
    only reach their deployment, rate limits answer 429 with Retry-After."""
    for name, public in (("pub", True), ("priv", False)):
        r = api.post("/api/v1/deployments", json={"name": name, "photon": "builtin:echo",
                                                   "replicas": 0, "public": public})
        assert r.status_code == 201
    time.sleep(1.1)                                      # the public set refreshes each 1 s
    assert anon.post("/run/pub/echo", json={"text": "x"}).status_code == 503  # no replica
    assert anon.post("/run/priv/echo", json={"text": "x"}).status_code == 401
    scoped = make_token(api, "scoped", "viewer", deployment="priv", rate_limit_rps=1)
    other = anon.post("/run/pub/echo", headers=as_token(anon, scoped), json={})
    assert other.status_code == 403
    assert other.headers["content-type"].startswith(PROBLEM)
    assert anon.post("/run/priv/echo", headers=as_token(anon, scoped),
                     json={}).status_code == 503
    limited = anon.post("/run/priv/echo", headers=as_token(anon, scoped), json={})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
