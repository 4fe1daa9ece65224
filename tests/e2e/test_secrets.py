"""Secrets and credentials for real: a secret reaches the replica's environment, and no
secret value, password or token appears in any log or in the database file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "sk-live-0123456789-do-not-leak"
PASSWORD = "a password nobody may see"

APP = '''
import hashlib, os
from leptonic import Photon, handler

class Probe(Photon):
    @handler
    def digest(self) -> str:
        return hashlib.sha256(os.environ.get("API_KEY", "").encode()).hexdigest()
'''


def test_secret_injected_and_never_leaked(platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    code = tmp_path / "probe"
    code.mkdir()
    (code / "app.py").write_text(APP)
    p.cli("photon", "create", "--name", "probe", "-m", "app.py:Probe", "--path", str(code))
    res = p.cli("secret", "create", "API_KEY", input_text=SECRET + "\n")
    assert SECRET not in res.stdout + res.stderr
    p.cli("user", "create", "alice", "--role", "developer", "--password-stdin",
          input_text=PASSWORD + "\n")
    token = p.cli("token", "create", "ci", "--role", "viewer", "-o", "json").stdout
    ci_token = json.loads(token)["token"]
    p.cli("deployment", "create", "--name", "probe", "--photon", "probe",
          "--secret", "API_KEY")
    got = httpx.post(f"{p.url}/run/probe/digest", json={},
                     headers={"Authorization": f"Bearer {ci_token}"}).json()
    assert got == hashlib.sha256(SECRET.encode()).hexdigest()
    login = httpx.post(f"{p.url}/api/v1/auth/login",
                       json={"username": "alice", "password": PASSWORD})
    session = login.json()["token"]

    haystacks = [p.read_log().encode()]
    haystacks += [f.read_bytes() for f in (p.data_dir / "logs").rglob("*") if f.is_file()]
    haystacks += [f.read_bytes() for f in p.data_dir.glob("leptonic.db*")]
    assert len(haystacks) >= 3
    for needle in (SECRET, PASSWORD, ci_token, session, p.token):
        for hay in haystacks:
            assert needle.encode() not in hay, f"{needle[:6]}... leaked"
