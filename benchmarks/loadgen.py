"""A small, fast HTTP/1.1 load generator: fixed concurrency over keep-alive connections.

Each of ``concurrency`` connections sends one request, waits for the whole response
(parsed with httptools), records the latency and sends the next, until the request budget
or the duration runs out. It is asyncio protocols on uvloop with a prebuilt request, so
one core drives tens of thousands of requests a second and the server stays the
bottleneck.

    python benchmarks/loadgen.py http://127.0.0.1:8090/run/echo/echo \\
        --body '{"text": "hi"}' -c 32 -d 10 --cpu 1 [-H 'authorization: Bearer T'] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools


@dataclass
class Result:
    requests: int                 # completed responses (any status)
    errors: int                   # non-2xx responses plus connection failures
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def build_request(url: str, body: bytes | None, headers: Mapping[str, str] | None,
                  method: str | None = None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported, not {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    method = method or ("POST" if body is not None else "GET")
    lines = [f"{method} {target} HTTP/1.1", f"host: {parts.netloc}"]
    names = {k.lower() for k in (headers or {})}
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body is not None:
        if "content-type" not in names:
            lines.append("content-type: application/json")
        lines.append(f"content-length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    return parts.hostname, port, raw


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        done = self.done
        if done is not None and not done.done():
            done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        done = self.done
        if done is not None and not done.done():
            done.set_exception(exc)


async def run_load(
    url: str,
    body: bytes | str | None = None,
    concurrency: int = 32,
    duration_s: float | None = 10.0,
    requests: int | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    method: str | None = None,
    warmup_s: float = 0.0,
) -> Result:
    """Drive ``url`` with ``concurrency`` keep-alive connections; stop at ``requests``
    completed or after ``duration_s`` seconds, whichever comes first (at least one bound
    is needed). ``warmup_s`` of load is sent first and not counted."""
    if duration_s is None and requests is None:
        raise ValueError("give duration_s or requests (or both)")
    if isinstance(body, str):
        body = body.encode()
    host, port, raw = build_request(url, body, headers, method)
    loop = asyncio.get_running_loop()
    if warmup_s > 0:
        await _drive(loop, host, port, raw, concurrency, loop.time() + warmup_s, None, [],
                     {}, [0])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = [0]
    started = time.perf_counter()
    deadline = loop.time() + duration_s if duration_s is not None else None
    await _drive(loop, host, port, raw, concurrency, deadline, requests, latencies, statuses,
                 failures)
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(q * n))] * 1000 if n else float("nan")

    errors = failures[0] + sum(c for s, c in statuses.items() if not 200 <= s < 300)
    return Result(requests=n, errors=errors, duration_s=elapsed,
                  rps=n / elapsed if elapsed > 0 else 0.0, p50_ms=pct(0.50), p99_ms=pct(0.99),
                  statuses=dict(sorted(statuses.items())))


async def _drive(loop: asyncio.AbstractEventLoop, host: str, port: int, raw: bytes,
                 concurrency: int, deadline: float | None, budget: int | None,
                 latencies: list[float], statuses: dict[int, int], failures: list[int]) -> None:
    remaining = [budget if budget is not None else -1]
    perf = time.perf_counter

    async def worker() -> None:
        conn: _Client | None = None
        while True:
            if deadline is not None and loop.time() >= deadline:
                break
            if remaining[0] == 0:
                break
            if remaining[0] > 0:
                remaining[0] -= 1
            try:
                if conn is None or not conn.keep_alive or conn.transport is None \
                        or conn.transport.is_closing():
                    _, conn = await loop.create_connection(_Client, host, port)
                t0 = perf()
                done = conn.done = loop.create_future()
                conn.transport.write(raw)  # type: ignore[union-attr]
                status = await done
                latencies.append(perf() - t0)
                statuses[status] = statuses.get(status, 0) + 1
            except (OSError, ConnectionError, httptools.HttpParserError):
                failures[0] += 1
                if conn is not None and conn.transport is not None:
                    conn.transport.abort()
                conn = None
                await asyncio.sleep(0.001)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def pin_to_cpu(cpu: int) -> None:
    """Run this process on one CPU only (Linux), so it does not steal the server's core."""
    os.sched_setaffinity(0, {cpu})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--body", default=None, help="request body (POST); none: GET")
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=None, help="seconds")
    parser.add_argument("-n", "--requests", type=int, default=None)
    parser.add_argument("-H", "--header", action="append", default=[], help="'name: value'")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the load generator here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        pin_to_cpu(args.cpu)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    duration = args.duration if args.duration or args.requests else 10.0
    runner: Any = asyncio.run
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    result = runner(run_load(args.url, args.body, args.concurrency, duration, args.requests,
                             headers, warmup_s=args.warmup))
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"{result.requests} requests in {result.duration_s:.2f}s: {result.rps:.0f} req/s, "
              f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
              f"errors {result.errors}, statuses {result.statuses}", file=sys.stdout)


if __name__ == "__main__":
    main()
