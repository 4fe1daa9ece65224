"""Constant, bounded load through the gateway while a test changes things underneath it,
and the versioned photons the rollout tests deploy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import RunningPlatform

SVC = '''\
import asyncio

from leptonic import Photon, handler

VERSION = {version}
FAIL_EVERY = {fail_every}     # 0: never; 5: every fifth answer is a 500


class Svc(Photon):
    def init(self) -> None:
        self.calls = 0

    @handler
    def echo(self, text: str) -> dict:
        self.calls += 1
        if FAIL_EVERY and self.calls % FAIL_EVERY == 0:
            raise RuntimeError("v{version} is broken")
        return {{"text": text, "version": VERSION}}

    @handler
    async def work(self, ms: int = 100) -> dict:
        await asyncio.sleep(ms / 1000)
        return {{"version": VERSION}}
'''


def create_svc_versions(p: RunningPlatform, root: Path) -> None:
    """Photon ``svc``: version 1, version 2, and version 3 (a "v2" failing 20%)."""
    for version, (label, fail_every) in enumerate([(1, 0), (2, 0), (2, 5)], start=1):
        src = root / f"svc{version}"
        src.mkdir(parents=True, exist_ok=True)
        (src / "app.py").write_text(SVC.format(version=label, fail_every=fail_every))
        out = p.cli("photon", "create", "--name", "svc", "-m", "app.py:Svc", "--path",
                    str(src), "-o", "json")
        assert f'"version": {version}' in out.stdout, out.stdout


@dataclass
class Answer:
    at: float                   # monotonic time the answer arrived
    version: int | None
    replica: str


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.answers) + len(self.failed)

    def versions_after(self, t: float) -> set[int | None]:
        return {a.version for a in self.answers if a.at > t}

    def summary(self) -> str:
        return (f"{self.total} requests, {len(self.failed)} failed"
                + (f" (first: {self.failed[0]})" if self.failed else ""))


class Traffic:
    """``concurrency`` clients, each sending one request after another (with ``pause_s``
    between), until ``stop()``; every answer and failure is kept."""

    def __init__(self, p: RunningPlatform, deployment: str, handler: str = "echo", *,
                 concurrency: int = 4, pause_s: float = 0.01,
                 body: dict[str, Any] | None = None, timeout_s: float = 30.0) -> None:
        self.url = f"{p.url}/run/{deployment}/{handler}"
        self.headers = p.headers
        self.concurrency = concurrency
        self.pause_s = pause_s
        self.body = body
        self.timeout_s = timeout_s
        self.load = Load()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> Load:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        return self.load

    async def _run(self) -> None:
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout_s) as client:
            await asyncio.gather(*(self._client(client, i) for i in range(self.concurrency)))

    async def _client(self, client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            body = self.body if self.body is not None else {"text": f"c{n}-{i}"}
            try:
                r = await client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                self.load.failed.append(f"{type(exc).__name__}: {exc}")
            else:
                if r.status_code == 200:
                    data = r.json()
                    self.load.answers.append(Answer(
                        time.monotonic(), data.get("version") if isinstance(data, dict)
                        else None, r.headers.get("x-leptonic-replica", "?")))
                else:
                    self.load.failed.append(f"HTTP {r.status_code}: {r.text[:200]}")
            await asyncio.sleep(self.pause_s)


async def until(predicate: Any, within: float, what: str, interval: float = 0.1) -> Any:
    """Await ``predicate()`` (sync, run in a thread) becoming truthy; its value."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(predicate)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last: {last!r}")


def rollout(p: RunningPlatform, name: str) -> dict[str, Any]:
    r = p.api("GET", f"/deployments/{name}/rollout")
    r.raise_for_status()
    return dict(r.json()["status"])


def replicas_by_pid(p: RunningPlatform, name: str) -> dict[int, dict[str, Any]]:
    return {r["pid"]: r for r in p.replicas(name) if r["pid"]}
