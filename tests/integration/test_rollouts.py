"""Rollouts, autoscaling and probes through the API and the CLI, in-process: the real API,
store and controller, fake replicas (no traffic reaches them, so canary steps advance on
replica health and say so)."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from leptonic.platform import Platform
from tests.integration.clitools import ok_json, one_line_error


def wait(api: TestClient, name: str, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    """Poll ``GET /deployments/{name}/rollout`` until ``predicate(rollout)``."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/api/v1/deployments/{name}/rollout")
        if r.status_code == 200 and predicate(r.json()):
            return dict(r.json())
        assert time.monotonic() < deadline, f"timed out; last: {r.text[:2000]}"
        time.sleep(0.02)


def wait_routes(api: TestClient, name: str, predicate: Any,
                timeout: float = 15.0) -> dict[str, Any]:
    """Poll the gateway's live route table of ``name`` until ``predicate(routes)``."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/api/v1/deployments/{name}/routes")
        if r.status_code == 200 and predicate(r.json()):
            return dict(r.json())
        assert time.monotonic() < deadline, f"timed out; last: {r.text[:2000]}"
        time.sleep(0.02)


def phase(ro: dict[str, Any]) -> str:
    return str(ro["status"]["phase"])


def create(api: TestClient, name: str = "svc", **body: Any) -> dict[str, Any]:
    r = api.post("/api/v1/deployments", json={"name": name, "photon": "builtin:echo",
                                              "replicas": 2, **body})
    assert r.status_code == 201, r.text
    wait(api, name, lambda ro: ro["status"]["id"] == 0)
    if not body.get("autoscaling"):
        deadline = time.monotonic() + 15
        while sum(x["state"] == "ready" for x in
                  api.get(f"/api/v1/deployments/{name}/replicas").json()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    return dict(r.json())


def test_update_rolls_out_and_rollback_goes_back(api: TestClient) -> None:
    create(api)
    assert api.post("/api/v1/deployments/svc/rollback").status_code == 409, "nothing yet"
    r = api.patch("/api/v1/deployments/svc", json={"env": {"V": "2"}})
    assert r.status_code == 200
    ro = wait(api, "svc", lambda ro: ro["status"]["id"] == 1 and phase(ro) == "Succeeded")
    assert ro["status"]["strategy"]["type"] == "rolling"
    assert ro["status"]["target"]["spec"]["env"] == {"V": "2"}
    # the deployment's status is written after the rollout's, by the next tick
    deadline = time.monotonic() + 10
    while (d := api.get("/api/v1/deployments/svc").json())["status"]["rollout"] != \
            "Succeeded" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d["status"]["rollout"] == "Succeeded"
    reps = api.get("/api/v1/deployments/svc/replicas").json()
    assert {r["generation"] for r in reps} == {d["status"]["template_generation"]}
    events = [e["reason"] for e in api.get("/api/v1/deployments/svc/events").json()]
    assert {"RolloutStarted", "RolloutSucceeded"} <= set(events)

    back = api.post("/api/v1/deployments/svc/rollback")
    assert back.status_code == 200, back.text
    assert back.json()["spec"]["env"] == {}
    wait(api, "svc", lambda ro: ro["status"]["id"] == 2 and phase(ro) == "Succeeded")
    assert api.get("/api/v1/deployments/svc").json()["status"]["template_generation"] == 1


def test_canary_without_traffic_advances_on_health_and_says_so(api: TestClient) -> None:
    create(api, strategy={"type": "canary", "steps": [50], "step_interval_s": 0.1})
    api.patch("/api/v1/deployments/svc", json={"env": {"V": "2"}})
    ro = wait(api, "svc", lambda ro: phase(ro) == "Succeeded" and ro["status"]["id"] == 1)
    assert ro["status"]["strategy"]["steps"] == [50, 100]
    messages = [e["message"] for e in api.get("/api/v1/deployments/svc/events").json()
                if e["reason"] in ("RolloutStep", "RolloutSucceeded")]
    assert messages
    assert any("too few to judge" in m for m in messages)


def test_pause_resume_promote_abort(api: TestClient) -> None:
    create(api, strategy={"type": "canary", "steps": [10, 50], "step_interval_s": 3600})
    assert api.post("/api/v1/deployments/svc/rollout/pause").status_code == 409
    api.patch("/api/v1/deployments/svc", json={"env": {"V": "2"}})
    wait(api, "svc", lambda ro: ro["status"]["step"] == 0)
    r = api.post("/api/v1/deployments/svc/rollout/pause")
    assert r.status_code == 200
    assert r.json()["control"] == {"id": 1, "paused": True, "promote": False, "abort": False}
    wait(api, "svc", lambda ro: phase(ro) == "Paused")
    api.post("/api/v1/deployments/svc/rollout/resume")
    wait(api, "svc", lambda ro: phase(ro) == "Progressing")
    api.post("/api/v1/deployments/svc/rollout/promote")
    wait(api, "svc", lambda ro: phase(ro) == "Succeeded")
    assert api.post("/api/v1/deployments/svc/rollout/abort").status_code == 409

    api.patch("/api/v1/deployments/svc", json={"env": {"V": "3"}})
    wait(api, "svc", lambda ro: ro["status"]["id"] == 2 and ro["status"]["step"] == 0)
    assert api.post("/api/v1/deployments/svc/rollout/abort").status_code == 200
    ro = wait(api, "svc", lambda ro: phase(ro) == "Aborted")
    assert ro["status"]["reason"] == "aborted by a user"
    # the deployment's own status is summarised later in the same tick
    deadline = time.monotonic() + 15
    while "Aborted" not in api.get("/api/v1/deployments/svc").json()["status"]["message"]:
        assert time.monotonic() < deadline, "the deployment status never said Aborted"
        time.sleep(0.02)
    # the spec still asks for V=3; rollback makes it ask for what serves again
    assert api.post("/api/v1/deployments/svc/rollback").json()["spec"]["env"] == {"V": "2"}
    wait(api, "svc", lambda ro: ro["status"]["id"] == 3 and phase(ro) == "Succeeded")


def test_blue_green_rollback_reuses_the_kept_set(api: TestClient, platform: Platform) -> None:
    create(api, strategy={"type": "blue-green", "keep_old_s": 600})
    blue = {r["id"] for r in api.get("/api/v1/deployments/svc/replicas").json()}
    api.patch("/api/v1/deployments/svc", json={"env": {"V": "2"}})
    ro = wait(api, "svc", lambda ro: phase(ro) == "Succeeded" and ro["status"]["id"] == 1)
    assert ro["status"]["previous"]["generation"] == 1
    # the gateway's table follows the stored decision at the end of the same tick
    green = {str(ro["status"]["target"]["generation"]): 100}
    routes = wait_routes(api, "svc", lambda rt: rt["weights"] == green)
    assert blue.isdisjoint(r["id"] for r in routes["replicas"])
    started = len(platform.backend.started)  # type: ignore[attr-defined]
    api.post("/api/v1/deployments/svc/rollback")
    wait(api, "svc", lambda ro: ro["status"]["id"] == 2 and phase(ro) == "Succeeded")
    wait_routes(api, "svc", lambda rt: {r["id"] for r in rt["replicas"]} == blue)
    assert len(platform.backend.started) == started  # type: ignore[attr-defined]


def test_spec_validation_and_autoscaling_rules(api: TestClient) -> None:
    bad = [
        {"strategy": {"type": "sideways"}},
        {"strategy": {"steps": [50, 10]}},
        {"strategy": {"max_surge": "lots"}},
        {"strategy": {"smoke_path": "echo"}},
        {"autoscaling": {"min_replicas": 5, "max_replicas": 2}},
        {"probes": {"period_s": 0}},
        {"strategy": {"typo": 1}},
    ]
    for body in bad:
        r = api.post("/api/v1/deployments", json={"name": "bad", "photon": "builtin:echo",
                                                  **body})
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.get("/api/v1/deployments/bad").status_code == 404

    d = create(api, autoscaling={"min_replicas": 1, "max_replicas": 3})
    assert d["spec"]["autoscaling"]["target_concurrency"] == 2
    r = api.patch("/api/v1/deployments/svc", json={"replicas": 5})
    assert r.status_code == 409
    assert "--no-autoscaling" in r.json()["detail"]
    r = api.patch("/api/v1/deployments/svc", json={"autoscaling": {"min_replicas": 6}})
    assert r.status_code == 422
    assert "min_replicas (6) is above max_replicas (3)" in r.json()["detail"]
    r = api.patch("/api/v1/deployments/svc",
                  json={"autoscaling": {"max_replicas": 8, "min_replicas": 6}})
    assert r.json()["spec"]["autoscaling"]["target_concurrency"] == 2, "others kept"
    r = api.patch("/api/v1/deployments/svc",
                  json={"strategy": {"analysis": {"max_p99_ms": 250}}})
    assert r.json()["spec"]["strategy"]["analysis"] == {
        "min_success_rate": 0.99, "max_p99_ms": 250, "min_requests": 100}
    r = api.patch("/api/v1/deployments/svc", json={"autoscaling": None, "replicas": 1})
    assert r.status_code == 200
    assert r.json()["spec"]["autoscaling"] is None


def test_autoscaled_deployment_at_zero_holds_requests(api: TestClient) -> None:
    create(api, autoscaling={"min_replicas": 0, "max_replicas": 2,
                             "scale_to_zero_after_s": 0.2, "queue_timeout_s": 0.3})
    def at_zero() -> bool:
        # observed by the controller (a fresh status also says 0 before it has looked)
        d = api.get("/api/v1/deployments/svc").json()
        st = d["status"]
        return bool(st["observed_generation"] == d["generation"]
                    and st["desired_replicas"] == 0 and st["replicas"] == 0)

    deadline = time.monotonic() + 15
    while not at_zero():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the gateway's table follows at the end of the tick that decided the scale-down (a
    # hold is on the route from the start; wait for the replica to leave it too, or the
    # request goes to it and fails 502 without being held)
    wait_routes(api, "svc", lambda rt: rt["hold_timeout_s"] == 0.3 and not rt["replicas"])
    # the request must wait for a replica rather than 503 at once: it ends 503 when the hold
    # times out (0.3 s), or 502 once a fake replica (which cannot answer) came up meanwhile
    started = time.monotonic()
    r = api.post("/run/svc/echo", json={"text": "hi"})
    assert r.status_code in (502, 503)
    assert time.monotonic() - started > 0.25 or r.status_code == 502
    # the held request woke the autoscaler, which says why it scaled up
    deadline = time.monotonic() + 15
    while not any("waiting for a replica" in e["message"]
                  for e in api.get("/api/v1/deployments/svc/events").json()
                  if e["reason"] == "Scaled"):
        assert time.monotonic() < deadline, api.get("/api/v1/deployments/svc/events").text
        time.sleep(0.05)


def test_cli_update_status_control_and_rollback(cli: Any, api: TestClient) -> None:
    out = cli("deployment", "create", "--name", "svc", "--photon", "builtin:echo",
              "--replicas", "2", "--strategy", "canary", "--steps", "50",
              "--step-interval", "3600", "--max-p99-ms", "300", "--min-success-rate", "99.5",
              "--probe-period", "0.5", "--drain-timeout", "3", "-o", "json")
    dep = ok_json(out)
    assert dep["spec"]["strategy"]["analysis"]["min_success_rate"] == 0.995
    assert dep["spec"]["probes"]["period_s"] == 0.5
    assert dep["spec"]["drain_timeout_s"] == 3
    shown = cli("deployment", "rollout", "status", "svc")
    assert shown.exit_code == 0, shown.output
    assert "none yet" in shown.stdout
    ok_json(cli("deployment", "update", "svc", "--env", "V=2", "--no-wait", "-o", "json"))
    wait(api, "svc", lambda ro: ro["status"]["step"] == 0 and ro["status"]["analysis"])
    shown = cli("deployment", "rollout", "status", "svc")
    assert "canary" in shown.stdout
    assert "1/2 (50%)" in shown.stdout
    assert "analysis" in shown.stdout
    paused = ok_json(cli("deployment", "rollout", "pause", "svc", "-o", "json"))
    assert paused["control"]["paused"] is True
    assert cli("deployment", "rollout", "resume", "svc").exit_code == 0
    assert cli("deployment", "rollout", "promote", "svc").exit_code == 0
    done = cli("deployment", "rollout", "status", "svc", "--wait", "--timeout", "20")
    assert done.exit_code == 0, done.output
    assert "Succeeded" in done.stdout
    one_line_error(cli("deployment", "rollout", "abort", "svc"), "nothing to abort")
    rolled = ok_json(cli("deployment", "rollback", "svc", "-o", "json"))
    assert rolled["spec"]["env"] == {}
    # the rollback is a rollout of its own (a canary here, steps held an hour): an update
    # while it runs retargets it (as in Kubernetes) rather than starting rollout 3, so
    # promote it once it has begun (it may be done already: nothing to promote) and wait
    wait(api, "svc", lambda ro: ro["status"]["id"] == 2)
    cli("deployment", "rollout", "promote", "svc")
    back = cli("deployment", "rollout", "status", "svc", "--wait", "--timeout", "20")
    assert back.exit_code == 0, back.output
    # waiting on a canary whose steps are held an hour: gives up, exit 1, naming it
    one_line_error(cli("deployment", "update", "svc", "--env", "V=3", "--timeout", "1"),
                   "still Progressing after 1s", "--no-wait")
    wait(api, "svc", lambda ro: ro["status"]["id"] == 3 and ro["status"]["step"] == 0)
    assert cli("deployment", "rollout", "abort", "svc").exit_code == 0
    failed = cli("deployment", "rollout", "status", "svc", "--wait", "--timeout", "20")
    assert failed.exit_code == 1
    assert "Aborted" in failed.output
    usage = cli("deployment", "update", "svc")
    assert usage.exit_code == 2
    assert "nothing to update" in usage.output
    auto = ok_json(cli("deployment", "update", "svc", "--min-replicas", "1",
                       "--max-replicas", "3", "--target-concurrency", "4", "--no-wait",
                       "-o", "json"))
    assert auto["spec"]["autoscaling"]["target_concurrency"] == 4
    one_line_error(cli("deployment", "scale", "svc", "--replicas", "2"), "autoscaled")
    off = ok_json(cli("deployment", "update", "svc", "--no-autoscaling", "--replicas", "2",
                      "--no-wait", "-o", "json"))
    assert off["spec"]["autoscaling"] is None


def test_predictive_autoscaling_needs_bounds(api: TestClient) -> None:
    r = api.post("/api/v1/deployments", json={"name": "pred", "photon": "builtin:echo",
                                              "autoscaling": {"policy": "predictive"}})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    assert "autoscaling.min_replicas (--min-replicas)" in detail
    assert "autoscaling.max_replicas (--max-replicas)" in detail
    r = api.post("/api/v1/deployments", json={
        "name": "pred", "photon": "builtin:echo",
        "autoscaling": {"policy": "predictive", "min_replicas": 1}})
    assert r.status_code == 422
    assert "min_replicas" not in r.json()["detail"]
    create(api, "plain")
    r = api.patch("/api/v1/deployments/plain", json={"autoscaling": {"policy": "predictive"}})
    assert r.status_code == 422
    assert "max_replicas" in r.json()["detail"]
    d = create(api, "pred", autoscaling={"policy": "predictive", "min_replicas": 1,
                                         "max_replicas": 3})
    assert d["spec"]["autoscaling"]["policy"] == "predictive"
    r = api.patch("/api/v1/deployments/pred", json={"autoscaling": {"policy": "reactive"}})
    assert r.status_code == 200
    assert r.json()["spec"]["autoscaling"]["policy"] == "reactive"
