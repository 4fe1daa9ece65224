"""Correct under concurrency, on SQLite and PostgreSQL: spec writes state the generation
they read (If-Match / expected_generation), a PATCH without one is merged into the spec
as it is when written, and a photon is never deleted under a deployment created on it.

Bounded loops of concurrent calls (threads against the in-process API, whose handlers run
in a thread pool, or against the store): before these guarantees, 2 of 5 rounds lost one
of two concurrent PATCHes silently, and 2 of 6 rounds left a deployment on a deleted
photon."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.core.models import DeploymentSpec, HandlerInfo
from leptonic.errors import Conflict, NotFound
from leptonic.platform import Platform

PROBLEM = "application/problem+json"
ROUNDS = 8


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:      # the race's loser is a result here
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return out


def test_concurrent_patches_of_different_fields_both_apply(api: TestClient) -> None:
    r = api.post("/api/v1/deployments", json={"name": "echo", "photon": "builtin:echo",
                                              "replicas": 1})
    assert r.status_code == 201, r.text
    for i in range(ROUNDS):
        before = api.get("/api/v1/deployments/echo").json()["generation"]
        a, b = at_once(
            lambda i=i: api.patch("/api/v1/deployments/echo", json={"env": {"ROUND": str(i)}}),
            lambda i=i: api.patch("/api/v1/deployments/echo",
                                  json={"drain_timeout_s": 10 + i}))
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        gens = {a.json()["generation"], b.json()["generation"]}
        assert gens == {before + 1, before + 2}, "each write a generation of its own"
        spec = api.get("/api/v1/deployments/echo").json()["spec"]
        assert spec["env"] == {"ROUND": str(i)}, f"round {i}: the env change was lost"
        assert spec["drain_timeout_s"] == 10 + i, f"round {i}: the drain change was lost"


def test_concurrent_patches_of_one_field_one_wins_visibly(api: TestClient) -> None:
    r = api.post("/api/v1/deployments", json={"name": "echo", "photon": "builtin:echo"})
    assert r.status_code == 201, r.text
    for i in range(ROUNDS):
        a, b = at_once(*(lambda v=v: api.patch("/api/v1/deployments/echo",
                                               json={"env": {"WHO": v}})
                         for v in (f"a{i}", f"b{i}")))
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        last = max((a, b), key=lambda x: x.json()["generation"])
        assert a.json()["generation"] != b.json()["generation"]
        assert api.get("/api/v1/deployments/echo").json()["spec"]["env"] == \
            last.json()["spec"]["env"], "the later generation is what is stored"
    events = api.get("/api/v1/deployments/echo/events").json()
    assert sum(1 for e in events if e["reason"] == "Updated") == 2 * ROUNDS


def test_if_match_applies_only_to_the_generation_read(api: TestClient) -> None:
    r = api.post("/api/v1/deployments", json={"name": "echo", "photon": "builtin:echo"})
    assert r.headers["ETag"] == '"1"'
    got = api.get("/api/v1/deployments/echo")
    tag = got.headers["ETag"]
    ok = api.patch("/api/v1/deployments/echo", json={"replicas": 2},
                   headers={"If-Match": tag})
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == '"2"'
    # a second writer that read generation 1 is refused, and nothing changes
    stale = api.patch("/api/v1/deployments/echo", json={"replicas": 5},
                      headers={"If-Match": tag})
    assert stale.status_code == 409, stale.text
    assert stale.headers["content-type"].startswith(PROBLEM)
    assert "generation 2, not 1" in stale.json()["detail"]
    assert "read it again" in stale.json()["detail"]
    body = api.patch("/api/v1/deployments/echo",
                     json={"replicas": 5, "expected_generation": 1})
    assert body.status_code == 409, body.text
    assert api.get("/api/v1/deployments/echo").json()["spec"]["replicas"] == 2
    # two writers with the same expectation: exactly one wins
    for i in range(ROUNDS):
        tag = api.get("/api/v1/deployments/echo").headers["ETag"]
        a, b = at_once(*(lambda v=v, tag=tag: api.patch(
            "/api/v1/deployments/echo", json={"env": {"WHO": v}}, headers={"If-Match": tag})
            for v in (f"a{i}", f"b{i}")))
        assert sorted((a.status_code, b.status_code)) == [200, 409], (a.text, b.text)
    for bad in ("abc", '"0"', "*"):
        r = api.patch("/api/v1/deployments/echo", json={"replicas": 1},
                      headers={"If-Match": bad})
        assert r.status_code == 422, r.text
        assert "ETag" in r.json()["detail"]


@pytest.mark.parametrize("first", ["delete", "create"])
def test_a_photon_is_never_deleted_under_a_deployment(platform: Platform, first: str) -> None:
    """Delete vs create, decided in one transaction each: one of them fails, never both
    succeed (a deployment on a missing photon version would crash-loop forever)."""
    store = platform.store
    outcomes = set()
    for i in range(ROUNDS):
        name = f"ph{i}"
        pv = store.add_photon_version(name, "app.py:P", f"{i:064x}", "P",
                                      [HandlerInfo(name="run", path="/run")], [])
        spec = DeploymentSpec(photon=name, photon_version=pv.version, replicas=0)
        delete = lambda name=name: store.delete_photon(name)               # noqa: E731
        create = lambda name=name, spec=spec: store.create_deployment(     # noqa: E731
            f"d{name}", spec)
        if first == "delete":
            deleted, created = at_once(delete, create)
        else:
            created, deleted = at_once(create, delete)
        ok_delete = not isinstance(deleted, Exception)
        ok_create = not isinstance(created, Exception)
        assert ok_delete != ok_create, (deleted, created)
        if ok_delete:
            assert isinstance(created, NotFound), created
            assert f"d{name}" not in {d.name for d in store.list_deployments()}
        else:
            assert isinstance(deleted, Conflict), deleted
            assert store.get_photon(name, pv.version).version == pv.version
        outcomes.add("delete won" if ok_delete else "create won")
    # (which one wins is the race's; both orders must stay consistent)
    assert outcomes


def test_the_client_states_the_generation_it_read(api: TestClient, token: str) -> None:
    from leptonic.client import Client
    from tests.integration.clitools import _TestClientTransport

    c = Client(url="http://testserver", token=token, transport=_TestClientTransport(api))
    d = c.create_deployment("echo", "builtin:echo", replicas=1)
    assert c.update_deployment("echo", replicas=2, expected_generation=d.generation
                               ).generation == d.generation + 1
    with pytest.raises(Conflict, match="read it again"):
        c.update_deployment("echo", replicas=3, expected_generation=d.generation)
    assert c.get_deployment("echo").spec.replicas == 2
