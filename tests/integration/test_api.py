"""The control-plane API in-process on SQLite: happy paths and every named bad input.

Each bad input must get a problem+json that says what was wrong, and must leave stored
state exactly as it was.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.platform import Platform
from tests.integration.bundles import ECHO, bundle, upload
from tests.integration.dbdump import dump

PROBLEM = "application/problem+json"


def problem(resp: Any, status: int, *words: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


def snapshot(platform: Platform) -> dict[str, Any]:
    s = platform.store
    return {"photons": [p.model_dump() for p in s.list_photons()],
            "deployments": [(d.name, d.spec.model_dump(), d.generation)
                            for d in s.list_deployments()],
            "artifacts": sorted(p.name for p in platform.layout.artifacts.iterdir())}


def wait_phase(api: TestClient, name: str, phase: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = api.get(f"/api/v1/deployments/{name}").json()
        st = d.get("status", {})
        # the phase of the current spec, not one the controller saw before a change
        if st.get("phase") == phase and st.get("observed_generation") == d["generation"]:
            return d
        time.sleep(0.02)
    raise AssertionError(f"{name} never reached {phase}: {d}")


# -- auth ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/status"), ("GET", "/api/v1/photons"), ("POST", "/api/v1/photons"),
    ("GET", "/api/v1/deployments"), ("POST", "/api/v1/deployments"),
    ("PATCH", "/api/v1/deployments/x"), ("DELETE", "/api/v1/deployments/x"),
    ("GET", "/api/v1/replicas"), ("GET", "/api/v1/nodes"), ("GET", "/api/v1/events"),
    ("POST", "/run/x/echo"),
])
def test_every_route_needs_a_token(anon: TestClient, method: str, path: str) -> None:
    problem(anon.request(method, path), 401, "token")
    resp = anon.request(method, path, headers={"Authorization": "Bearer lep_wrong"})
    problem(resp, 401)


def test_admin_token_is_stored_hashed(platform: Platform, token: str) -> None:
    path = platform.layout.admin_token
    assert path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert token not in dump(platform.store)
    if platform.store.dialect == "sqlite":
        assert token.encode() not in platform.layout.database.read_bytes()


def test_status(api: TestClient) -> None:
    body = api.get("/api/v1/status").json()
    assert body["database"] in ("sqlite", "postgresql")
    assert body["leader"] is True


# -- photons ------------------------------------------------------------------------------
def test_photon_versions_are_content_addressed(api: TestClient, platform: Platform) -> None:
    r1 = upload(api, "echo")
    assert r1.status_code == 201, r1.text
    v1 = r1.json()
    assert v1["version"] == 1
    assert [h["name"] for h in v1["handlers"]] == ["echo"]
    assert (platform.layout.artifacts / v1["digest"] / "app.py").read_text() == ECHO

    again = upload(api, "echo")
    assert again.status_code == 200
    assert again.json()["version"] == 1

    changed = upload(api, "echo", files={"app.py": ECHO + "\n# v2\n"})
    assert changed.status_code == 201
    assert changed.json()["version"] == 2
    assert changed.json()["digest"] != v1["digest"]

    got = api.get("/api/v1/photons/echo").json()
    assert [v["version"] for v in got["versions"]] == [1, 2]
    assert api.get("/api/v1/photons/echo/versions/v1").json()["digest"] == v1["digest"]
    assert [p["version"] for p in api.get("/api/v1/photons").json()] == [2]


@pytest.mark.parametrize(("kwargs", "status", "words"), [
    ({"name": "Bad_Name"}, 422, ["invalid photon name", "lowercase"]),
    ({"name": "ok", "entry": "app.py"}, 422, ["FILE.py:ClassName"]),
    ({"name": "ok", "entry": "../app.py:Echo"}, 422, ["relative"]),
    ({"name": "ok", "entry": "other.py:Echo"}, 422, ["not in the bundle"]),
    ({"name": "ok", "files": {"app.py": "import nope\n"}}, 422,
     ["No module named 'nope'"]),
    ({"name": "ok", "files": {"app.py": "from leptonic import Photon\n"
                                        "class Echo(Photon):\n    pass\n"}}, 422,
     ["handler"]),
    ({"name": "ok", "files": {"app.py": "import socket\nfrom leptonic import Photon, handler\n"
                                        "class Echo(Photon):\n    @handler\n"
                                        "    def f(self, s: socket.socket) -> str:\n"
                                        "        return ''\n"}}, 422,
     ["'Echo.f'", "socket", "JSON"]),
    ({"name": "ok", "files": {"app.py": "from leptonic import Photon, handler\n"
                                        "class Echo(Photon):\n"
                                        "    @handler(path='/x')\n    def f(self) -> str:\n"
                                        "        return ''\n"
                                        "    @handler(path='/x')\n    def g(self) -> str:\n"
                                        "        return ''\n"}}, 422, ["'/x'"]),
    ({"name": "ok", "files": {"app.py": ECHO, "../evil.py": "x"}}, 422, ["escapes"]),
    ({"name": "ok", "files": {"app.py": ECHO, "/etc/evil.py": "x"}}, 422, ["escapes"]),
    ({"name": "ok", "data": b"this is not a tarball"}, 422, ["tar.gz"]),
])
def test_bad_photons_are_rejected_and_change_nothing(
        api: TestClient, platform: Platform, kwargs: dict, status: int,
        words: list[str]) -> None:
    assert upload(api, "keep").status_code == 201
    before = snapshot(platform)
    problem(upload(api, **kwargs), status, *words)
    assert snapshot(platform) == before
    assert not list(platform.layout.artifacts.glob(".staging-*"))


def test_symlink_in_bundle_is_rejected(api: TestClient, platform: Platform) -> None:
    data = bundle({"app.py": ECHO}, symlinks={"secrets": "/etc/passwd"})
    problem(upload(api, "ok", data=data), 422, "link")
    assert api.get("/api/v1/photons").json() == []


def test_oversized_bundle_is_413(api: TestClient, platform: Platform) -> None:
    big = bytes(range(256)) * (8 * 1024)          # 2 MiB, over the 1 MiB test limit
    problem(upload(api, "big", data=big), 413, "limit")
    assert api.get("/api/v1/photons").json() == []


def test_delete_photon_in_use_is_409(api: TestClient) -> None:
    assert upload(api, "echo").status_code == 201
    assert api.post("/api/v1/deployments",
                    json={"name": "e", "photon": "echo", "replicas": 0}).status_code == 201
    problem(api.delete("/api/v1/photons/echo"), 409, "used by", "e")
    assert api.get("/api/v1/photons/echo").status_code == 200


# -- deployments --------------------------------------------------------------------------
def test_deployment_lifecycle(api: TestClient) -> None:
    assert upload(api, "echo").status_code == 201
    r = api.post("/api/v1/deployments", json={"name": "echo", "photon": "echo@v1",
                                               "replicas": 2})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["photon_version"] == 1
    d = wait_phase(api, "echo", "Ready")
    assert d["status"]["ready_replicas"] == 2
    reps = api.get("/api/v1/deployments/echo/replicas").json()
    assert len(reps) == 2
    assert {"id", "node", "state", "url", "pid"} <= set(reps[0])
    assert api.get("/api/v1/replicas", params={"deployment": "echo"}).json() == reps

    scaled = api.patch("/api/v1/deployments/echo", json={"replicas": 3}).json()
    assert scaled["generation"] == 2
    wait_phase(api, "echo", "Ready")
    assert len(api.get("/api/v1/deployments/echo/replicas").json()) == 3
    events = api.get("/api/v1/deployments/echo/events").json()
    assert {"Created", "Updated", "ReplicaStarted"} <= {e["reason"] for e in events}
    # the runtime's nodes (the fake backend has one) are listed, replicas placed on them
    [node] = api.get("/api/v1/nodes").json()
    assert (node["name"], node["status"]) == ("fake", "Ready")
    assert node["allocated"] == {"cpu": 0.0, "memory_mb": 0.0, "gpu": 0.0}
    assert {r["node"] for r in api.get("/api/v1/deployments/echo/replicas").json()} == \
        {"fake"}

    assert api.delete("/api/v1/deployments/echo").status_code == 202
    deadline = time.monotonic() + 10
    while api.get("/api/v1/deployments/echo").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert api.get("/api/v1/replicas").json() == []


def test_builtin_photon_deploys(api: TestClient) -> None:
    r = api.post("/api/v1/deployments", json={"name": "b", "photon": "builtin:echo"})
    assert r.status_code == 201, r.text
    wait_phase(api, "b", "Ready")


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"name": "Bad_Name", "photon": "builtin:echo"}, 422, ["lowercase"]),
    ({"name": "x", "photon": "builtin:echo", "replicas": -1}, 422, ["replicas"]),
    ({"name": "x", "photon": "builtin:echo", "replicas": 100000}, 422, ["replicas"]),
    ({"name": "x", "photon": "builtin:echo", "env": {"1BAD": "v"}}, 422, ["1BAD"]),
    ({"name": "x", "photon": "builtin:echo", "surprise": 1}, 422, ["surprise"]),
    ({"name": "x"}, 422, ["photon"]),
    ({"name": "x", "photon": "nosuch"}, 404, ["nosuch"]),
    ({"name": "x", "photon": "keep@7"}, 404, ["keep", "7"]),
    ({"name": "x", "photon": "keep@v0"}, 422, ["NAME@N"]),
    ({"name": "x", "photon": "builtin:nosuch"}, 404, ["nosuch"]),
    ({"name": "taken", "photon": "builtin:echo"}, 409, ["taken", "exists"]),
])
def test_bad_deployments_are_rejected_and_change_nothing(
        api: TestClient, platform: Platform, body: dict, status: int,
        words: list[str]) -> None:
    assert upload(api, "keep").status_code == 201
    assert api.post("/api/v1/deployments",
                    json={"name": "taken", "photon": "keep", "replicas": 0}).status_code == 201
    before = snapshot(platform)
    problem(api.post("/api/v1/deployments", json=body), status, *words)
    assert snapshot(platform) == before


def test_bad_updates_change_nothing(api: TestClient, platform: Platform) -> None:
    api.post("/api/v1/deployments", json={"name": "d", "photon": "builtin:echo",
                                          "replicas": 0})
    before = snapshot(platform)
    problem(api.patch("/api/v1/deployments/d", json={"replicas": -3}), 422, "replicas")
    problem(api.patch("/api/v1/deployments/d", json={"photon": "nosuch"}), 404, "nosuch")
    problem(api.patch("/api/v1/deployments/ghost", json={"replicas": 1}), 404, "ghost")
    assert snapshot(platform) == before


@pytest.mark.parametrize("path", [
    "/api/v1/deployments/ghost", "/api/v1/deployments/ghost/replicas",
    "/api/v1/deployments/ghost/events", "/api/v1/deployments/ghost/logs",
    "/api/v1/photons/ghost", "/api/v1/photons/ghost/versions/1",
])
def test_unknown_objects_are_404_naming_them(api: TestClient, path: str) -> None:
    problem(api.get(path), 404, "ghost")


def test_unknown_deployment_delete_is_404(api: TestClient) -> None:
    problem(api.delete("/api/v1/deployments/ghost"), 404, "ghost")


def test_oversized_and_malformed_bodies(api: TestClient, platform: Platform) -> None:
    before = snapshot(platform)
    big = {"name": "x", "photon": "builtin:echo", "env": {"A": "x" * 100_000}}
    problem(api.post("/api/v1/deployments", json=big), 413, "limit")
    resp = api.post("/api/v1/deployments", content=b"{not json",
                    headers={"content-type": "application/json"})
    problem(resp, 422, "JSON")
    assert snapshot(platform) == before


def test_unknown_route_is_problem_json(api: TestClient) -> None:
    problem(api.get("/api/v1/nothing-here"), 404, "/api/v1/nothing-here")


def test_gateway_unknown_deployment_is_404(api: TestClient) -> None:
    resp = api.post("/run/ghost/echo", json={"text": "hi"})
    problem(resp, 404, "ghost")
