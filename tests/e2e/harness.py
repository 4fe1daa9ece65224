"""Drive a real ``leptonic up`` in a subprocess: start, stop, kill -9, restart, call it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]


def ray_named_actors(address: str, env: dict[str, str]) -> list[str]:
    """Named actors in leptonic's namespace on the Ray cluster at ``address``, asked by a
    driver of its own (a second ``ray.init`` in the process that made the cluster waits
    forever on its GCS client)."""
    code = (f"import json, ray; ray.init(address={address!r}, namespace='leptonic', "
            "log_to_driver=False); print('ACTORS', json.dumps(ray.util.list_named_actors()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, **env}, check=True)
    # Ray prints warnings of its own on stdout too (lagging heartbeats on a busy machine)
    found = [line.removeprefix("ACTORS ") for line in res.stdout.splitlines()
             if line.startswith("ACTORS ")]
    assert found, f"no actor list from the driver: {res.stdout!r} {res.stderr!r}"
    return list(json.loads(found[-1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LoadResult:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)
    bodies: list[Any] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)


@dataclass
class RunningPlatform:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)   # e.g. fast observe loops
    args: list[str] = field(default_factory=list)             # more `leptonic up` flags

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTONIC_")}
        env.update(LEPTONIC_DATA_DIR=str(self.data_dir), LEPTONIC_URL=self.url,
                   PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        return env

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        self.log_file = self.data_dir.parent / f"leptonic-up-{self.port}.log"
        with self.log_file.open("ab") as out:      # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leptonic", "up", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), *self.args], stdout=out, stderr=subprocess.STDOUT,
                env=self.env(), cwd=str(self.data_dir.parent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"leptonic up exited: {self.read_log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if (self.data_dir / "admin-token").exists():
                    r = httpx.get(f"{self.url}/api/v1/status", headers=self.headers, timeout=2)
                    if r.status_code == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError(f"leptonic up not ready in {timeout}s: {self.read_log()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def read_log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""

    def runner_pids(self) -> set[int]:
        """Replica processes of this platform (the runners, not their sandbox wrappers),
        found by the owner mark on their command line."""
        mark = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        pids = set()
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info.get("cmdline") or []
            if "leptonic.photon.runner" in cmd and mark in cmd and \
                    not Path(cmd[0]).name.startswith(("bwrap", "setpriv")):
                pids.add(p.pid)
        return pids

    def kill_all_runners(self) -> None:
        for pid in self.runner_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- calls ------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=self.headers,
                             timeout=30, **kw)

    def cli(self, *args: str, check: bool = True, timeout: float = 180,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "leptonic", *args], env=self.env(),
                             capture_output=True, text=True, timeout=timeout,
                             input=input_text, cwd=str(REPO / "examples" / "echo"))
        if check and res.returncode != 0:
            raise AssertionError(f"leptonic {' '.join(args)} failed ({res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def replicas(self, deployment: str) -> list[dict[str, Any]]:
        r = self.api("GET", f"/deployments/{deployment}/replicas")
        r.raise_for_status()
        return list(r.json())

    def wait_ready(self, deployment: str, replicas: int, timeout: float = 60.0,
                   exclude_pids: set[int] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = self.replicas(deployment)
            ready = [r for r in last if r["state"] == "ready" and r["pid"] not in exclude_pids]
            if len(ready) >= replicas:
                return ready
            time.sleep(0.1)
        raise TimeoutError(f"{deployment}: not {replicas} ready in {timeout}s: "
                           f"{json.dumps(last, indent=1)}\n{self.read_log()[-3000:]}")

    async def load(self, deployment: str, handler: str, n: int, concurrency: int = 8,
                   body: dict[str, Any] | None = None,
                   during: Any = None) -> LoadResult:
        """``n`` requests at ``concurrency``; ``during(i)`` is awaited when request i is sent."""
        result = LoadResult()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        url = f"{self.url}/run/{deployment}/{handler}"

        async def worker(client: httpx.AsyncClient) -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if during is not None:
                    await during(i)
                try:
                    r = await client.post(url, json=body if body is not None else {"text": f"m{i}"})
                except httpx.HTTPError as exc:
                    result.failed.append(f"{i}: {type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    result.failed.append(f"{i}: HTTP {r.status_code}: {r.text[:200]}")
                    continue
                result.ok += 1
                result.bodies.append(r.json())
                rid = r.headers.get("x-leptonic-replica", "?")
                result.replicas[rid] = result.replicas.get(rid, 0) + 1

        async with httpx.AsyncClient(headers=self.headers, timeout=30) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return result


@contextlib.contextmanager
def running_platform(data_dir: Path, env: dict[str, str] | None = None,
                     args: list[str] | None = None) -> Iterator[RunningPlatform]:
    """A started ``leptonic up`` (with ``env`` and ``args`` added), stopped with all its
    replicas."""
    p = RunningPlatform(data_dir, free_port(), extra_env=dict(env or {}),
                        args=list(args or []))
    p.start()
    try:
        yield p
    finally:
        p.stop()
        p.kill_all_runners()
