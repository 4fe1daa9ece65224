"""What a new user does from the README, for real: run a photon alone, store it, deploy it,
call it through the gateway from curl-like HTTP, the sync and async clients and the CLI."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from leptonic import AsyncClient, Client
from tests.e2e.harness import REPO, RunningPlatform, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PROBLEM = "application/problem+json"


def test_photon_run_alone_serves_handlers_and_openapi() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "leptonic", "photon", "run", "-m", "app.py:Echo",
         "--port", str(port)], cwd=REPO / "examples" / "echo",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the runner exited"
            assert time.monotonic() < deadline, "the runner never became ready"
            time.sleep(0.1)
        assert httpx.post(f"{url}/echo", json={"text": "hi"}).json() == "hi"
        spec = httpx.get(f"{url}/openapi.json").json()
        assert {"/echo", "/count"} <= set(spec["paths"])
        body = spec["paths"]["/echo"]["post"]["requestBody"]
        assert "text" in str(body) or "Echo" in str(body)
        docs = httpx.get(f"{url}/docs")
        assert docs.status_code == 200
        assert "openapi.json" in docs.text
        bad = httpx.post(f"{url}/echo", json={"txt": "hi"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith(PROBLEM)
    finally:
        proc.terminate()
        proc.wait(15)


def test_photon_run_says_in_json_when_it_listens() -> None:
    """``photon run --output json``: one JSON line on stdout once the server accepts
    connections (what a script waits for instead of polling), the log on stderr."""
    import json

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "leptonic", "photon", "run", "-m", "app.py:Echo",
         "--port", str(port), "--output", "json"], cwd=REPO / "examples" / "echo",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()        # the process is killed below if it hangs
        info = json.loads(line)
        assert info["url"] == f"http://127.0.0.1:{port}"
        assert info["entry"] == "app.py:Echo"
        assert {"method": "POST", "path": "/echo"} in info["handlers"]
        # listening when it says so: no retry needed
        assert httpx.post(f"{info['url']}/echo", json={"text": "hi"}).json() == "hi"
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()


async def _call_async(p: RunningPlatform) -> None:
    async with AsyncClient(p.url, p.token) as aclient:
        aecho = aclient.deployment("echo")
        assert await aecho.echo(text="async") == "async"
        assert [x async for x in await aecho.count(n=3)] == [0, 1, 2]
        # and straight over the call, without the await
        assert [x async for x in aecho.count(n=3)] == [0, 1, 2]
        assert [x async for x in aclient.call("echo", "count", n=2)] == [0, 1]
        with pytest.raises(TypeError, match="await the call"):
            [x async for x in aecho.echo(text="not a stream")]


def test_deploy_and_call_through_gateway_clients_and_cli(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    created = p.cli("photon", "create", "--name", "echo", "-m", "app.py:Echo",
                    "--output", "json")
    assert '"version": 1' in created.stdout
    p.cli("deployment", "create", "--name", "echo", "--photon", "echo", "--replicas", "1")

    # a changed bundle is version 2; the same bundle again is not a new version
    code = tmp_path / "code"
    shutil.copytree(REPO / "examples" / "echo", code)
    p.cli("photon", "create", "--name", "echo", "-m", "app.py:Echo", "--path", str(code))
    (code / "app.py").write_text((code / "app.py").read_text() + "\n# changed\n")
    p.cli("photon", "create", "--name", "echo", "-m", "app.py:Echo", "--path", str(code))
    versions = p.api("GET", "/photons/echo").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]

    client = Client(p.url, p.token)
    echo = client.deployment("echo")
    assert echo.echo(text="hi") == "hi"
    assert list(echo.count(n=4)) == [0, 1, 2, 3]
    asyncio.run(_call_async(p))

    run = f"{p.url}/run/echo/echo"
    # the replica's own 422 passes through the gateway unchanged
    bad = httpx.post(run, headers=p.headers, json={"wrong": 1})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith(PROBLEM)
    assert "text" in bad.json()["detail"]
    # bodies over the limit (10 MiB by default) are refused at the gateway
    big = httpx.post(run, headers=p.headers, content=b"x" * (11 * 1024 * 1024),
                     timeout=30)
    assert big.status_code == 413
    # no token, no service
    assert httpx.post(run, json={"text": "hi"}).status_code == 401

    reps = p.cli("replica", "list", "--deployment", "echo", "--output", "json").stdout
    assert '"pid"' in reps
    logs = p.cli("deployment", "logs", "echo", "--tail", "50").stdout
    assert "[echo-" in logs
    # the streaming log follower sees new lines as they are written
    with httpx.stream("GET", f"{p.url}/api/v1/deployments/echo/logs",
                      params={"follow": "true", "tail": "0"}, headers=p.headers,
                      timeout=30) as resp:
        assert resp.status_code == 200
        p.cli("deployment", "scale", "echo", "--replicas", "2")
        deadline = time.monotonic() + 30
        for line in resp.iter_lines():
            if line.strip():
                break
            assert time.monotonic() < deadline
    client.close()

    p.cli("deployment", "delete", "echo")
    deadline = time.monotonic() + 30
    while p.api("GET", "/deployments/echo").status_code != 404:
        assert time.monotonic() < deadline, "the deployment was never removed"
        time.sleep(0.1)
    while p.runner_pids() and time.monotonic() < deadline:   # exiting: a moment later
        time.sleep(0.1)
    assert p.runner_pids() == set()
    res = p.cli("deployment", "get", "echo", check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("error:")
    assert "echo" in res.stderr
