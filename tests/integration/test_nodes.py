"""Nodes through the API, the client and the CLI: listing, cordon/uncordon/drain, and the
resources and placement of deployments (validated against the nodes there are).

The fake runtime reports the cluster set here (two datacenter nodes, one edge node and one
that is down); the same nodes are stored before the platform starts, so every test sees
them from its first request.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.core.models import Node
from leptonic.platform import Platform
from tests.integration.clitools import ok_json, one_line_error

PROBLEM = "application/problem+json"
NODES = [
    Node(name="dc-1", id="a1b2c3d4e5f60718", tier="datacenter", address="10.0.0.1",
         capacity={"cpu": 16.0, "memory_mb": 65536.0, "gpu": 1.0}, gpu_model="A100",
         labels={"tier": "datacenter", "zone": "a"}),
    Node(name="dc-2", id="b2c3d4e5f6071829", tier="datacenter", address="10.0.0.2",
         capacity={"cpu": 8.0, "memory_mb": 32768.0, "gpu": 0.0},
         labels={"tier": "datacenter", "zone": "b"}),
    Node(name="edge-1", id="c3d4e5f607182930", tier="edge", address="10.1.0.1",
         capacity={"cpu": 4.0, "memory_mb": 8192.0, "gpu": 0.0},
         labels={"tier": "edge", "zone": "a"}),
    # down: its (larger) capacity must not make a request look as if it could fit
    Node(name="gone-1", id="d4e5f60718293041", tier="datacenter", address="10.0.0.9",
         capacity={"cpu": 128.0, "memory_mb": 1048576.0, "gpu": 8.0}, alive=False),
]


@pytest.fixture(autouse=True)
def cluster(platform: Platform) -> list[Node]:
    """Before the platform starts: the runtime's nodes, and the same in the store."""
    now = time.time()
    nodes = [n.model_copy(update={"heartbeat_at": now if n.alive else now - 3600})
             for n in NODES]
    platform.backend.cluster = nodes          # type: ignore[attr-defined]
    for n in nodes:
        platform.store.upsert_node(n)
    return nodes


