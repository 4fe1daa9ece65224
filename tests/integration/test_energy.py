"""Energy through the in-process platform: a node's power override over the API and the
CLI (422 naming the table point), the live accounting in /metrics, the built-in series and
``GET /energy``, and ``leptonic energy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.config import Settings
from leptonic.config.observe import ObserveSettings
from leptonic.core.power import HP_ML110_G5
from leptonic.platform import Platform
from tests.integration.apitools import problem, wait
from tests.integration.clitools import ok_json, one_line_error

TABLE = list(HP_ML110_G5.points)
TABLE_ARG = ",".join(f"{w:g}" for w in TABLE)


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=18080, database_url=database_url,
                    observe=ObserveSettings(interval_s=0.05))


def deploy(api: TestClient, name: str = "echo", cpu: float = 8.0) -> None:
    r = api.post("/api/v1/deployments", json={"name": name, "photon": "builtin:echo",
                                               "replicas": 2, "resources": {"cpu": cpu}})
    assert r.status_code == 201, r.text


# -- the power override -----------------------------------------------------------------

def test_set_get_and_reset_a_node_power_override(api: TestClient, platform: Platform) -> None:
    wait(lambda: api.get("/api/v1/nodes/fake").status_code == 200)
    before = api.get("/api/v1/nodes/fake/power").json()
    assert (before["override"], before["source"]) == (None, "model")
    assert before["model"]["cpu"]["points"][0] == pytest.approx(58.4 * 64 / 32)

    r = api.put("/api/v1/nodes/fake/power", json={"table": TABLE, "standby_w": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["override"] == {"table": TABLE, "standby_w": 4}
    assert (body["source"], body["model"]["standby_w"]) == ("override", 4)
    assert body["model"]["cpu"]["points"] == TABLE
    assert api.get("/api/v1/nodes/fake").json()["power"] == {"table": TABLE, "standby_w": 4}
    assert "PowerSet" in [e.reason for e in platform.store.list_events("node/fake")]

    # what the controller writes of the node never drops the admin's override
    node = platform.store.get_node("fake")
    platform.store.upsert_node(node.model_copy(update={"power": None}))
    assert platform.store.get_node("fake").power == {"table": TABLE, "standby_w": 4}
    wait(lambda: platform.observe.energy.snapshot.nodes.get("fake") is not None and
         platform.observe.energy.snapshot.nodes["fake"].source == "override")

    r = api.delete("/api/v1/nodes/fake/power")
    assert r.status_code == 200, r.text
    assert (r.json()["override"], r.json()["source"]) == (None, "model")
    assert platform.store.get_node("fake").power is None


@pytest.mark.parametrize(("body", "says"), [
    ({"table": [*TABLE[:3], 90.0, *TABLE[4:]]}, "point 3 (30%) is 90 W, below point 2"),
    ({"table": [*TABLE[:6], -1.0, *TABLE[7:]]}, "point 6 (60%) is -1 W"),
    ({"table": TABLE[:5]}, "11 points"),
    ({"gpu_table": [*TABLE[:10], 1.0]}, "GPU table: point 10 (100%)"),
    ({"idle_w": 300.0, "max_w": 200.0}, "above max power"),
    ({}, "nothing to set"),
])
def test_a_bad_power_override_is_a_422_naming_what_is_wrong(
        api: TestClient, platform: Platform, body: dict[str, Any], says: str) -> None:
    wait(lambda: api.get("/api/v1/nodes/fake").status_code == 200)
    problem(api.put("/api/v1/nodes/fake/power", json=body), 422, says, "node fake")
    assert platform.store.get_node("fake").power is None


def test_watts_no_node_draws_are_refused(api: TestClient) -> None:
    wait(lambda: api.get("/api/v1/nodes/fake").status_code == 200)
    for raw in ('{"idle_w": 1e400, "max_w": 1e400}', '{"idle_w": 1, "max_w": 2e6}'):
        r = api.put("/api/v1/nodes/fake/power", content=raw,
                    headers={"content-type": "application/json"})
        problem(r, 422, "max_w")


def test_power_of_an_unknown_node_is_404(api: TestClient) -> None:
    problem(api.put("/api/v1/nodes/nope/power", json={"standby_w": 1}), 404, "nope")
    problem(api.get("/api/v1/nodes/nope/power"), 404, "nope")
    problem(api.delete("/api/v1/nodes/nope/power"), 404, "nope")


# -- live accounting ----------------------------------------------------------------------

def test_energy_in_metrics_series_and_the_api(api: TestClient, platform: Platform) -> None:
    wait(lambda: api.get("/api/v1/nodes/fake").status_code == 200)
    assert api.put("/api/v1/nodes/fake/power",
                   json={"idle_w": 100.0, "max_w": 200.0}).status_code == 200
    deploy(api, cpu=8.0)                       # 2 x 8 of 64 cores: 25% -> 125 W

    def accounted() -> Any:
        snap = platform.observe.energy.snapshot
        d = snap.deployments.get("echo")
        return snap if d and d[0] > 0 and d[1] > 0 else None

    snap = wait(accounted)
    assert snap.nodes["fake"].watts == pytest.approx(125.0)
    assert snap.deployments["echo"][0] == pytest.approx(25.0)     # the dynamic part

    text = api.get("/metrics").text
    for line in ('leptonic_node_power_watts{node="fake"} 125.0',
                 'leptonic_node_power_source{node="fake",source="override"} 1.0',
                 'leptonic_deployment_power_watts{deployment="echo"} 25.0'):
        assert line in text, line
    assert 'leptonic_node_energy_joules_total{node="fake"}' in text
    assert 'leptonic_deployment_energy_joules_total{deployment="echo"}' in text

    def charted() -> Any:
        r = api.get("/api/v1/metrics/query", params={"node": "fake", "since": "5m",
                                                     "metrics": "node_power_watts,"
                                                                "node_energy_joules"})
        assert r.status_code == 200, r.text
        v = r.json()["values"]
        return v if len([x for x in v["node_energy_joules"] if x]) >= 3 else None

    assert 125.0 in wait(charted)["node_power_watts"]
    dep = api.get("/api/v1/metrics/query", params={"deployment": "echo", "since": "5m",
                                                   "metrics": "power_watts,energy_joules"})
    assert dep.status_code == 200, dep.text

    r = api.get("/api/v1/energy", params={"since": "10m"})
    assert r.status_code == 200, r.text
    body = r.json()
    [node] = [n for n in body["nodes"] if n["node"] == "fake"]
    assert (node["source"], node["watts"]) == ("override", pytest.approx(125.0))
    assert 0 < node["kwh"] <= node["total_kwh"] + 1e-12
    [echo] = body["deployments"]
    assert echo["deployment"] == "echo"
    assert echo["watts"] == pytest.approx(25.0)
    assert 0 < echo["kwh"] < node["kwh"]
    assert body["kwh"] == pytest.approx(sum(n["kwh"] for n in body["nodes"]))

    # the dashboard: watts and source per node, watts and kWh of the deployment
    web = TestClient(platform, base_url="http://testserver", follow_redirects=False)
    token = api.headers["Authorization"].split()[1]
    assert web.post("/login", data={"token": token, "next": "/"}).status_code == 303
    nodes = web.get("/ui/fragments/nodes").text
    assert "125 W" in nodes
    assert "override" in nodes
    summary = web.get("/ui/fragments/deployments/echo/summary").text
    assert "25 W" in summary
    assert "kWh" in summary


@pytest.mark.parametrize(("since", "says"), [("a week", "invalid since"),
                                             ("30d", "longest retention"),
                                             ("0s", "above 0")])
def test_energy_rejects_a_bad_window(api: TestClient, since: str, says: str) -> None:
    problem(api.get("/api/v1/energy", params={"since": since}), 422, says)


# -- the CLI ------------------------------------------------------------------------------

def test_cli_set_power_energy_and_errors(cli: Any, api: TestClient,
                                         platform: Platform) -> None:
    wait(lambda: api.get("/api/v1/nodes/fake").status_code == 200)
    got = ok_json(cli("node", "set-power", "fake", "--table", TABLE_ARG, "-o", "json"))
    assert (got["source"], got["override"]) == ("override", {"table": TABLE})
    # settings not given keep their override; idle/max replace the table
    got = ok_json(cli("node", "set-power", "fake", "--standby", "5", "-o", "json"))
    assert got["override"] == {"table": TABLE, "standby_w": 5.0}
    got = ok_json(cli("node", "set-power", "fake", "--idle", "90", "--max", "180",
                      "-o", "json"))
    assert got["override"] == {"idle_w": 90.0, "max_w": 180.0, "standby_w": 5.0}
    shown = cli("node", "power", "fake")
    assert shown.exit_code == 0
    assert "override" in shown.stdout
    assert "90.0 W" in shown.stdout

    bad = ",".join(f"{w:g}" for w in [*TABLE[:4], 1.0, *TABLE[5:]])
    one_line_error(cli("node", "set-power", "fake", "--table", bad), "point 4 (40%)")
    one_line_error(cli("node", "set-power", "fake", "--table", "1,x"), "--table takes 11")
    one_line_error(cli("node", "set-power", "fake"), "--reset")
    got = ok_json(cli("node", "set-power", "fake", "--reset", "-o", "json"))
    assert (got["override"], got["source"]) == (None, "model")

    wait(lambda: platform.observe.energy.snapshot.nodes.get("fake"))
    report = ok_json(cli("energy", "--since", "1h", "-o", "json"))
    assert [n["node"] for n in report["nodes"]] == ["fake"]
    people = cli("energy")
    assert people.exit_code == 0
    assert "fake" in people.stdout
    assert "model" in people.stdout
    one_line_error(cli("energy", "--since", "soon"), "invalid since")
