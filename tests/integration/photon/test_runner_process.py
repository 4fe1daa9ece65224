"""The runner as a real process: ``python -m leptonic.photon.runner`` on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leptonic.errors import PhotonDefinitionError
from leptonic.photon.inspect import inspect_bundle

REPO = Path(__file__).resolve().parents[3]
ECHO = REPO / "examples" / "echo"
WAIT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def runner(entry: str, bundle: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                        str, Path]]:
    port = free_port()
    log = tmp_path / f"runner-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leptonic.photon.runner", "--entry", entry,
             "--host", "127.0.0.1", "--port", str(port), "--bundle", str(bundle),
             "--replica-id", "it-1"],
            cwd=bundle, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"runner exited {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"runner not ready in {WAIT_S}s:\n{log.read_text()}")


def test_echo_example_serves_streams_and_stops_on_sigterm(tmp_path: Path) -> None:
    with runner("app.py:Echo", ECHO, tmp_path) as (proc, url, log):
        wait_ready(proc, url, log)
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get("/healthz").status_code == 200
            r = c.post("/echo", json={"text": "hello"})
            assert r.status_code == 200
            assert r.json() == "hello"
            assert c.post("/echo", json={}).status_code == 422
            with c.stream("POST", "/count", json={"n": 3}) as s:
                assert s.headers["content-type"] == "text/event-stream"
                items = [line[len("data: "):] for line in s.iter_lines()
                         if line.startswith("data: ")]
            assert items == ["0", "1", "2"]
            assert 'handler="echo"' in c.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == 0
        text = log.read_text()
        assert f"at {url}" in text
        assert "stopped (exit 0)" in text


def test_builtin_echo(tmp_path: Path) -> None:
    with runner("builtin:echo", tmp_path, tmp_path) as (proc, url, log):
        wait_ready(proc, url, log)
        assert httpx.post(f"{url}/echo", json={"text": "b"}, timeout=5).json() == "b"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == 0


def test_failing_init_exits_1_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from leptonic import Photon, handler\n\n"
        "class Bad(Photon):\n"
        "    def init(self):\n"
        "        raise RuntimeError('model weights not found')\n\n"
        "    @handler\n"
        "    def f(self) -> int:\n"
        "        return 1\n")
    with runner("app.py:Bad", tmp_path, tmp_path) as (proc, _url, log):
        assert proc.wait(timeout=WAIT_S) == 1
        text = log.read_text()
        assert "Traceback" in text
        assert "RuntimeError: model weights not found" in text


def test_unloadable_entry_exits_1_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import nope\n")
    with runner("app.py:X", tmp_path, tmp_path) as (proc, _url, log):
        assert proc.wait(timeout=WAIT_S) == 1
        assert "No module named 'nope'" in log.read_text().strip().splitlines()[-1]


def test_inspect_bundle_good() -> None:
    m = inspect_bundle(ECHO, "app.py:Echo", timeout_s=WAIT_S)
    assert m.class_name == "Echo"
    assert [(h.name, h.stream) for h in m.handlers] == [("echo", False), ("count", True)]


def test_inspect_bundle_import_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import nope\n")
    with pytest.raises(PhotonDefinitionError, match="No module named 'nope'"):
        inspect_bundle(tmp_path, "app.py:X", timeout_s=WAIT_S)


def test_inspect_bundle_does_not_run_init(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from leptonic import Photon, handler\n\n"
        "class P(Photon):\n"
        "    def init(self):\n"
        "        raise SystemExit('init must not run while inspecting')\n\n"
        "    @handler\n"
        "    def f(self) -> int:\n"
        "        return 1\n")
    assert inspect_bundle(tmp_path, "app.py:P", timeout_s=WAIT_S).class_name == "P"


def test_inspect_bundle_timeout(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import time\ntime.sleep(30)\n")
    with pytest.raises(PhotonDefinitionError, match="timed out after 1s"):
        inspect_bundle(tmp_path, "app.py:X", timeout_s=1)
