"""The ``leptonic`` CLI through typer's CliRunner against the real in-process platform.

The CLI gets its client from ``leptonic.cli._context.make_client``; here it is replaced by
one whose transport is the running platform's ASGI test transport, so every command goes
through the real API, store and controller (with the fake backend).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from leptonic.cli import _context
from leptonic.cli.main import app
from leptonic.client import Client
from leptonic.platform import Platform
from tests.integration.bundles import ECHO
from tests.integration.clitools import ok_json, one_line_error

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "echo"


@pytest.fixture
def echo_dir(tmp_path: Path) -> Path:
    if (EXAMPLE / "app.py").exists():
        return EXAMPLE
    src = tmp_path / "echo"
    src.mkdir()
    (src / "app.py").write_text(ECHO)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    return src


@pytest.fixture
def photon(cli: Any, echo_dir: Path) -> dict[str, Any]:
    return ok_json(cli("photon", "create", "--name", "echo", "-m", "app.py:Echo",
                       "--path", str(echo_dir), "--output", "json"))


def wait_for(cli: Any, name: str, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        dep = ok_json(cli("deployment", "get", name, "-o", "json"))
        if predicate(dep) or time.monotonic() > deadline:
            return dep
        time.sleep(0.05)


# -- status and photons ---------------------------------------------------------------------


def test_status_json(cli: Any) -> None:
    body = ok_json(cli("status", "--output", "json"))
    assert body["version"]
    assert body["url"] == "http://testserver"


def test_photon_create_list_get_delete(cli: Any, photon: dict[str, Any]) -> None:
    assert photon["name"] == "echo"
    assert photon["version"] == 1
    assert "echo" in [h["name"] for h in photon["handlers"]]

    listed = ok_json(cli("photon", "list", "--output", "json"))
    assert [(p["name"], p["version"]) for p in listed] == [("echo", 1)]
    got = ok_json(cli("photon", "get", "echo", "--output", "json"))
    assert got["name"] == "echo"
    assert [v["version"] for v in got["versions"]] == [1]

    table = cli("photon", "list")
    assert table.exit_code == 0
    assert "echo" in table.stdout
    assert "app.py:Echo" in table.stdout

    assert ok_json(cli("photon", "delete", "echo", "-o", "json")) == {"name": "echo",
                                                                       "deleted": True}
    one_line_error(cli("photon", "get", "echo"), "echo")


def test_same_code_twice_is_the_same_version(cli: Any, photon: dict[str, Any],
                                             echo_dir: Path) -> None:
    again = ok_json(cli("photon", "create", "--name", "echo", "-m", "app.py:Echo",
                        "--path", str(echo_dir), "-o", "json"))
    assert again["version"] == photon["version"]
    assert again["digest"] == photon["digest"]


def test_photon_create_of_a_missing_path_is_one_line(cli: Any, tmp_path: Path) -> None:
    one_line_error(cli("photon", "create", "--name", "x", "-m", "app.py:X",
                       "--path", str(tmp_path / "nope")), "no such file or folder")


# -- deployments ----------------------------------------------------------------------------


def test_deployment_lifecycle_with_json_output(cli: Any, photon: dict[str, Any],
                                               platform: Platform) -> None:
    created = ok_json(cli("deployment", "create", "--name", "web", "--photon", "echo",
                          "--env", "MODE=test", "--no-wait", "--output", "json"))
    assert created["name"] == "web"
    assert created["spec"]["photon"] == "echo"
    assert created["spec"]["env"] == {"MODE": "test"}

    listed = ok_json(cli("deployment", "list", "-o", "json"))
    assert [d["name"] for d in listed] == ["web"]
    got = ok_json(cli("deployment", "get", "web", "-o", "json"))
    assert got["spec"]["replicas"] == 1

    scaled = ok_json(cli("deployment", "scale", "web", "--replicas", "2", "-o", "json"))
    assert scaled["spec"]["replicas"] == 2
    assert scaled["generation"] == created["generation"] + 1
    # scale waits for the result, like create
    assert scaled["status"]["ready_replicas"] == 2, scaled["status"]
    assert scaled["status"]["observed_generation"] == scaled["generation"]
    ready = wait_for(cli, "web", lambda d: d["status"]["ready_replicas"] == 2)
    assert ready["status"]["phase"] == "Ready", ready
    quick = ok_json(cli("deployment", "scale", "web", "--replicas", "2", "--no-wait",
                        "-o", "json"))
    assert quick["generation"] == scaled["generation"], "the same count: no new generation"

    replicas = ok_json(cli("deployment", "replicas", "web", "-o", "json"))
    assert len(replicas) == 2
    assert {r["deployment"] for r in replicas} == {"web"}
    assert {r["state"] for r in replicas} == {"ready"}
    same = ok_json(cli("replica", "list", "--deployment", "web", "-o", "json"))
    assert {r["id"] for r in same} == {r["id"] for r in replicas}

    events = ok_json(cli("deployment", "events", "web", "-o", "json"))
    assert events, "creating and scaling a deployment leaves events"
    assert all(e["object"].endswith("web") or "web" in e["object"] for e in events)

    logs = ok_json(cli("deployment", "logs", "web", "-o", "json"))
    assert logs["deployment"] == "web"
    assert isinstance(logs["lines"], list)

    # it waits for the rolling update to be over: the new template's replicas all ready
    updated = ok_json(cli("deployment", "update", "web", "--env", "MODE=prod", "-o", "json"))
    assert updated["spec"]["env"] == {"MODE": "prod"}
    assert updated["status"]["observed_generation"] == updated["generation"]
    assert updated["status"]["template_generation"] == updated["generation"]
    assert updated["status"]["phase"] == "Ready"
    rollout = ok_json(cli("deployment", "rollout", "status", "web", "-o", "json"))
    assert rollout["status"]["phase"] == "Succeeded"

    deleted = ok_json(cli("deployment", "delete", "web", "-o", "json"))
    assert deleted["name"] == "web"
    deadline = time.monotonic() + 10
    while cli("deployment", "get", "web").exit_code == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    one_line_error(cli("deployment", "get", "web"), "web")


def test_create_waits_until_ready(cli: Any, photon: dict[str, Any]) -> None:
    dep = ok_json(cli("deployment", "create", "--name", "ready", "--photon", "echo@1",
                      "--replicas", "2", "--timeout", "20", "-o", "json"))
    assert dep["status"]["phase"] == "Ready"
    assert dep["status"]["ready_replicas"] == 2

    table = cli("deployment", "list")
    assert table.exit_code == 0
    assert "ready" in table.stdout
    assert "2/2" in table.stdout
    detail = cli("deployment", "get", "ready")
    assert detail.exit_code == 0
    assert "echo@1" in detail.stdout


def test_builtin_photon_tables(cli: Any) -> None:
    res = cli("deployment", "create", "--name", "b", "--photon", "builtin:echo", "--no-wait")
    assert res.exit_code == 0, res.stderr
    assert "b" in res.stdout
    for args in (("deployment", "replicas", "b"), ("deployment", "events", "b"),
                 ("replica", "list"), ("status",), ("deployment", "logs", "b")):
        res = cli(*args)
        assert res.exit_code == 0, (args, res.stderr)
        assert res.stderr == ""


# -- errors ---------------------------------------------------------------------------------


def test_unknown_deployment_is_one_line_error(cli: Any) -> None:
    for args in (("deployment", "get", "nope"), ("deployment", "scale", "nope", "--replicas",
                                                 "2"),
                 ("deployment", "delete", "nope"), ("deployment", "events", "nope"),
                 ("deployment", "replicas", "nope"), ("replica", "list", "-d", "nope")):
        one_line_error(cli(*args, "-o", "json"), "nope")


def test_invalid_name_is_one_line_error(cli: Any, photon: dict[str, Any]) -> None:
    line = one_line_error(cli("deployment", "create", "--name", "Bad_Name", "--photon", "echo",
                              "--no-wait"), "Bad_Name")
    assert "lowercase" in line
    one_line_error(cli("photon", "create", "--name", "-x", "-m", "app.py:Echo"))


def test_unknown_photon_and_taken_name(cli: Any, photon: dict[str, Any]) -> None:
    one_line_error(cli("deployment", "create", "--name", "a", "--photon", "ghost", "--no-wait"),
                   "ghost")
    ok_json(cli("deployment", "create", "--name", "a", "--photon", "echo", "--no-wait",
                "-o", "json"))
    one_line_error(cli("deployment", "create", "--name", "a", "--photon", "echo", "--no-wait"),
                   "a")
    one_line_error(cli("photon", "delete", "echo"), "echo")     # in use


def test_wrong_token_is_one_line_error(cli: Any) -> None:
    one_line_error(cli("deployment", "list", "--token", "lep_wrong"))


def test_bad_usage_exits_2(cli: Any) -> None:
    res = cli("deployment", "create", "--name", "x", "--photon", "echo", "--env", "NOEQUALS")
    assert res.exit_code == 2
    res = cli("deployment", "update", "x")
    assert res.exit_code == 2
    res = cli("deployment", "list", "--output", "yaml")
    assert res.exit_code == 2


def test_no_platform_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(_context, "make_client", lambda url, tok: Client(
        url="http://127.0.0.1:9", token="t", transport=httpx.MockTransport(refused)))
    res = CliRunner().invoke(app, ["deployment", "list"])
    line = one_line_error(res, "no leptonic platform at http://127.0.0.1:9")
    assert line.endswith("start one with `leptonic up`")


# -- --output json everywhere -----------------------------------------------------------------


def test_global_output_option_applies_to_every_group(cli: Any, photon: dict[str, Any]) -> None:
    assert isinstance(ok_json(cli("-o", "json", "status")), dict)
    assert isinstance(ok_json(cli("--output", "json", "photon", "list")), list)
    ok_json(cli("-o", "json", "deployment", "create", "--name", "g", "--photon", "echo",
                "--no-wait"))
    assert isinstance(ok_json(cli("--output", "json", "deployment", "list")), list)
    assert isinstance(ok_json(cli("--output", "json", "replica", "list")), list)
    # a command's own option wins over the global one
    table = cli("-o", "json", "deployment", "list", "-o", "table")
    assert table.exit_code == 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.stdout)


def test_create_reports_crash_loop_in_one_line(cli: Any, photon: dict[str, Any],
                                               platform: Platform) -> None:
    platform.backend.fail_start = True        # type: ignore[attr-defined]
    res = cli("deployment", "create", "--name", "bad", "--photon", "echo", "--timeout", "20")
    one_line_error(res, "deployment bad is crash-looping:", "fake failure")