def problem(resp: Any, status: int, *words: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    detail = str(resp.json()["detail"])
    for word in words:
        assert word in detail, detail
    return detail


def node_events(platform: Platform, name: str) -> list[str]:
    return [e.reason for e in platform.store.list_events(f"node/{name}")]


def controls(platform: Platform) -> dict[str, tuple[bool, bool]]:
    return {n.name: (n.control.cordoned, n.control.draining)
            for n in platform.store.list_nodes()}


# -- the node routes --------------------------------------------------------------------

def test_list_and_get_by_name_and_id_prefix(api: TestClient) -> None:
    listed = api.get("/api/v1/nodes").json()
    by_name = {n["name"]: n for n in listed}
    assert {"dc-1", "dc-2", "edge-1", "gone-1"} <= set(by_name)
    assert by_name["edge-1"]["tier"] == "edge"
    assert by_name["dc-1"]["gpu_model"] == "A100"
    assert by_name["dc-1"]["status"] == "Ready"
    assert by_name["gone-1"]["status"] == "NotReady"

    got = api.get("/api/v1/nodes/dc-1").json()
    assert (got["name"], got["address"], got["capacity"]["cpu"]) == ("dc-1", "10.0.0.1", 16)
    assert got["labels"] == {"tier": "datacenter", "zone": "a"}
    assert api.get("/api/v1/nodes/c3d4e5f6").json()["name"] == "edge-1"   # id prefix
    assert api.get("/api/v1/nodes/c3d4e5f607182930").json()["name"] == "edge-1"


def test_cordon_uncordon_drain_change_state_and_write_events(
        api: TestClient, platform: Platform) -> None:
    r = api.post("/api/v1/nodes/dc-2/cordon")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Cordoned"
    assert r.json()["control"] == {"cordoned": True, "draining": False}
    assert api.get("/api/v1/nodes/dc-2").json()["status"] == "Cordoned"

    r = api.post("/api/v1/nodes/dc-2/uncordon")
    assert r.json()["status"] == "Ready"
    assert r.json()["control"] == {"cordoned": False, "draining": False}

    r = api.post("/api/v1/nodes/b2c3d4e5/drain")               # by id prefix
    assert (r.json()["name"], r.json()["status"]) == ("dc-2", "Draining")
    assert r.json()["control"] == {"cordoned": True, "draining": True}
    assert platform.store.get_node("dc-2").control.draining

    r = api.post("/api/v1/nodes/dc-2/uncordon")                # ends the drain too
    assert r.json()["status"] == "Ready"
    assert controls(platform)["dc-2"] == (False, False)

    reasons = node_events(platform, "dc-2")                     # newest first
    assert reasons[:4] == ["Uncordoned", "Draining", "Uncordoned", "Cordoned"]
    assert controls(platform)["dc-1"] == (False, False), "other nodes untouched"


def test_cordon_keeps_a_drain(api: TestClient) -> None:
    api.post("/api/v1/nodes/dc-1/drain")
    r = api.post("/api/v1/nodes/dc-1/cordon")
    assert r.json()["control"] == {"cordoned": True, "draining": True}


@pytest.mark.parametrize("path", ["/api/v1/nodes/nope", "/api/v1/nodes/nope/cordon",
                                  "/api/v1/nodes/nope/uncordon", "/api/v1/nodes/nope/drain"])
def test_unknown_node_is_404_and_changes_nothing(api: TestClient, platform: Platform,
                                                 path: str) -> None:
    before = controls(platform)
    method = "GET" if path.endswith("nope") else "POST"
    problem(api.request(method, path), 404, "'nope'", "leptonic node list")
    assert controls(platform) == before
    assert node_events(platform, "nope") == []


def test_a_short_or_ambiguous_id_prefix_is_404(api: TestClient) -> None:
    problem(api.get("/api/v1/nodes/a1b"), 404, "a1b")           # too short to be an id


def test_only_admins_cordon(api: TestClient, anon: TestClient, platform: Platform) -> None:
    r = api.post("/api/v1/tokens", json={"name": "dev", "role": "developer"})
    dev = {"Authorization": f"Bearer {r.json()['token']}"}
    assert anon.get("/api/v1/nodes/dc-1", headers=dev).status_code == 200
    problem(anon.post("/api/v1/nodes/dc-1/drain", headers=dev), 403, "admin")
    assert controls(platform)["dc-1"] == (False, False)


# -- resources and placement of deployments ---------------------------------------------

def test_create_with_resources_and_placement(api: TestClient) -> None:
    r = api.post("/api/v1/deployments", json={
        "name": "web", "photon": "builtin:echo", "replicas": 0,
        "resources": {"cpu": 0.5, "memory_mb": 512},
        "placement": {"tier": "edge", "node_selector": {"zone": "a"}}})
    assert r.status_code == 201, r.text
    spec = api.get("/api/v1/deployments/web").json()["spec"]
    assert spec["resources"] == {"cpu": 0.5, "memory_mb": 512, "gpu": 0.0}
    assert spec["placement"] == {"tier": "edge", "node_selector": {"zone": "a"},
                                 "gpu_models": [], "policy": None}


def test_unknown_tier_is_422_naming_the_tiers(api: TestClient, platform: Platform) -> None:
    r = api.post("/api/v1/deployments", json={"name": "x", "photon": "builtin:echo",
                                              "placement": {"tier": "moon"}})
    problem(r, 422, "placement.tier", "'datacenter'", "'edge'", "'any'")
    assert platform.store.list_deployments() == []


@pytest.mark.parametrize(("resources", "words"), [
    ({"cpu": 32}, ["32 CPU", "largest node has 16"]),
    ({"memory_mb": 100_000}, ["100000 MiB", "largest node has 65536"]),
    ({"gpu": 2}, ["2 GPU", "largest node has 1"]),
])
def test_resources_no_node_can_hold_are_422_and_store_nothing(
        api: TestClient, platform: Platform, resources: dict[str, Any],
        words: list[str]) -> None:
    r = api.post("/api/v1/deployments", json={"name": "big", "photon": "builtin:echo",
                                              "resources": resources})
    problem(r, 422, "resources", *words)           # the node that is down does not count
    assert platform.store.list_deployments() == []
    assert [e for e in platform.store.list_events() if e.object == "deployment/big"] == []


def test_resources_that_fit_only_a_busy_node_are_accepted(api: TestClient) -> None:
    # dc-1 could hold it once it has room: not refused up front
    r = api.post("/api/v1/deployments", json={"name": "gpu", "photon": "builtin:echo",
                                              "replicas": 0,
                                              "resources": {"cpu": 12, "gpu": 1}})
    assert r.status_code == 201, r.text


def test_patch_merges_resources_and_replaces_the_selector(api: TestClient,
                                                          platform: Platform) -> None:
    api.post("/api/v1/deployments", json={
        "name": "web", "photon": "builtin:echo", "replicas": 0,
        "resources": {"cpu": 1, "memory_mb": 1024},
        "placement": {"tier": "datacenter", "node_selector": {"zone": "a", "disk": "ssd"}}})
    gen = api.get("/api/v1/deployments/web").json()["generation"]

    r = api.patch("/api/v1/deployments/web", json={"resources": {"cpu": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["resources"] == {"cpu": 2.0, "memory_mb": 1024, "gpu": 0.0}

    r = api.patch("/api/v1/deployments/web", json={"placement": {"node_selector":
                                                                 {"zone": "b"}}})
    assert r.json()["spec"]["placement"] == {"tier": "datacenter",
                                             "node_selector": {"zone": "b"},
                                             "gpu_models": [], "policy": None}
    r = api.patch("/api/v1/deployments/web", json={"placement": {"tier": "edge"}})
    assert r.json()["spec"]["placement"] == {"tier": "edge", "node_selector": {"zone": "b"},
                                             "gpu_models": [], "policy": None}
    assert r.json()["generation"] == gen + 3
    r = api.patch("/api/v1/deployments/web", json={"placement": {"policy": "energy"}})
    assert r.json()["spec"]["placement"]["policy"] == "energy"
    assert r.json()["spec"]["placement"]["tier"] == "edge"
    bad = api.patch("/api/v1/deployments/web", json={"placement": {"policy": "greedy"}})
    assert bad.status_code == 422
    assert "spread" in bad.json()["detail"], bad.text
    assert "energy" in bad.json()["detail"], bad.text
    bad = api.patch("/api/v1/deployments/web", json={"resources": {"gpu": 1.5}})
    assert bad.status_code == 422, bad.text
    assert "whole GPUs" in bad.json()["detail"], bad.text

    updated = [e.message for e in platform.store.list_events("deployment/web")
               if e.reason == "Updated"]
    assert any("resources=2 CPU 1024 MiB" in m for m in updated), updated
    assert any("placement=tier datacenter zone=b" in m for m in updated), updated

    def stored() -> tuple[Any, int]:
        d = api.get("/api/v1/deployments/web").json()
        return d["spec"], d["generation"]

    before = stored()
    problem(api.patch("/api/v1/deployments/web", json={"resources": {"cpu": 17}}), 422,
            "17 CPU", "largest node has 16")
    problem(api.patch("/api/v1/deployments/web", json={"placement": {"tier": "moon"}}),
            422, "'edge'")
    assert stored() == before


# -- the client ---------------------------------------------------------------------------

def test_client_node_methods(api: TestClient, token: str) -> None:
    from leptonic.client import Client
    from tests.integration.clitools import _TestClientTransport

    with Client(url="http://testserver", token=token,
                transport=_TestClientTransport(api)) as client:
        assert "edge-1" in [n.name for n in client.list_nodes()]
        node = client.get_node("edge-1")
        assert isinstance(node, Node)
        assert node.tier == "edge"
        assert client.cordon_node("edge-1").status == "Cordoned"
        assert client.drain_node("edge-1").status == "Draining"
        assert client.uncordon_node("edge-1").status == "Ready"


# -- the CLI --------------------------------------------------------------------------------

def test_cli_node_list_and_get(cli: Any) -> None:
    listed = ok_json(cli("node", "list", "--output", "json"))
    assert {"dc-1", "dc-2", "edge-1", "gone-1"} <= {n["name"] for n in listed}

    out = cli("node", "list")
    assert out.exit_code == 0, out.stderr
    header = out.stdout.splitlines()[0].split()
    assert header == ["NAME", "ID", "TIER", "ADDRESS", "STATE", "CPU", "MEMORY", "GPU",
                      "LABELS", "HEARTBEAT"]
    row = next(line for line in out.stdout.splitlines() if line.startswith("dc-1"))
    for cell in ("a1b2c3d4", "datacenter", "10.0.0.1", "Ready", "0/16", "0.0/64.0Gi",
                 "0/1 A100", "tier=datacenter,zone=a"):
        assert cell in row, row
    assert "a1b2c3d4e5" not in row, "the id is shortened"
    gone = next(line for line in out.stdout.splitlines() if line.startswith("gone-1"))
    assert "NotReady" in gone

    got = ok_json(cli("node", "get", "c3d4e5f6", "-o", "json"))
    assert (got["name"], got["tier"]) == ("edge-1", "edge")
    shown = cli("node", "get", "edge-1")
    assert shown.exit_code == 0
    assert "10.1.0.1" in shown.stdout
    assert "zone=a" in shown.stdout


def test_cli_cordon_drain_uncordon(cli: Any, platform: Platform) -> None:
    assert ok_json(cli("node", "cordon", "dc-2", "-o", "json"))["status"] == "Cordoned"
    out = cli("node", "drain", "dc-2")
    assert out.exit_code == 0, out.stderr
    assert "dc-2" in out.stdout
    assert "Draining" in out.stdout
    assert platform.store.get_node("dc-2").control.draining
    assert ok_json(cli("node", "uncordon", "dc-2", "-o", "json"))["status"] == "Ready"
    assert node_events(platform, "dc-2")[:3] == ["Uncordoned", "Draining", "Cordoned"]


def test_cli_unknown_node_is_one_line_error(cli: Any) -> None:
    for verb in ("get", "cordon", "uncordon", "drain"):
        one_line_error(cli("node", verb, "nope"), "nope", "leptonic node list")


def test_cli_deployment_flags_make_the_spec(cli: Any) -> None:
    dep = ok_json(cli("deployment", "create", "--name", "web", "--photon", "builtin:echo",
                      "--replicas", "0", "--no-wait", "--cpu", "0.5", "--memory", "512Mi",
                      "--gpu", "0", "--tier", "edge", "--node-selector", "zone=a",
                      "--node-selector", "disk=ssd", "-o", "json"))
    assert dep["spec"]["resources"] == {"cpu": 0.5, "memory_mb": 512, "gpu": 0.0}
    assert dep["spec"]["placement"] == {"tier": "edge",
                                        "node_selector": {"zone": "a", "disk": "ssd"},
                                        "gpu_models": [], "policy": None}

    shown = cli("deployment", "get", "web")
    assert "0.5 CPU, 512 MiB" in shown.stdout
    assert "tier edge, labels disk=ssd, zone=a, spread (default)" in shown.stdout

    dep = ok_json(cli("deployment", "update", "web", "--memory", "1Gi", "--node-selector",
                      "zone=b", "--no-wait", "-o", "json"))
    assert dep["spec"]["resources"] == {"cpu": 0.5, "memory_mb": 1024, "gpu": 0.0}
    assert dep["spec"]["placement"]["node_selector"] == {"zone": "b"}
    dep = ok_json(cli("deployment", "update", "web", "--tier", "any", "--placement", "energy",
                      "--gpu-model", "A100", "--gpu-model", "H100", "--no-wait", "-o", "json"))
    assert dep["spec"]["placement"] == {"tier": "any", "node_selector": {"zone": "b"},
                                        "gpu_models": ["A100", "H100"], "policy": "energy"}
    assert "GPU A100|H100, energy" in cli("deployment", "get", "web").stdout
    bad = cli("deployment", "update", "web", "--placement", "greedy")
    assert bad.exit_code == 2
    assert "greedy" in bad.output


def test_cli_too_large_is_one_line_error(cli: Any, platform: Platform) -> None:
    one_line_error(cli("deployment", "create", "--name", "big", "--photon", "builtin:echo",
                       "--no-wait", "--cpu", "64"), "64 CPU", "largest node has 16")
    assert platform.store.list_deployments() == []


@pytest.mark.parametrize("item", ["zone", "=a", "zone="])
def test_cli_bad_node_selector_is_a_usage_error(cli: Any, platform: Platform,
                                                item: str) -> None:
    out = cli("deployment", "create", "--name", "web", "--photon", "builtin:echo",
              "--no-wait", "--node-selector", item)
    assert out.exit_code == 2, (out.stdout, out.stderr)
    assert "Invalid value for '--node-selector'" in out.stderr
    assert f"'{item}' is not KEY=VALUE" in out.stderr
    assert "Traceback" not in out.output
    assert platform.store.list_deployments() == []


def test_cli_bad_tier_and_memory_are_usage_errors(cli: Any) -> None:
    out = cli("deployment", "create", "--name", "web", "--photon", "builtin:echo",
              "--tier", "moon")
    assert out.exit_code == 2
    assert "'moon' is not one of" in out.stderr
    out = cli("deployment", "create", "--name", "web", "--photon", "builtin:echo",
              "--memory", "lots")
    assert out.exit_code == 2
    assert "--memory" in out.stderr


def test_replicas_table_names_the_node(cli: Any, platform: Platform) -> None:
    ok_json(cli("deployment", "create", "--name", "web", "--photon", "builtin:echo",
                "--replicas", "1", "--tier", "edge", "-o", "json", "--timeout", "20"))
    reps = ok_json(cli("deployment", "replicas", "web", "-o", "json"))
    out = cli("deployment", "replicas", "web")
    assert "NODE" in out.stdout.splitlines()[0]
    for r in reps:
        row = next(line for line in out.stdout.splitlines() if line.startswith(r["id"]))
        assert r["node"] in row


# -- the dashboard --------------------------------------------------------------------------

def test_dashboard_nodes_show_tier_state_allocation_labels(platform: Platform, api: TestClient,
                                                           token: str) -> None:
    api.post("/api/v1/nodes/dc-2/cordon")
    web = TestClient(platform, base_url="http://testserver", follow_redirects=False)
    assert web.post("/login", data={"token": token}).status_code == 303
    page = web.get("/ui/fragments/nodes")
    assert page.status_code == 200
    text = page.text
    for cell in ("edge-1", "10.1.0.1", "edge", "Cordoned", "NotReady", "0 / 16", "A100",
                 "zone=a"):
        assert cell in text, cell


def test_writers_of_one_new_row_never_race_into_a_duplicate_key(platform: Platform) -> None:
    """The controller and an API call (or two control planes) may write the same new node,
    replica or alert state at once: one statement, no UPDATE-then-INSERT gap (on
    PostgreSQL that gap was a UniqueViolation)."""
    from concurrent.futures import ThreadPoolExecutor

    from leptonic.core.alerts import AlertState
    from leptonic.store.observe import ObserveStore

    store = platform.store
    store_observe = ObserveStore(store)

    def write(args: tuple[int, int]) -> None:
        round_, writer = args
        store.upsert_node(Node(name=f"race-{round_}", id=f"{round_:016x}", tier="edge",
                               address=f"10.9.0.{writer}", capacity={"cpu": 1.0}))
        store_observe.put_state("rule", f"node/race-{round_}",
                                AlertState(state="pending", since=float(writer)), 1.0)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, [(r, w) for r in range(15) for w in range(4)]))
    names = [n.name for n in store.list_nodes() if n.name.startswith("race-")]
    assert sorted(names) == sorted(f"race-{r}" for r in range(15))
    assert {n.address for n in store.list_nodes() if n.name == "race-0"} <= {
        f"10.9.0.{w}" for w in range(4)}
    assert len(store_observe.states("rule")) == 15
