"""Classic leptonai photons on a real ``leptonic up``: stored, deployed, called through the
gateway with raw HTTP and the classic ``leptonai.client.Client``; a ``leptonic init``
project deployed as is; a classic file run as a script (``launch()``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from leptonic.compat.client import Client
from tests.e2e.harness import REPO, RunningPlatform, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLASSIC = REPO / "examples" / "classic"


def deploy(p: RunningPlatform, name: str, entry: str) -> None:
    p.cli("photon", "create", "--name", name, "-m", entry)
    p.cli("deployment", "create", "--name", name, "--photon", name, "--replicas", "1")
    p.wait_ready(name, 1)


def test_classic_photons_deploy_and_answer_as_leptonai_did(platform: RunningPlatform,
                                                            tmp_path: Path) -> None:
    p = platform
    deploy(p, "counter", f"{CLASSIC}/counter.py:Counter")
    deploy(p, "greeter", f"{CLASSIC}/greeter.py:Greeter")
    deploy(p, "doubler", f"{CLASSIC}/batched.py:Doubler")

    counter = Client(f"{p.url}/run/counter", token=p.token)
    assert set(counter.paths()) == {"/add", "/sub", "/value", "/divmod", "/reset"}
    assert counter.add(x=3) == 3
    assert counter.add(x=2) == 5
    assert counter.value() == 5                      # a GET handler
    assert counter.divmod(a=7, b=2) == [3, 1]        # a tuple, as JSON
    with pytest.raises(httpx.HTTPStatusError, match="x must not be negative"):
        counter.sub(x=-1)
    url = f"{p.url}/run/counter"
    bad = httpx.post(f"{url}/sub", json={"x": -1}, headers=p.headers)
    assert bad.status_code == 400
    assert bad.json() == {"error": "x must not be negative"}
    reset = httpx.post(f"{url}/reset", headers=p.headers)
    assert reset.status_code == 204
    assert counter.value() == 0

    greeter = Client(f"{p.url}/run/greeter", token=p.token)
    assert greeter.hello(name="Ada") == "Hello, Ada!"   # from the extra_files module

    doubler = Client(f"{p.url}/run/doubler", token=p.token)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda x: doubler.double(x=x), range(16))) == [
            2 * x for x in range(16)]

    # a `leptonic init` project deploys as is
    project = tmp_path / "hello"
    p.cli("init", "hello", "--dir", str(project))
    deploy(p, "hello", f"{project}/app.py:Echo")
    r = httpx.post(f"{p.url}/run/hello/echo", json={"text": "hi"}, headers=p.headers)
    assert r.json() == "hi"
    for client in (counter, greeter, doubler):    # their pooled connections, not the GC's
        client.close()


def test_classic_file_run_as_a_script_launches(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text((CLASSIC / "counter.py").read_text().replace(
        "Counter().launch()", "Counter().launch(host='127.0.0.1', port=int(os.environ['PORT']))"
    ).replace("from typing import Tuple", "import os\nfrom typing import Tuple"))
    port = free_port()
    log = tmp_path / "log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "leptonic.compat", str(script)],
                                env={**os.environ, "PORT": str(port)},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        with Client(f"http://127.0.0.1:{port}") as client:
            assert client.add(x=4) == 4
    finally:
        proc.terminate()
        proc.wait(15)
