"""Observability through the in-process platform: the series API, alert rules over the API
and the CLI, an email notification through a local SMTP server, and the dashboard's login,
pages, fragments and data with the session cookie."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.config import Settings
from leptonic.config.observe import ObserveSettings, SmtpSettings
from leptonic.platform import Platform
from tests.integration.apitools import wait
from tests.integration.clitools import make_cli, ok_json, one_line_error
from tests.integration.test_jobs import post_job

HOOK = "webhook:https://hooks.example.com/services/T0/B0/SECRETTOKEN"


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    class Inbox(Sink):
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None,
             request: pytest.FixtureRequest) -> Settings:
    smtp = SmtpSettings()
    if "smtp_server" in request.fixturenames:
        _, port = request.getfixturevalue("smtp_server")
        smtp = SmtpSettings(host="127.0.0.1", port=port, sender="leptonic@test")
    return Settings(data_dir=tmp_path / "data", port=18080, database_url=database_url,
                    observe=ObserveSettings(interval_s=0.05, notify_backoff_s=0.05,
                                            smtp=smtp))


def deploy(api: TestClient, name: str = "echo", replicas: int = 2) -> None:
    r = api.post("/api/v1/deployments", json={"name": name, "photon": "builtin:echo",
                                               "replicas": replicas})
    assert r.status_code == 201, r.text


def traffic(platform: Platform, name: str, ok: int, errors: int, seconds: float) -> None:
    """Count requests in the gateway's metrics as if they had been proxied."""
    gw = platform.gateway
    m = gw.metrics
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(ok):
            m.request(name, 200)
            gw._record(name, "", 200, 0.02)
        for _ in range(errors):
            m.request(name, 503)
            gw._record(name, "", 503, 0.8)
        time.sleep(0.02)


def is_problem(r: Any, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    for word in words:
        assert word in r.json()["detail"]


# -- the series API ------------------------------------------------------------------------
def test_query_serves_sampled_rates_percentiles_and_replicas(
        api: TestClient, platform: Platform) -> None:
    deploy(api)
    traffic(platform, "echo", ok=9, errors=1, seconds=0.6)

    def sampled() -> Any:
        r = api.get("/api/v1/metrics/query",
                    params={"deployment": "echo", "since": "10m",
                            "metrics": "requests_per_s,error_rate,p99_latency_ms,"
                                       "replicas_ready"})
        assert r.status_code == 200, r.text
        body = r.json()
        rates = [v for v in body["values"]["requests_per_s"] if v]
        return body if len(rates) >= 3 else None

    body = wait(sampled)
    assert body["resolution_s"] == 0
    assert body["metrics"] == ["requests_per_s", "error_rate", "p99_latency_ms",
                               "replicas_ready"]
    assert len(body["t"]) == len(body["values"]["error_rate"])
    assert max(v or 0 for v in body["values"]["error_rate"]) == pytest.approx(0.1)
    assert max(v or 0 for v in body["values"]["p99_latency_ms"]) > 500
    assert max(body["values"]["replicas_ready"]) == 2
    latest = api.get("/api/v1/metrics/latest").json()
    assert latest["series"]["deployment/echo"]["replicas_desired"] == 2
    assert latest["series"]["node/fake"]["node_up"] == 1     # the fake runtime's node
    node = api.get("/api/v1/metrics/query", params={"node": "fake", "since": "5m"}).json()
    assert "node_up" in node["metrics"]


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"deployment": "nope"}, 404, "does not exist"),
    ({"node": "nope"}, 404, "does not exist"),
    ({"deployment": "echo", "metrics": "bogus"}, 422, "unknown metric 'bogus'"),
    ({"deployment": "echo", "since": "a week"}, 422, "invalid since"),
    ({"deployment": "echo", "since": "30d"}, 422, "longest retention"),
    ({"deployment": "echo", "resolution": 7}, 422, "resolution 7 is not kept"),
    ({}, 422, "exactly one of"),
    ({"deployment": "Bad_Name"}, 422, "invalid deployment name"),
])
def test_query_errors_are_problems(api: TestClient, params: dict[str, Any], status: int,
                                   says: str) -> None:
    deploy(api)
    is_problem(api.get("/api/v1/metrics/query", params=params), status, says)


