"""Usage, prices and budgets through the in-process platform (fake runtime, real store,
SQLite and PostgreSQL): metered replicas grouped by deployment, user and label, the CLI's
table, JSON and CSV, CloudEvents, prices and budgets with their 422s, and a budget that
fires exactly once per threshold while the cycles go on."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.config import Settings
from leptonic.config.observe import ObserveSettings
from leptonic.core.usage import DEFAULT_PRICES
from leptonic.platform import Platform
from leptonic.store.usage import UsageStore
from tests.integration.apitools import problem
from tests.integration.apitools import wait as _wait
from tests.integration.clitools import ok_json, one_line_error


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=18080, database_url=database_url,
                    observe=ObserveSettings(interval_s=0.05, budget_check_s=0.0))


def wait(predicate: Any, timeout: float = 15.0) -> Any:
    """A metering pass or a budget check may take a few cycles under load."""
    return _wait(predicate, timeout)


def deploy(api: TestClient, name: str, labels: dict[str, str], cpu: float = 1.0) -> None:
    r = api.post("/api/v1/deployments", json={
        "name": name, "photon": "builtin:echo", "replicas": 2, "labels": labels,
        "resources": {"cpu": cpu, "memory_mb": 512}})
    assert r.status_code == 201, r.text


def item(report: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((i for i in report["items"] if i["key"] == key), None)


def test_replicas_are_metered_and_grouped(api: TestClient, platform: Platform,
                                          cli: Any) -> None:
    deploy(api, "web", {"team": "search"})
    deploy(api, "api", {"team": "ads"}, cpu=2.0)
    wait(lambda: (lambda i: i and i["replica_seconds"] > 1.0)(
        item(api.get("/api/v1/usage?since=1h").json(), "api")))
    report = api.get("/api/v1/usage", params={"since": "1h"}).json()
    web, dep_api = item(report, "web"), item(report, "api")
    assert web
    assert dep_api
    assert web["deployment"] == "web"
    assert web["owners"] == ["deployment/web"]
    # billed at the request (the fake runtime has no processes to measure)
    assert dep_api["cpu_seconds"] == pytest.approx(2.0 * dep_api["replica_seconds"],
                                                   rel=1e-6)
    assert web["cost"] == pytest.approx(
        web["cpu_seconds"] * DEFAULT_PRICES["cpu"]
        + web["memory_gib_seconds"] * DEFAULT_PRICES["memory"], rel=1e-6)
    assert report["total"]["cost"] >= web["cost"] + dep_api["cost"] - 1e-12
    assert report["idle"]["cost"] > 0                    # the fake node is mostly free
    assert report["currency"] == "USD"
    assert report["hourly"]

    by_user = api.get("/api/v1/usage", params={"by": "user", "since": "1h"}).json()
    assert [i["key"] for i in by_user["items"]] == ["token:admin"]
    by_team = api.get("/api/v1/usage", params={"by": "label:team", "since": "1h"}).json()
    assert {i["key"] for i in by_team["items"]} == {"search", "ads"}

    runs = api.get("/api/v1/usage/runs", params={"owner": "web"}).json()
    assert len(runs) == 2
    assert all(r["kind"] == "replica" and not r["closed"] for r in runs)
    assert all(r["shape"]["cpu"] == 1.0 for r in runs)

    shown = cli("usage", "--since", "1h")
    assert shown.exit_code == 0, shown.output
    assert "web" in shown.output
    assert "TOTAL" in shown.output
    assert "idle" in shown.output
    rows = list(csv.reader(io.StringIO(cli("usage", "--by", "label:team", "-o", "csv")
                                       .output)))
    assert rows[0][:2] == ["label:team", "replica_seconds"]
    assert rows[-1][0] == "IDLE"
    assert {r[0] for r in rows[1:-2]} == {"search", "ads"}
    as_json = ok_json(cli("usage", "-o", "json", "--by", "job"))
    assert as_json["items"] == []
    assert as_json["by"] == "job"

    # deleting closes the runs where they stopped; what was metered stays
    assert api.delete("/api/v1/deployments/web").status_code in (200, 202)
    wait(lambda: all(r["closed"] for r in api.get("/api/v1/usage/runs",
                                                  params={"owner": "web"}).json()))
    after = item(api.get("/api/v1/usage?since=1h").json(), "web")
    assert after
    assert after["replica_seconds"] >= web["replica_seconds"]


def test_labels_change_without_replacing_replicas(api: TestClient, platform: Platform) -> None:
    deploy(api, "web", {"team": "search"})
    wait(lambda: api.get("/api/v1/deployments/web").json()["status"]["ready_replicas"] == 2)
    before = {r["id"] for r in api.get("/api/v1/deployments/web/replicas").json()}
    r = api.patch("/api/v1/deployments/web", json={"labels": {"team": "ads"}})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["labels"] == {"team": "ads"}
    assert r.json()["spec"]["created_by"] == "token:admin"
    time.sleep(0.5)
    assert {r["id"] for r in api.get("/api/v1/deployments/web/replicas").json()} == before
    problem(api.patch("/api/v1/deployments/web", json={"labels": {"bad key": "x"}}), 422,
            "label key")
    assert api.get("/api/v1/deployments/web").json()["spec"]["labels"] == {"team": "ads"}


def test_usage_refuses_a_window_or_grouping_it_cannot_read(api: TestClient, cli: Any) -> None:
    problem(api.get("/api/v1/usage", params={"since": "yesterday"}), 422, "since",
            "30d", "2026-12-01")
    problem(api.get("/api/v1/usage", params={"by": "team"}), 422, "label:KEY")
    problem(api.get("/api/v1/usage", params={"since": "1h", "until": "2h"}), 422, "empty")
    assert api.get("/api/v1/usage", params={"since": "2026-01-01"}).status_code == 200
    one_line_error(cli("usage", "--since", "last week"), "90m, 12h, 30d")
    one_line_error(cli("usage", "export"), "--file")


def test_prices_are_set_checked_and_reset(api: TestClient, cli: Any) -> None:
    listed = {p["resource"]: p for p in api.get("/api/v1/prices").json()}
    assert listed["cpu"]["price"] == DEFAULT_PRICES["cpu"]
    assert not listed["cpu"]["set"]
    assert listed["gpu:H100"]["unit"] == "GPU-second"
    assert listed["energy"]["unit"] == "kWh"
    r = api.put("/api/v1/prices/gpu:l4", json={"price": 0.0002})
    assert r.status_code == 200, r.text
    assert (r.json()["resource"], r.json()["updated_by"]) == ("gpu:L4", "token:admin")
    problem(api.put("/api/v1/prices/cpu", json={"price": -1}), 422, "price of cpu", ">= 0")
    problem(api.put("/api/v1/prices/disk", json={"price": 1}), 422, "unknown resource",
            "disk")
    assert {p["resource"]: p["price"] for p in api.get("/api/v1/prices").json()}["cpu"] \
        == DEFAULT_PRICES["cpu"]
    got = ok_json(cli("price", "set", "cpu", "0.001", "-o", "json"))
    assert got["price"] == 0.001
    assert got["set"]
    assert "0.001" in cli("price", "list").output
    one_line_error(cli("price", "set", "memory", "--", "-2"), "price of memory")
    assert cli("price", "reset", "cpu").exit_code == 0
    assert {p["resource"]: p["price"] for p in api.get("/api/v1/prices").json()}["cpu"] \
        == DEFAULT_PRICES["cpu"]
    assert api.delete("/api/v1/prices/gpu:L4").status_code == 204
    assert "gpu:L4" not in {p["resource"] for p in api.get("/api/v1/prices").json()}


def test_budgets_are_checked_and_listed(api: TestClient, cli: Any) -> None:
    problem(api.post("/api/v1/budgets", json={"name": "b", "scope": "all", "monthly": -5}),
            422, "monthly")
    problem(api.post("/api/v1/budgets", json={"name": "b", "scope": "team:x",
                                              "monthly": 5}), 422, "unknown scope")
    problem(api.post("/api/v1/budgets", json={"name": "b", "scope": "all", "monthly": 5,
                                              "notify": ["pager:x"]}), 422, "webhook:URL")
    assert api.get("/api/v1/budgets").json() == []            # nothing stored by a 422
    made = ok_json(cli("budget", "create", "--scope", "deployment:web", "--monthly", "50",
                       "--alert", "50,80,100", "--notify",
                       "webhook:http://127.0.0.1:9/secret-path", "-o", "json"))
    assert made["name"] == "deployment-web"
    assert made["alerts"] == [50.0, 80.0, 100.0]
    assert made["notify"] == ["webhook:http://127.0.0.1:9/…"]      # the path is a secret
    assert made["spent"] == 0.0
    assert made["notified"] == []
    problem(api.post("/api/v1/budgets", json={"name": "deployment-web", "scope": "all",
                                              "monthly": 5}), 409, "exists")
    assert "deployment-web" in cli("budget", "list").output
    one_line_error(cli("budget", "create", "--scope", "nope", "--monthly", "5"),
                   "unknown scope")
    assert cli("budget", "delete", "deployment-web").exit_code == 0
    problem(api.get("/api/v1/budgets/deployment-web"), 404, "budget list")


def test_a_budget_fires_once_per_threshold(api: TestClient, platform: Platform) -> None:
    assert api.put("/api/v1/prices/cpu", json={"price": 1.0}).status_code == 200
    r = api.post("/api/v1/budgets", json={"name": "all", "scope": "all", "monthly": 1.0,
                                          "alerts": [50, 100],
                                          "notify": ["webhook:http://127.0.0.1:9/hook"]})
    assert r.status_code == 201, r.text
    deploy(api, "web", {}, cpu=4.0)          # 8 core-seconds a second: 100% within a second
    wait(lambda: api.get("/api/v1/budgets/all").json()["notified"] == [50.0, 100.0])
    time.sleep(1.0)                          # the cycles go on, past both thresholds
    budget = api.get("/api/v1/budgets/all").json()
    assert budget["percent"] > 100
    assert budget["notified"] == [50.0, 100.0]
    events = [e for e in platform.store.list_events("budget/all")
              if e.reason == "BudgetReached"]
    assert len(events) == 2
    sent = [n for n in platform.observe.ostore.notifications()
            if n["target"] == "budget/all"]
    assert len(sent) == 2
    payload = sent[0]["payload"]
    assert payload["budget"] == "all"
    assert payload["month"] == budget["month"]
    assert "text" in payload
    assert json.dumps(payload)


def test_usage_events_are_cloudevents(api: TestClient, platform: Platform) -> None:
    deploy(api, "web", {"team": "a"})
    wait(lambda: UsageStore(platform.store).runs("web"))
    r = api.get("/api/v1/usage/events", params={"since": "1d", "complete": "false"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/cloudevents-batch+json")
    events = r.json()
    assert events
    assert all(e["specversion"] == "1.0" for e in events)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    web = [e for e in events if e["subject"] == "deployment/web"]
    assert web
    assert web[0]["data"]["labels"] == {"team": "a"}
