"""Jobs through the API, the client and the CLI, on SQLite and PostgreSQL (fake runtime):
create with code and inputs, status, attempts, logs, output, cancel, delete, roles; bad
input is 422/409 and leaves no row behind."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.client._base import make_bundle
from leptonic.platform import Platform
from tests.integration.clitools import ok_json, one_line_error


def post_job(api: TestClient, body: dict[str, Any], code: bytes | None = None,
             inputs: bytes | None = None) -> Any:
    files: dict[str, Any] = {}
    if code is not None:
        files["code"] = ("code.tar.gz", code, "application/gzip")
    if inputs is not None:
        files["inputs"] = ("inputs.jsonl", inputs, "application/jsonl")
    return api.post("/api/v1/jobs", data={"job": json.dumps(body)}, files=files or
                    {"_": ("", b"", "application/octet-stream")})


def wait_for(fn: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def attempts(api: TestClient, name: str) -> list[dict[str, Any]]:
    return list(api.get(f"/api/v1/jobs/{name}/attempts").json())


def test_a_command_job_with_code_runs_and_keeps_its_output(api: TestClient,
                                                           platform: Platform,
                                                           tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "job.py").write_text("print('hi')\n")
    r = post_job(api, {"name": "j1", "command": "python job.py", "completions": 2,
                       "parallelism": 2, "scale": "small", "env": {"A": "1"}},
                 code=make_bundle(tmp_path / "code"))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["spec"]["code"]
    assert job["spec"]["completions"] == 2
    running = wait_for(lambda: [a for a in attempts(api, "j1") if a["state"] == "running"
                                and a["pid"]] if len(attempts(api, "j1")) == 2 else None)
    backend = platform.backend
    launch = backend.attempts[running[0]["id"]]  # type: ignore[attr-defined]
    assert launch.command == "python job.py"
    assert launch.env == {"A": "1", "JOB_COMPLETIONS": "2"}
    assert (Path(launch.bundle_dir) / "job.py").is_file()
    assert launch.cpu_request == 0.5
    assert launch.memory_request_mb == 512
    for a in running:
        backend.outputs[a["id"]] = {f"out-{a['index']}.txt": b"x" * (a["index"] + 1)}  # type: ignore[attr-defined]
        backend.finish(a["id"], 0)  # type: ignore[attr-defined]
    done = wait_for(lambda: (j := api.get("/api/v1/jobs/j1").json())["status"]["phase"]
                    == "Succeeded" and j)
    assert done["status"]["output_files"] == 2
    assert done["status"]["output_bytes"] == 3
    out = api.get("/api/v1/jobs/j1/output")
    assert out.status_code == 200
    assert out.headers["x-leptonic-files"] == "2"
    with tarfile.open(fileobj=io.BytesIO(out.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["0/out-0.txt", "1/out-1.txt"]
    events = [e["reason"] for e in api.get("/api/v1/jobs/j1/events").json()]
    assert "Created" in events
    assert "JobSucceeded" in events
    # cancel of a finished job: 409
    r = api.post("/api/v1/jobs/j1/cancel")
    assert r.status_code == 409
    assert "already succeeded" in r.json()["detail"]
    # delete removes it and its artifacts
    digest = done["spec"]["code"]
    assert api.delete("/api/v1/jobs/j1").status_code == 202
    wait_for(lambda: api.get("/api/v1/jobs/j1").status_code == 404)
    wait_for(lambda: not (platform.artifacts.root / digest).exists())


def test_a_photon_job_gets_its_share_of_the_inputs(api: TestClient, platform: Platform,
                                                   tmp_path: Path) -> None:
    src = Path(__file__).parents[2] / "examples" / "echo"
    r = api.post("/api/v1/photons", data={"name": "echo", "entry": "app.py:Echo"},
                 files={"file": ("b.tar.gz", make_bundle(src), "application/gzip")})
    assert r.status_code in (200, 201), r.text
    handler = r.json()["handlers"][0]["name"]
    lines = b"".join(json.dumps({"text": str(i)}).encode() + b"\n" for i in range(5))
    r = post_job(api, {"name": "pj", "photon": "echo", "handler": handler,
                       "completions": 2, "parallelism": 2}, inputs=lines)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["inputs_count"] == 5
    wait_for(lambda: len(attempts(api, "pj")) == 2 and all(a["pid"] for a in
                                                           attempts(api, "pj")))
    launches = sorted(platform.backend.attempts.values(), key=lambda la: la.index)  # type: ignore[attr-defined]
    assert [la.inputs.count(b"\n") for la in launches] == [3, 2]
    assert launches[0].entry == "app.py:Echo"
    assert launches[0].handler == handler
    # more completions than inputs, or no inputs at all: 422, nothing stored
    assert post_job(api, {"name": "pk", "photon": "echo", "handler": handler,
                          "completions": 9}, inputs=lines).status_code == 422
    assert post_job(api, {"name": "pk", "photon": "echo",
                          "handler": handler}).status_code == 422
    assert post_job(api, {"name": "pk", "photon": "echo", "handler": "nope"},
                    inputs=lines).status_code == 422
    assert api.get("/api/v1/jobs/pk").status_code == 404


@pytest.mark.parametrize(("body", "words"), [
    ({"name": "b", "command": "x", "type": "gpu"}, ["type", "computation", "storage", "edge"]),
    ({"name": "b", "command": "x", "scale": "huge"}, ["scale", "small", "medium", "large"]),
    ({"name": "b"}, ["needs a command"]),
    ({"name": "b", "photon": "nope"}, ["handler"]),
    ({"name": "B!", "command": "x"}, ["job name"]),
    ({"name": "b", "command": "x", "env": {"LEPTONIC_X": "1"}}, ["LEPTONIC_"]),
    ({"name": "b", "command": "x", "resources": {"cpu": 100000}}, ["resources"]),
])
def test_bad_input_is_422_and_leaves_no_row(api: TestClient, body: dict[str, Any],
                                            words: list[str]) -> None:
    r = post_job(api, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    for w in words:
        assert w in r.json()["detail"], r.json()["detail"]
    assert api.get("/api/v1/jobs").json() == []


def test_not_json_and_duplicates(api: TestClient) -> None:
    r = api.post("/api/v1/jobs", data={"job": "{nope"}, files={"_": ("", b"", "x/y")})
    assert r.status_code == 422
    assert "JSON" in r.json()["detail"]
    assert post_job(api, {"name": "d", "command": "sleep 60"}).status_code == 201
    r = post_job(api, {"name": "d", "command": "sleep 60"})
    assert r.status_code == 409
    assert len(api.get("/api/v1/jobs").json()) == 1


def test_cancel_a_running_job(api: TestClient, platform: Platform) -> None:
    assert post_job(api, {"name": "c", "command": "sleep 60"}).status_code == 201
    wait_for(lambda: attempts(api, "c"))
    assert api.post("/api/v1/jobs/c/cancel").status_code == 200
    job = wait_for(lambda: (j := api.get("/api/v1/jobs/c").json())["status"]["phase"]
                   == "Failed" and j)
    assert job["status"]["reason"] == "Cancelled"
    assert attempts(api, "c")[0]["state"] == "stopped"
    assert api.post("/api/v1/jobs/nope/cancel").status_code == 404


def test_viewers_read_jobs_but_cannot_create_or_cancel(api: TestClient,
                                                       anon: TestClient) -> None:
    token = api.post("/api/v1/tokens", json={"name": "v", "role": "viewer"}).json()["token"]
    viewer = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/v1/jobs").status_code == 401
    assert anon.get("/api/v1/jobs", headers=viewer).status_code == 200
    r = anon.post("/api/v1/jobs", headers=viewer, data={"job": "{}"},
                  files={"_": ("", b"", "x/y")})
    assert r.status_code == 403
    assert anon.post("/api/v1/jobs/x/cancel", headers=viewer).status_code == 403
    assert anon.delete("/api/v1/jobs/x", headers=viewer).status_code == 403


def test_cli_create_list_get_logs_output_cancel_delete(cli: Any, api: TestClient,
                                                       platform: Platform,
                                                       tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "job.py").write_text("print(1)\n")
    job = ok_json(cli("job", "create", "--name", "cj", "--path", str(code), "--command",
                      "python job.py", "--scale", "small", "--backoff", "0.1",
                      "--output", "json"))
    assert job["name"] == "cj"
    assert job["spec"]["backoff_s"] == 0.1
    a = wait_for(lambda: [x for x in attempts(api, "cj") if x["pid"]])[0]
    platform.backend.outputs[a["id"]] = {"result.txt": b"42"}  # type: ignore[attr-defined]
    platform.backend.finish(a["id"], 0)  # type: ignore[attr-defined]
    wait_for(lambda: api.get("/api/v1/jobs/cj").json()["status"]["phase"] == "Succeeded")
    listed = ok_json(cli("job", "list", "--output", "json"))
    assert [j["name"] for j in listed] == ["cj"]
    got = ok_json(cli("job", "get", "cj", "--output", "json"))
    assert got["status"]["phase"] == "Succeeded"
    assert len(got["attempts"]) == 1
    assert "cj" in cli("job", "list").stdout
    assert "Succeeded" in cli("job", "get", "cj").stdout
    logs = ok_json(cli("job", "logs", "cj", "--index", "0", "--output", "json"))
    assert logs["job"] == "cj"
    dest = tmp_path / "out"
    out = ok_json(cli("job", "output", "cj", "--dest", str(dest), "--output", "json"))
    assert (dest / "result.txt").read_bytes() == b"42"
    assert len(out["files"]) == 1
    one_line_error(cli("job", "cancel", "cj"), "already")
    one_line_error(cli("job", "create", "--name", "bad", "--command", "x", "--type", "gpu"),
                   "computation")
    one_line_error(cli("job", "create", "--name", "bad"), "command")
    # tier and node selector as for deployments
    placed = ok_json(cli("job", "create", "--name", "pj", "--command", "true", "--tier",
                         "edge", "--node-selector", "zone=a", "--output", "json"))
    assert placed["spec"]["placement"]["tier"] == "edge"
    assert placed["spec"]["placement"]["node_selector"] == {"zone": "a"}
    ok_json(cli("job", "delete", "pj", "--output", "json"))
    bad = cli("job", "create", "--name", "bad", "--command", "x", "--node-selector", "zone")
    assert bad.exit_code != 0
    assert "KEY=VALUE" in bad.stderr + bad.stdout
    one_line_error(cli("job", "logs", "cj", "--index", "7"), "index 7")
    ok_json(cli("job", "delete", "cj", "--output", "json"))
    wait_for(lambda: api.get("/api/v1/jobs/cj").status_code == 404)
    one_line_error(cli("job", "get", "cj"), "does not exist")
