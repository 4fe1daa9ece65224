"""What the gateway costs: the same JSON echo handler bare, and behind the gateway.

Modes (each a function below that starts its servers and yields the URL to load):

* ``runner``      the photon runner serving ``builtin:echo``, hit directly (the baseline)
* ``gateway-1``   the standalone gateway (``python -m leptonic.gateway``) -> 1 runner
* ``gateway-2``   the standalone gateway -> 2 runners
* ``platform-1``  the full path: ``leptonic up`` (API + controller + gateway in one
                  process) with a deployment of ``builtin:echo``, 1 replica, token checked
* ``platform-2``  the same with 2 replicas
* ``fastapi``     a bare FastAPI echo app, for comparison (optional)
* ``litserve``, ``bentoml``, ``rayserve``: the same JSON echo on each peer framework,
                  run with ``--peer-python`` from a separate venv (benchmarks/peers/)

Every server process is pinned to core 0 and the load generator (this process) to core 1,
so "gateway-1" measures gateway + replica sharing one core. Each mode gets a warm-up and
``--runs`` timed runs at fixed concurrency; the table shows medians.

    python benchmarks/gateway.py [--modes runner,gateway-1,gateway-2,platform-1,platform-2,fastapi]
        [--runs 5] [--duration 10] [--concurrency 32] [--json results.json]
    python benchmarks/gateway.py --client-compare   # the upstream-client choice

To add a mode (say, through ``leptonic up``): write a context manager
``def mode_x(ctx: Context) -> Iterator[str]`` that starts what it needs with
``ctx.spawn`` and yields the URL to load, then register it in ``MODES``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import Result, pin_to_cpu, run_load  # noqa: E402

SERVER_CPU = 0
LOAD_CPU = 1
BODY = b'{"text": "hello, leptonic"}'

FASTAPI_ECHO = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.post("/echo")
async def echo(body: dict) -> dict:
    return body
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            access_log=False, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Context:
    """What a mode needs: a way to start pinned server processes, and the settings."""

    handler_path: str
    replica_cmd: str | None = None      # e.g. "python app.py {port}" instead of the runner
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)   # sent with every request
    tmpdirs: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)
    peer_python: str | None = None
    api: Any = None                     # httpx.Client on /api/v1 once platform() ran

    def spawn(self, args: list[str], ready_url: str | None, timeout_s: float = 60.0,
              port: int | None = None, env: dict[str, str] | None = None) -> None:
        """Start ``args`` pinned to the server core; wait until ``ready_url`` answers 200
        (or, without one, until ``port`` accepts connections). ``env`` adds variables."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        # own session, so stop() takes the whole process tree (peers fork workers)
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))
        self.procs.append(proc)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{args} exited with {proc.returncode}")
            try:
                if ready_url is None:
                    socket.create_connection(("127.0.0.1", port or 0), timeout=1).close()
                    return
                with urllib.request.urlopen(ready_url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{args} did not become ready at {ready_url}")

    def runner(self) -> str:
        """Start one photon runner with ``builtin:echo``; return its base URL."""
        port = free_port()
        if self.replica_cmd:
            self.spawn(shlex.split(self.replica_cmd.format(port=port)), None, port=port)
            return f"http://127.0.0.1:{port}"
        self.spawn([sys.executable, "-m", "leptonic.photon.runner", "--entry", "builtin:echo",
                    "--host", "127.0.0.1", "--port", str(port)],
                   f"http://127.0.0.1:{port}/readyz")
        return f"http://127.0.0.1:{port}"

    def gateway(self, upstreams: list[str]) -> str:
        port = free_port()
        args = [sys.executable, "-m", "leptonic.gateway", "--host", "127.0.0.1",
                "--port", str(port)]
        for url in upstreams:
            args += ["--route", f"echo={url}"]
        self.spawn(args, f"http://127.0.0.1:{port}/healthz")
        return f"http://127.0.0.1:{port}/run/echo"

    def platform(self, replicas: int, photon: str = "builtin:echo", name: str = "echo",
                 env: dict[str, str] | None = None, ready_s: float = 60) -> str:
        """Start ``leptonic up`` (its replicas inherit its core) with a deployment ``name``
        of ``photon`` (default ``builtin:echo``) at ``replicas`` replicas, ``env`` set on
        it; return the deployment's gateway URL."""
        import httpx

        tmp = tempfile.TemporaryDirectory(prefix="leptonic-bench-")
        self.tmpdirs.append(tmp)
        data, port = Path(tmp.name) / "data", free_port()
        self.spawn([sys.executable, "-m", "leptonic", "up", "--data-dir", str(data),
                    "--port", str(port)], f"http://127.0.0.1:{port}/healthz")
        base = f"http://127.0.0.1:{port}"
        token = (data / "admin-token").read_text().strip()
        self.headers = {"authorization": f"Bearer {token}"}
        api = httpx.Client(base_url=f"{base}/api/v1", headers=self.headers, timeout=30)
        api.post("/deployments", json={"name": name, "photon": photon, "replicas": replicas,
                                       "env": env or {}}).raise_for_status()
        deadline = time.monotonic() + ready_s
        while api.get(f"/deployments/{name}").json()["status"]["phase"] != "Ready":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {name} deployment did not become ready in {ready_s} s")
            time.sleep(0.2)
        self.api = api
        return f"{base}/run/{name}"

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()
        for tmp in self.tmpdirs:
            with contextlib.suppress(Exception):
                tmp.cleanup()


@contextlib.contextmanager
def mode_runner(ctx: Context) -> Iterator[str]:
    yield ctx.runner() + ctx.handler_path


@contextlib.contextmanager
def mode_gateway_1(ctx: Context) -> Iterator[str]:
    yield ctx.gateway([ctx.runner()]) + ctx.handler_path


@contextlib.contextmanager
def mode_gateway_2(ctx: Context) -> Iterator[str]:
    yield ctx.gateway([ctx.runner(), ctx.runner()]) + ctx.handler_path


@contextlib.contextmanager
def mode_platform_1(ctx: Context) -> Iterator[str]:
    yield ctx.platform(1) + ctx.handler_path


@contextlib.contextmanager
def mode_platform_2(ctx: Context) -> Iterator[str]:
    yield ctx.platform(2) + ctx.handler_path


@contextlib.contextmanager
def mode_fastapi(ctx: Context) -> Iterator[str]:
    port = free_port()
    # FastAPI answers 405 to GET /echo; the docs page says it is up.
    ctx.spawn([sys.executable, "-c", FASTAPI_ECHO, str(port)], f"http://127.0.0.1:{port}/docs")
    yield f"http://127.0.0.1:{port}/echo"


def _peer(script: str, ready_path: str, path: str) -> Callable[[Context], Iterator[str]]:
    @contextlib.contextmanager
    def mode(ctx: Context) -> Iterator[str]:
        if not ctx.peer_python:
            raise SystemExit("peer modes need --peer-python (see benchmarks/peers/README.md)")
        port = free_port()
        ctx.spawn([ctx.peer_python, str(ROOT / "benchmarks" / "peers" / script), str(port)],
                  f"http://127.0.0.1:{port}{ready_path}", timeout_s=180)
        yield f"http://127.0.0.1:{port}{path}"
    return mode


MODES: dict[str, Callable[[Context], contextlib.AbstractContextManager[str]]] = {
    "runner": mode_runner,
    "gateway-1": mode_gateway_1,
    "gateway-2": mode_gateway_2,
    "platform-1": mode_platform_1,
    "platform-2": mode_platform_2,
    "fastapi": mode_fastapi,
    "litserve": _peer("litserve_echo.py", "/health", "/predict"),
    "bentoml": _peer("bentoml_echo.py", "/readyz", "/echo"),
    "rayserve": _peer("rayserve_echo.py", "/-/healthz", "/echo"),
}


@dataclass
class Row:
    mode: str
    runs: list[Result]

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


def measure(mode: str, args: argparse.Namespace) -> Row:
    ctx = Context(handler_path=args.handler_path, replica_cmd=args.replica_cmd,
                  peer_python=args.peer_python)
    try:
        with MODES[mode](ctx) as url:
            runs = []
            loop_run = _loop_runner()
            loop_run(run_load(url, BODY, args.concurrency, duration_s=args.warmup,
                              headers=ctx.headers))
            for _ in range(args.runs):
                result = loop_run(run_load(url, BODY, args.concurrency,
                                           duration_s=args.duration, headers=ctx.headers))
                print(f"  {mode}: {result.rps:.0f} req/s p50 {result.p50_ms:.2f} ms "
                      f"p99 {result.p99_ms:.2f} ms errors {result.errors}", file=sys.stderr)
                runs.append(result)
            return Row(mode, runs)
    finally:
        ctx.stop()


def _loop_runner() -> Callable[..., Result]:
    try:
        import uvloop
        return uvloop.run
    except ImportError:  # pragma: no cover
        return asyncio.run


def table(rows: list[Row], args: argparse.Namespace) -> str:
    base = next((r.rps for r in rows if r.mode == "runner"), None)
    lines = [
        f"concurrency {args.concurrency}, {args.runs} runs x {args.duration:g}s, medians; "
        f"servers on core {SERVER_CPU}, load generator on core {LOAD_CPU}",
        "",
        "| mode | req/s | p50 ms | p99 ms | errors | vs bare runner |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = f"{row.rps / base:.2f}" if base else "-"
        lines.append(f"| {row.mode} | {row.rps:.0f} | {row.p50:.2f} | {row.p99:.2f} | "
                     f"{row.errors} | {ratio} |")
    return "\n".join(lines)


# -- the upstream-client choice ---------------------------------------------------------
def client_compare(args: argparse.Namespace) -> None:
    """CPU per request of the gateway's client vs aiohttp, against one bare runner."""
    import aiohttp

    from leptonic.gateway.upstream import UpstreamClient

    n, conc = 30_000, args.concurrency
    ctx = Context(handler_path=args.handler_path, replica_cmd=args.replica_cmd)
    try:
        base = ctx.runner()
        host, port = base.removeprefix("http://").split(":")
        url = base + args.handler_path
        head = (f"POST {args.handler_path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n"
                ).encode()

        async def ours() -> None:
            client, left = UpstreamClient(), [n]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    resp = await client.request(host, int(port), head, BODY)
                    resp.take_body()
                    while await resp.next_chunk() is not None:
                        pass
                    resp.release()
            await asyncio.gather(*(worker() for _ in range(conc)))
            await client.aclose()

        async def theirs() -> None:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector,
                                             auto_decompress=False) as session:
                left = [n]

                async def worker() -> None:
                    while left[0] > 0:
                        left[0] -= 1
                        async with session.post(url, data=BODY, headers={
                                "content-type": "application/json"}) as resp:
                            async for _ in resp.content.iter_any():
                                pass
                await asyncio.gather(*(worker() for _ in range(conc)))

        print("| client | req/s | client CPU us/request |\n|---|---:|---:|")
        for name, fn in [("leptonic UpstreamClient", ours), ("aiohttp ClientSession", theirs)]:
            wall, cpu = time.perf_counter(), time.process_time()
            _loop_runner()(fn())
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"| {name} | {n / wall:.0f} | {cpu / n * 1e6:.1f} |")
    finally:
        ctx.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Gateway overhead benchmark.")
    parser.add_argument("--modes",
                        default="runner,gateway-1,gateway-2,platform-1,platform-2,fastapi")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--handler-path", default="/echo",
                        help="path of the echo handler on a runner")
    parser.add_argument("--replica-cmd", default=None,
                        help="serve replicas with this command ('{port}' is filled in) "
                             "instead of the photon runner")
    parser.add_argument("--peer-python", default=None,
                        help="python of a venv with litserve/bentoml/ray[serve] for the "
                             "peer modes")
    parser.add_argument("--json", default=None, help="also write raw results here")
    parser.add_argument("--client-compare", action="store_true")
    args = parser.parse_args()
    pin_to_cpu(LOAD_CPU)
    if args.client_compare:
        client_compare(args)
        return
    rows = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        rows.append(measure(mode, args))
    print(table(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {r.mode: [x.as_dict() for x in r.runs] for r in rows}, indent=2))


if __name__ == "__main__":
    main()