def test_the_series_api_needs_a_token(api: TestClient, anon: TestClient) -> None:
    is_problem(anon.get("/api/v1/metrics/query", params={"deployment": "echo"}), 401)
    is_problem(anon.get("/api/v1/metrics/latest"), 401)


# -- alert rules ---------------------------------------------------------------------------
def test_alert_rules_crud_redacted_and_guarded(api: TestClient, anon: TestClient) -> None:
    deploy(api)
    r = api.post("/api/v1/alerts", json={"name": "slow", "deployment": "echo",
                                         "expr": "p99_latency_ms > 500", "for": "2m",
                                         "notify": [HOOK], "severity": "critical"})
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["for_s"] == 120
    assert rule["notify"] == ["webhook:https://hooks.example.com/…"]
    assert "SECRETTOKEN" not in r.text
    is_problem(api.post("/api/v1/alerts", json={"name": "slow", "expr": "restarts > 1"}),
               409, "already exists")
    generated = api.post("/api/v1/alerts", json={"expr": "node_up == 0"}).json()
    assert generated["name"].startswith("alert-")
    assert generated["scope"] == "node"
    names = [a["name"] for a in api.get("/api/v1/alerts").json()]
    assert names == sorted(["slow", generated["name"]])
    assert api.get("/api/v1/alerts/slow").json()["expr"] == "p99_latency_ms > 500"
    assert "SECRETTOKEN" not in api.get("/api/v1/alerts").text

    # without a token nothing changes
    is_problem(anon.post("/api/v1/alerts", json={"expr": "restarts > 1"}), 401)
    is_problem(anon.delete("/api/v1/alerts/slow"), 401)
    # a viewer may look, not change
    viewer = api.post("/api/v1/tokens", json={"name": "ro", "role": "viewer"}).json()["token"]
    ro = {"Authorization": f"Bearer {viewer}"}
    assert anon.get("/api/v1/alerts", headers=ro).status_code == 200
    is_problem(anon.post("/api/v1/alerts", json={"expr": "restarts > 1"}, headers=ro), 403)
    is_problem(anon.delete("/api/v1/alerts/slow", headers=ro), 403)
    assert len(api.get("/api/v1/alerts").json()) == 2

    assert api.delete("/api/v1/alerts/slow").status_code == 204
    is_problem(api.get("/api/v1/alerts/slow"), 404, "does not exist")
    is_problem(api.delete("/api/v1/alerts/slow"), 404)
    reasons = [e["reason"] for e in api.get("/api/v1/deployments/echo/events").json()]
    assert {"AlertRuleCreated", "AlertRuleDeleted"} <= set(reasons)


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"expr": "p99 > 1"}, 422, "unknown metric"),
    ({"expr": "restarts > 1", "for": "soon"}, 422, "invalid for"),
    ({"expr": "restarts > 1", "for": "30d"}, 422, "at most 7d"),
    ({"expr": "restarts > 1", "notify": ["pager:1"]}, 422, "invalid notification target"),
    ({"expr": "restarts > 1", "notify": ["webhook:ftp://x/SECRETTOKEN"]}, 422, "http://"),
    ({"expr": "restarts > 1", "deployment": "nope"}, 404, "does not exist"),
    ({"expr": "node_up == 0", "deployment": "echo"}, 422, "leave out the deployment"),
    ({"expr": "restarts > 1", "name": "Not A Slug"}, 422, "invalid alert rule name"),
    ({"expr": "restarts > 1", "severity": "loud"}, 422, "severity"),
    ({"expr": "restarts > 1", "extra": 1}, 422, "extra"),
])
def test_bad_rules_are_refused_and_nothing_is_stored(
        api: TestClient, body: dict[str, Any], status: int, says: str) -> None:
    deploy(api)
    r = api.post("/api/v1/alerts", json=body)
    is_problem(r, status, says)
    assert "SECRETTOKEN" not in r.text
    assert api.get("/api/v1/alerts").json() == []


