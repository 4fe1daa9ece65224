"""Hostile clients and crashes at the worst moment, against a real ``leptonic up``.

* slow-loris clients (a head dribbled byte by byte, a body that stalls) are cut off after
  the configured limits, and real clients are served meanwhile;
* kill -9 in the middle of a photon upload and of deployment updates: after a restart the
  store is consistent, the old version intact, nothing half-written left behind.
"""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from leptonic.store.artifacts import canonical_digest
from tests.e2e.harness import RunningPlatform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def guarded(tmp_path: Path):
    with running_platform(tmp_path / "data", {"LEPTONIC_HEAD_TIMEOUT_S": "1.5",
                                              "LEPTONIC_BODY_IDLE_TIMEOUT_S": "1.5"}) as p:
        yield p


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_loris_clients_are_cut_off_and_others_served(guarded: RunningPlatform) -> None:
    p = guarded
    head = (f"POST /run/x/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {p.token}\r\nContent-Length: 100\r\n").encode()
    slow_heads, stalled_bodies, silent = [], [], []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(head[:10])
        slow_heads.append(s)
        b = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        b.sendall(head + b"\r\n" + b"{")          # head done, 1 of 100 body bytes
        stalled_bodies.append(b)
        silent.append(socket.create_connection(("127.0.0.1", p.port), timeout=5))
    # keep dribbling the heads (a byte every 0.3 s) while real clients are served
    latencies = []
    sent = 10
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        for s in slow_heads:
            try:
                s.sendall(head[sent:sent + 1])
            except OSError:
                pass
        sent += 1
        t0 = time.monotonic()
        r = httpx.get(f"{p.url}/api/v1/status", headers=p.headers, timeout=5)
        latencies.append(time.monotonic() - t0)
        assert r.status_code == 200
        time.sleep(0.3)
    assert max(latencies) < 1.0, latencies
    for group in (slow_heads, stalled_bodies, silent):
        closed = sum(closed_by_server(s) for s in group)
        for s in group:
            s.close()
        assert closed == len(group), f"{closed}/{len(group)} cut off"


def _bundle(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ECHO = (b"from leptonic import Photon, handler\n\nclass Echo(Photon):\n"
        b"    @handler\n    def echo(self, text: str) -> str:\n        return text\n")


def test_kill9_mid_upload_and_mid_update_leaves_a_consistent_store(
        platform: RunningPlatform) -> None:
    p = platform
    v1 = httpx.post(f"{p.url}/api/v1/photons", headers=p.headers,
                    data={"name": "echo", "entry": "app.py:Echo"},
                    files={"file": ("b.tar.gz", _bundle({"app.py": ECHO}))}).json()
    assert v1["version"] == 1
    p.cli("deployment", "create", "--name", "d", "--photon", "echo", "--replicas", "0",
          "--no-wait")

    # 1) killed while a new version is being inspected: its staging folder exists
    slow = ECHO + b"\nimport time\ntime.sleep(30)\n"
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            httpx.post(f"{p.url}/api/v1/photons", headers=p.headers, timeout=60,
                       data={"name": "echo", "entry": "app.py:Echo"},
                       files={"file": ("b.tar.gz", _bundle({"app.py": slow}))})
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=upload)
    t.start()
    artifacts = p.data_dir / "artifacts"
    deadline = time.monotonic() + 20
    while not list(artifacts.glob(".staging-*")):
        assert time.monotonic() < deadline, "the upload never reached staging"
        time.sleep(0.05)
    p.kill9()
    t.join(30)
    assert errors, "the upload cannot have succeeded"

    # 2) killed in the middle of a stream of deployment updates
    p.start()
    stop = threading.Event()

    def updates() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                httpx.patch(f"{p.url}/api/v1/deployments/d", headers=p.headers,
                            json={"env": {"N": str(n)}}, timeout=5)
            except httpx.HTTPError:
                return

    u = threading.Thread(target=updates)
    u.start()
    time.sleep(0.5)
    p.kill9()
    stop.set()
    u.join(10)

    p.start()
    versions = p.api("GET", "/photons/echo").json()["versions"]
    assert [v["version"] for v in versions] == [1]
    assert canonical_digest(artifacts / v1["digest"]) == v1["digest"]
    assert (artifacts / v1["digest"] / "app.py").read_bytes() == ECHO
    assert not list(artifacts.glob(".staging-*")), "the half-done upload was swept"
    assert [d.name for d in artifacts.iterdir()] == [v1["digest"]]
    d = p.api("GET", "/deployments/d").json()
    assert d["generation"] == 1 + int(d["spec"]["env"].get("N", "0"))
    # and the platform works as before
    again = httpx.post(f"{p.url}/api/v1/photons", headers=p.headers,
                       data={"name": "echo", "entry": "app.py:Echo"},
                       files={"file": ("b.tar.gz", _bundle({"app.py": ECHO + b"# 2\n"}))})
    assert again.status_code == 201
    assert again.json()["version"] == 2
