"""``leptonic login/user/token/secret/audit`` against the in-process platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leptonic.platform import Platform
from tests.integration.clitools import ok_json, one_line_error
from tests.integration.dbdump import dump


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEPTONIC_CONFIG_DIR", str(tmp_path / "config"))


def test_user_login_whoami_logout(cli: Any, tmp_path: Path) -> None:
    made = ok_json(cli("user", "create", "alice", "--role", "developer", "--password-stdin",
                       "-o", "json", input="a long password\n"))
    assert made["role"] == "developer"
    assert ok_json(cli("user", "list", "-o", "json"))[0]["username"] == "alice"
    out = ok_json(cli("login", "-u", "alice", "--password-stdin", "-o", "json",
                      input="a long password\n"))
    saved = Path(out["saved_to"])
    assert saved.stat().st_mode & 0o777 == 0o600
    assert "lep_" in saved.read_text()
    one_line_error(cli("login", "-u", "alice", "--password-stdin", input="wrong pass\n"),
                   "wrong username or password")


def test_token_create_list_revoke(cli: Any) -> None:
    new = ok_json(cli("token", "create", "ci", "--role", "developer", "--rate-limit", "5",
                      "-o", "json"))
    assert new["token"].startswith("lep_")
    listed = ok_json(cli("token", "list", "-o", "json"))
    ci = next(t for t in listed if t["name"] == "ci")
    assert "token" not in ci
    assert ci["rate_limit_rps"] == 5
    assert cli("token", "revoke", str(ci["id"])).exit_code == 0
    assert next(t for t in ok_json(cli("token", "list", "-o", "json"))
                if t["name"] == "ci")["revoked"] is True
    one_line_error(cli("token", "revoke", "424242"), "424242")


def test_secret_from_stdin_and_file_never_echoed(cli: Any, tmp_path: Path,
                                                 platform: Platform) -> None:
    res = cli("secret", "create", "API_KEY", "-o", "json", input="from-stdin-value\n")
    assert res.exit_code == 0, res.output
    assert "from-stdin-value" not in res.output
    f = tmp_path / "value.txt"
    f.write_text("from-file-value\n")
    res = cli("secret", "update", "API_KEY", "--from-file", str(f))
    assert res.exit_code == 0, res.output
    listed = cli("secret", "list")
    assert "API_KEY" in listed.stdout
    assert "from-file-value" not in listed.stdout
    assert "from-file-value" not in dump(platform.store)
    assert platform.secrets.decrypt(platform.store.secret_ciphertext("API_KEY")) \
        == "from-file-value"
    dep = ok_json(cli("deployment", "create", "--name", "s", "--photon", "builtin:echo",
                      "--secret", "API_KEY", "--public", "--no-wait", "-o", "json"))
    assert dep["spec"]["secrets"] == ["API_KEY"]
    assert dep["spec"]["public"] is True
    one_line_error(cli("secret", "delete", "API_KEY"), "used by", "s")
    one_line_error(cli("secret", "create", "bad name", input="x\n"), "invalid secret name")


def test_audit_lists_changes(cli: Any) -> None:
    cli("deployment", "create", "--name", "a1", "--photon", "builtin:echo", "--replicas",
        "0", "--no-wait")
    entries = ok_json(cli("audit", "-o", "json"))
    assert any(e["object"] == "/api/v1/deployments" and e["status"] == 201 for e in entries)
    assert "token:admin" in cli("audit").stdout