def test_an_alert_emails_when_it_fires_and_when_it_resolves(
        smtp_server: Any, api: TestClient, platform: Platform) -> None:
    inbox, _ = smtp_server
    deploy(api)
    r = api.post("/api/v1/alerts", json={"name": "errors", "deployment": "echo",
                                         "expr": "error_rate > 5%",
                                         "notify": ["email:ops@example.com"]})
    assert r.status_code == 201, r.text
    traffic(platform, "echo", ok=5, errors=5, seconds=0.5)
    wait(lambda: len(inbox.messages) >= 1)
    traffic(platform, "echo", ok=10, errors=0, seconds=0.5)
    wait(lambda: len(inbox.messages) >= 2)
    first, second = (m.content.decode() for m in inbox.messages[:2])
    assert "Subject: [leptonic] FIRING: errors on deployment/echo" in first
    assert "Subject: [leptonic] RESOLVED: errors on deployment/echo" in second
    assert inbox.messages[0].rcpt_tos == ["ops@example.com"]
    notes = wait(lambda: [n for n in api.get("/api/v1/alerts/errors/notifications").json()
                          if n["status"] == "sent"] or None)
    assert {n["event"] for n in notes} <= {"firing", "resolved"}


# -- CLI -----------------------------------------------------------------------------------
@pytest.fixture
def cli(api: TestClient, token: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    return make_cli(api, token, monkeypatch)


def test_cli_alerts_and_metrics(cli: Any, api: TestClient, platform: Platform) -> None:
    deploy(api)
    made = ok_json(cli("alert", "create", "--deployment", "echo", "--name", "lat",
                       "--expr", "p99_latency_ms > 500", "--for", "1m", "--notify", HOOK,
                       "-o", "json"))
    assert made["notify"] == ["webhook:https://hooks.example.com/…"]
    listed = cli("alert", "list")
    assert listed.exit_code == 0
    assert "lat" in listed.stdout
    assert "SECRETTOKEN" not in listed.stdout
    assert "p99_latency_ms > 500" in cli("alert", "get", "lat").stdout
    assert cli("alert", "notifications", "lat").exit_code == 0
    one_line_error(cli("alert", "create", "--expr", "p99 > 1"), "unknown metric")
    assert cli("alert", "delete", "lat").exit_code == 0
    one_line_error(cli("alert", "get", "lat"), "does not exist")

    traffic(platform, "echo", ok=5, errors=0, seconds=0.4)
    wait(lambda: ok_json(cli("deployment", "metrics", "echo", "-o", "json", "-m",
                             "requests_per_s"))["values"]["requests_per_s"][-1])
    shown = cli("deployment", "metrics", "echo", "--since", "15m")
    assert shown.exit_code == 0
    assert "requests_per_s" in shown.stdout
    assert "deployment/echo" in shown.stdout
    one_line_error(cli("deployment", "metrics", "nope"), "does not exist")
    one_line_error(cli("deployment", "logs", "echo", "--grep", "("), "invalid grep pattern")


# -- the dashboard -------------------------------------------------------------------------
def test_dashboard_login_session_pages_and_logout(
        platform: Platform, api: TestClient, token: str) -> None:
    deploy(api)
    web = TestClient(platform, base_url="http://testserver", follow_redirects=False)
    r = web.get("/")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2F"
    assert web.get("/login").status_code == 200
    r = web.get("/ui/fragments/deployments")
    assert (r.status_code, r.headers["hx-redirect"]) == (401, "/login")
    assert web.get("/ui/data/deployments/echo/series").status_code == 401

    bad = web.post("/login", data={"token": "lep_nope", "next": "/"})
    assert bad.status_code == 401
    assert "not valid" in bad.text
    ok = web.post("/login", data={"token": token, "next": "//evil.example/"})
    assert (ok.status_code, ok.headers["location"]) == (303, "/"), "no open redirect"
    cookie = ok.headers["set-cookie"]
    assert "leptonic_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert token not in cookie

    page = web.get("/")
    assert page.status_code == 200
    assert 'data-deployment="echo"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert web.get("/ui/deployments/echo").status_code == 200
    assert web.get("/ui/deployments/nope").status_code == 404
    for part in ("summary", "replicas", "events", "logs"):
        assert web.get(f"/ui/fragments/deployments/echo/{part}").status_code == 200
    assert "invalid grep" in web.get("/ui/fragments/deployments/echo/logs",
                                     params={"grep": "("}).text
    assert web.get("/ui/nodes").status_code == 200
    assert web.get("/ui/alerts").status_code == 200
    # the jobs page: the list with phase and counts, a job with its attempts and logs
    assert 'href="/ui/jobs"' in page.text
    r = post_job(api, {"name": "batch", "command": "echo hi", "completions": 2,
                       "parallelism": 2, "scale": "small"})
    assert r.status_code == 201, r.text
    running = wait(lambda: len(ids := [a["id"] for a in api.get(
        "/api/v1/jobs/batch/attempts").json() if a["state"] == "running"]) == 2 and ids)
    for aid in running:
        platform.backend.finish(aid, 0)  # type: ignore[attr-defined]
    wait(lambda: api.get("/api/v1/jobs/batch").json()["status"]["phase"] == "Succeeded")
    listed = web.get("/ui/jobs")
    assert listed.status_code == 200
    assert 'data-job="batch"' in listed.text
    assert "phase-succeeded" in listed.text
    assert "2/2" in listed.text
    assert 'data-job="batch"' in web.get("/ui/fragments/jobs").text
    shown = web.get("/ui/jobs/batch")
    assert shown.status_code == 200
    assert 'data-job-phase="Succeeded"' in shown.text
    assert "/ui/fragments/jobs/batch/attempts" in shown.text
    rows = web.get("/ui/fragments/jobs/batch/attempts").text
    assert all(f'data-attempt="{aid}"' in rows for aid in running)
    for part in ("summary", "events", "logs"):
        assert web.get(f"/ui/fragments/jobs/batch/{part}").status_code == 200
    assert "JobSucceeded" in web.get("/ui/fragments/jobs/batch/events").text
    assert web.get("/ui/jobs/nope").status_code == 404
    data = web.get("/ui/data/deployments/echo/series", params={"since": "15m"})
    assert data.status_code == 200
    assert "requests_per_s" in data.json()["values"] or data.json()["t"] == []
    assert web.get("/ui/static/dashboard.js").status_code == 200

    assert web.post("/logout").status_code == 303
    web.cookies.clear()
    web.cookies.set("leptonic_session", cookie.split("leptonic_session=")[1].split(";")[0])
    assert web.get("/").status_code == 303, "the session was revoked at logout"


def test_dashboard_password_login(platform: Platform, api: TestClient) -> None:
    r = api.post("/api/v1/users", json={"username": "ann", "password": "correct horse",
                                        "role": "viewer"})
    assert r.status_code == 201, r.text
    web = TestClient(platform, base_url="http://testserver", follow_redirects=False)
    bad = web.post("/login", data={"username": "ann", "password": "wrong password"})
    assert bad.status_code == 401
    assert "wrong username or password" in bad.text
    ok = web.post("/login", data={"username": "ann", "password": "correct horse"})
    assert ok.status_code == 303
    page = web.get("/")
    assert page.status_code == 200
    assert "ann (viewer)" in page.text
