"""What a flood of bad credentials costs: valid gateway traffic and API latency beside it.

One ``leptonic up`` (pinned to core 0, as in benchmarks/gateway.py) serves a deployment
of ``builtin:echo`` with one replica; this process (core 1) drives, in each run, three
phases of ``--duration`` seconds:

* ``alone``        valid traffic only: ``--concurrency`` connections with a valid token
* ``valid flood``  the same, plus as many connections more with other valid tokens
* ``random flood`` the same, plus as many connections more with random tokens of the
                   real length: half of the current format with a bad checksum, half of
                   the old checksum-less format (which the store has to be asked about)

Meanwhile ``GET /api/v1/deployments`` is sampled on its own connection every 20 ms. Every
connection is on loopback; the flood comes from ``--flood-addresses`` source addresses
(127.0.0.2, 127.0.0.3, ..., one per connection at most; 1 means the valid traffic's own
127.0.0.1, so the attacker shares the legitimate clients' address). The table shows
medians over ``--runs`` and the ratio the target is about: valid req/s beside the random
flood / beside the valid flood.

    python benchmarks/auth_flood.py [--runs 3] [--duration 5] [--concurrency 16]
        [--flood-addresses 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import BODY, LOAD_CPU, SERVER_CPU, Context, _loop_runner  # noqa: E402
from benchmarks.loadgen import _Client, build_request, pin_to_cpu  # noqa: E402

PHASES = ("alone", "valid flood", "random flood")
FLOOD_TOKENS = 4          # distinct valid tokens in the valid flood
RANDOM_POOL = 40_000      # distinct random tokens per run (each sent at most once or so)
API_EVERY_S = 0.02
TARGET_RATIO = 0.8
TARGET_API_MS = 50.0


@dataclass
class Load:
    """Answers of one stream of requests."""

    requests: int = 0
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def pct_ms(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


@dataclass
class Phase:
    phase: str
    valid_rps: float
    valid_errors: int
    flood_rps: float
    flood_statuses: dict[int, int]
    api_p50_ms: float
    api_p99_ms: float
    api_samples: int


async def _drive(host: str, port: int, raws: list[bytes], concurrency: int, deadline: float,
                 load: Load, local: list[str] | None = None) -> None:
    """``concurrency`` keep-alive connections sending ``raws`` in turn until ``deadline``;
    ``local`` source addresses are used round robin."""
    loop = asyncio.get_running_loop()
    n = len(raws)
    position = [0]

    async def worker(i: int) -> None:
        conn: _Client | None = None
        addr = (local[i % len(local)], 0) if local else None
        while loop.time() < deadline:
            raw = raws[position[0] % n]
            position[0] += 1
            try:
                if conn is None or not conn.keep_alive or conn.transport is None \
                        or conn.transport.is_closing():
                    _, conn = await loop.create_connection(_Client, host, port,
                                                           local_addr=addr)
                done = conn.done = loop.create_future()
                conn.transport.write(raw)  # type: ignore[union-attr]
                status = await done
                load.requests += 1
                load.statuses[status] = load.statuses.get(status, 0) + 1
            except (OSError, ConnectionError):
                load.failures += 1
                if conn is not None and conn.transport is not None:
                    conn.transport.abort()
                conn = None
                await asyncio.sleep(0.001)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def _sample_api(host: str, port: int, raw: bytes, deadline: float, load: Load) -> None:
    """One request at a time on a keep-alive connection, every API_EVERY_S: what a user
    of the API waits."""
    loop = asyncio.get_running_loop()
    conn: _Client | None = None
    while loop.time() < deadline:
        try:
            if conn is None or not conn.keep_alive or conn.transport is None \
                    or conn.transport.is_closing():
                _, conn = await loop.create_connection(_Client, host, port)
            t0 = time.perf_counter()
            done = conn.done = loop.create_future()
            conn.transport.write(raw)  # type: ignore[union-attr]
            status = await done
            load.latencies.append(time.perf_counter() - t0)
            load.statuses[status] = load.statuses.get(status, 0) + 1
        except (OSError, ConnectionError):
            load.failures += 1
            conn = None
        await asyncio.sleep(API_EVERY_S)
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def random_tokens(n: int) -> list[str]:
    """Tokens of the real lengths that do not exist: half of the current format with a
    wrong checksum (55 chars), half of the old format (47 chars)."""
    out = []
    for i in range(n):
        body = secrets.token_urlsafe(32)
        out.append("lep_" + body + (secrets.token_hex(4) if i % 2 == 0 else ""))
    return out


async def run_phase(phase: str, run_url: str, api_url: str, valid: str,
                    flood_valid: list[str], args: argparse.Namespace) -> Phase:
    host, port, valid_raw = build_request(run_url, BODY, {"authorization": f"Bearer {valid}"})
    _, _, api_raw = build_request(api_url, None, {"authorization": f"Bearer {valid}"})
    if phase == "valid flood":
        tokens = flood_valid
    elif phase == "random flood":
        tokens = random_tokens(RANDOM_POOL)
    else:
        tokens = []
    flood_raws = [build_request(run_url, BODY, {"authorization": f"Bearer {t}"})[2]
                  for t in tokens]
    local = ([f"127.0.0.{2 + i}" for i in range(args.flood_addresses)]
             if args.flood_addresses > 1 else None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.duration
    ours, theirs, api = Load(), Load(), Load()
    started = time.perf_counter()
    jobs = [_drive(host, port, [valid_raw], args.concurrency, deadline, ours),
            _sample_api(host, port, api_raw, deadline, api)]
    if flood_raws:
        jobs.append(_drive(host, port, flood_raws, args.concurrency, deadline, theirs,
                           local))
    await asyncio.gather(*jobs)
    elapsed = time.perf_counter() - started
    return Phase(phase, ours.requests / elapsed,
                 ours.failures + sum(c for s, c in ours.statuses.items() if s != 200),
                 theirs.requests / elapsed, dict(sorted(theirs.statuses.items())),
                 api.pct_ms(0.5), api.pct_ms(0.99), len(api.latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description="Valid traffic beside a bad-token flood.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections of valid traffic; the flood uses as many")
    parser.add_argument("--flood-addresses", type=int, default=1,
                        help="source addresses of the flood (1: the valid traffic's own)")
    parser.add_argument("--json", default=None, help="also write raw results here")
    args = parser.parse_args()
    pin_to_cpu(LOAD_CPU)
    ctx = Context(handler_path="/echo")
    results: list[Phase] = []
    try:
        run_url = ctx.platform(1) + "/echo"
        api_url = run_url.split("/run/")[0] + "/api/v1/deployments"
        valid = ctx.headers["authorization"].removeprefix("Bearer ")
        flood_valid = []
        for i in range(FLOOD_TOKENS):
            r = ctx.api.post("/tokens", json={"name": f"flood-{i}", "role": "viewer"})
            r.raise_for_status()
            flood_valid.append(r.json()["token"])
        loop_run = _loop_runner()
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        loop_run(run_phase("alone", run_url, api_url, valid, flood_valid, warm))
        for n in range(args.runs):
            for phase in PHASES:
                res = loop_run(run_phase(phase, run_url, api_url, valid, flood_valid, args))
                print(f"  run {n + 1} {phase}: valid {res.valid_rps:.0f} req/s "
                      f"(errors {res.valid_errors}), flood {res.flood_rps:.0f} req/s "
                      f"{res.flood_statuses}, API p50 {res.api_p50_ms:.1f} ms "
                      f"p99 {res.api_p99_ms:.1f} ms ({res.api_samples} samples)",
                      file=sys.stderr)
                results.append(res)
    finally:
        ctx.stop()
    print(table(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


def table(results: list[Phase], args: argparse.Namespace) -> str:
    def med(phase: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results if r.phase == phase)

    lines = [
        f"valid concurrency {args.concurrency} + flood {args.concurrency} from "
        f"{args.flood_addresses} address(es), {args.runs} runs x {args.duration:g}s, "
        f"medians; server on core {SERVER_CPU}, load on core {LOAD_CPU}",
        "",
        "| phase | valid req/s | valid errors | flood req/s | flood answers "
        "| API p50 ms | API p99 ms |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for phase in PHASES:
        answers: dict[int, int] = {}
        for r in results:
            if r.phase == phase:
                for code, c in r.flood_statuses.items():
                    answers[code] = answers.get(code, 0) + c
        shown = ", ".join(f"{c} x{n}" for c, n in sorted(answers.items())) or "-"
        errors = sum(r.valid_errors for r in results if r.phase == phase)
        lines.append(f"| {phase} | {med(phase, 'valid_rps'):.0f} | {errors} | "
                     f"{med(phase, 'flood_rps'):.0f} | {shown} | "
                     f"{med(phase, 'api_p50_ms'):.1f} | {med(phase, 'api_p99_ms'):.1f} |")
    ratio = med("random flood", "valid_rps") / med("valid flood", "valid_rps")
    api_p99 = med("random flood", "api_p99_ms")
    lines += ["", f"valid req/s beside the random flood / beside the valid flood: "
                  f"{ratio:.2f} (target >= {TARGET_RATIO}); API p99 beside the random "
                  f"flood {api_p99:.1f} ms (target < {TARGET_API_MS:g} ms)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
