"""Bundles end to end: the server's refusal of data-dir files, the modes stored artifacts
get, and what ``photon create`` shows (``--dry-run``, the summary after a real create)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.platform import Platform
from tests.integration.bundles import ECHO, bundle, upload
from tests.integration.clitools import ok_json, one_line_error
from tests.integration.test_api import problem, snapshot


@pytest.mark.parametrize("member", ["admin-token", "secret-key", "leptonic.db",
                                    "state/admin-token", "deep/x/leptonic.db"])
def test_api_refuses_a_bundle_with_a_data_dir_file(api: TestClient, platform: Platform,
                                                   member: str) -> None:
    before = snapshot(platform)
    data = bundle({"app.py": ECHO, member: "lep_stolen\n"})
    body = problem(upload(api, "leak", data=data), 422, member, "data-dir")
    assert body["title"] == "Invalid input"
    assert snapshot(platform) == before
    assert api.get("/api/v1/photons").json() == []
    assert not list(platform.layout.artifacts.glob(".staging-*"))


def test_stored_artifacts_are_private(api: TestClient, platform: Platform) -> None:
    resp = upload(api, "echo", files={"app.py": ECHO, "pkg/deep/util.py": "X = 1\n",
                                      "run.sh": "#!/bin/sh\n"})
    assert resp.status_code == 201, resp.text
    root = platform.layout.artifacts / resp.json()["digest"]
    files = [p for p in root.rglob("*") if p.is_file()]
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert {p.relative_to(root).as_posix() for p in files} == {"app.py", "pkg/deep/util.py",
                                                               "run.sh"}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o600)}
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o700)}
    assert len(folders) == 3


# -- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def code(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    (root / "venv").mkdir(parents=True)
    (root / "app.py").write_text(ECHO)
    (root / "weights.bin").write_bytes(b"\0" * 3000)
    (root / ".env").write_text("API_KEY=secret\n")
    (root / "venv" / "site.py").write_text("x\n")
    return root


def test_dry_run_shows_the_files_and_uploads_nothing(cli: Any, code: Path,
                                                     platform: Platform) -> None:
    before = snapshot(platform)
    res = cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path", str(code),
              "--dry-run")
    assert res.exit_code == 0, (res.stdout, res.stderr)
    header, *rest = res.stdout.splitlines()
    assert header.split() == ["PATH", "SIZE"]
    blank = rest.index("")
    rows = [line.split() for line in rest[:blank]]
    assert rows == [["app.py", f"{len(ECHO)}", "B"], ["weights.bin", "2.9", "KiB"]]
    assert rest[blank + 1].startswith("2 files, ")
    assert "largest: weights.bin (2.9 KiB)" in rest[blank + 1]
    assert ".env" not in res.stdout
    assert "venv" not in res.stdout
    assert snapshot(platform) == before
    assert ok_json(cli("photon", "list", "-o", "json")) == []

    plan = ok_json(cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path",
                       str(code), "--dry-run", "--include", ".env", "-o", "json"))
    assert [f["path"] for f in plan["files"]] == [".env", "app.py", "weights.bin"]
    assert plan["size"] == sum(f["size"] for f in plan["files"])
    assert plan["largest"][0] == {"path": "weights.bin", "size": 3000}
    assert snapshot(platform) == before


def test_dry_run_needs_no_platform(code: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from leptonic.cli import _context
    from leptonic.cli.main import app

    def no_platform(*_: Any) -> Any:
        raise AssertionError("a dry run must not talk to the platform")

    monkeypatch.setattr(_context, "make_client", no_platform)
    res = CliRunner().invoke(app, ["photon", "create", "-n", "x", "-m", "app.py:X",
                                   "--path", str(code), "--dry-run", "-o", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["count"] == 2


def test_create_prints_a_summary_to_stderr_and_keeps_json_clean(cli: Any, code: Path) -> None:
    res = cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path", str(code))
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert res.stderr.splitlines() == [
        f"bundled 2 files, {(len(ECHO) + 3000) / 1024:.1f} KiB (largest: weights.bin, 2.9 KiB)"]
    assert "echo" in res.stdout

    (code / "app2.py").write_text(ECHO)
    res = cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path", str(code),
              "-o", "json")
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert json.loads(res.stdout)["version"] == 2         # stdout is the version, only
    assert res.stderr == ""


def test_create_with_include_stores_the_file(cli: Any, code: Path,
                                             platform: Platform) -> None:
    version = ok_json(cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path",
                          str(code), "--include", ".env", "-o", "json"))
    stored = platform.layout.artifacts / version["digest"]
    assert sorted(p.name for p in stored.iterdir()) == [".env", "app.py", "weights.bin"]


def test_refusals_are_one_line_errors_and_upload_nothing(cli: Any, code: Path,
                                                          platform: Platform,
                                                          tmp_path: Path) -> None:
    before = snapshot(platform)
    outside = tmp_path / "secret.txt"
    outside.write_text("x\n")
    (code / "link.txt").symlink_to(outside)
    one_line_error(cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path",
                       str(code)), "link.txt", str(outside))
    one_line_error(cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path",
                       str(code), "--dry-run"), "link.txt")
    (code / "link.txt").unlink()
    # the platform's own data dir, inside the code folder
    one_line_error(cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path",
                       str(platform.layout.root)), "data dir")
    one_line_error(cli("photon", "create", "-n", "echo", "-m", "app.py:Echo", "--path",
                       str(tmp_path / "nope"), "--dry-run"), "no such file or folder")
    assert snapshot(platform) == before
