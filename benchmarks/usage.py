"""What metering costs the gateway path (issue #15): target <= 2%.

Two real ``leptonic up`` platforms side by side, one metering (the default) and one with
``LEPTONIC_METERING=0``, both sampling every second (ten times the default, so the meter's
pass runs ten times as often as it would). Each serves ``builtin:echo`` (two replicas);
a closed loop of ``--concurrency`` clients calls ``/run/echo/echo`` through each gateway in
turns (the order swapped every round), ``--seconds`` each, ``--rounds`` rounds after a
warm-up round. The figure is the median requests/s of each and their ratio; the pass's own
time is read from ``leptonic_observe_phase_seconds{phase="usage"}`` of ``/metrics``.

    python benchmarks/usage.py [--rounds 6] [--seconds 8] [--concurrency 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import Context  # noqa: E402
from benchmarks.loadgen import run_load  # noqa: E402
from leptonic.client import Client  # noqa: E402

TARGET = 0.98


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phase_seconds(base: str, headers: dict[str, str]) -> tuple[float, float]:
    """(sum, count) of the usage phase's durations from the platform's /metrics."""
    import httpx

    text = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith('leptonic_observe_phase_seconds_sum{phase="usage"}'):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith('leptonic_observe_phase_seconds_count{phase="usage"}'):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def measure(rounds: int, seconds: float, concurrency: int) -> dict[str, Any]:
    ctx = Context(handler_path="/echo")
    bases: dict[str, tuple[str, dict[str, str]]] = {}
    try:
        for name, metering in (("on", "1"), ("off", "0")):
            tmp = tempfile.TemporaryDirectory(prefix=f"leptonic-bench-usage-{name}-")
            ctx.tmpdirs.append(tmp)
            data, port = Path(tmp.name) / "data", _free_port()
            base = f"http://127.0.0.1:{port}"
            ctx.spawn([sys.executable, "-m", "leptonic", "up", "--data-dir", str(data),
                       "--port", str(port)], f"{base}/healthz",
                      env={"LEPTONIC_METRICS_INTERVAL": "1s", "LEPTONIC_METERING": metering})
            token = (data / "admin-token").read_text().strip()
            headers = {"authorization": f"Bearer {token}"}
            with Client(url=base, token=token) as client:
                client.create_deployment("echo", "builtin:echo", 2)
                client.wait_ready("echo", 120)
            bases[name] = (base, headers)
        body = json.dumps({"text": "hello"})
        rps: dict[str, list[float]] = {"on": [], "off": []}
        errors = 0
        for i in range(rounds + 1):                  # the first round warms both up
            for name in (("on", "off") if i % 2 else ("off", "on")):
                base, headers = bases[name]
                res = asyncio.run(run_load(f"{base}/run/echo/echo", body, concurrency,
                                           seconds, headers=headers))
                errors += res.errors
                if i:
                    rps[name].append(res.rps)
        time.sleep(1.5)
        phase_sum, phase_count = _phase_seconds(*bases["on"])
        with Client(url=bases["on"][0], token=bases["on"][1]["authorization"][7:]) as c:
            usage = c.usage("1h")
    finally:
        ctx.stop()
    on, off = statistics.median(rps["on"]), statistics.median(rps["off"])
    pairs = [a / b for a, b in zip(rps["on"], rps["off"], strict=True)]
    echo = next((i for i in usage["items"] if i["key"] == "echo"), {})
    return {"rounds": rounds, "seconds": seconds, "concurrency": concurrency,
            "rps_metering_on": rps["on"], "rps_metering_off": rps["off"],
            "median_on": on, "median_off": off, "ratio_of_medians": on / off,
            "median_pair_ratio": statistics.median(pairs), "errors": errors,
            "usage_phase_mean_ms": 1000 * phase_sum / phase_count if phase_count else None,
            "usage_passes": phase_count, "metered_requests": echo.get("requests"),
            "metered_replica_seconds": echo.get("replica_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    f = measure(args.rounds, args.seconds, args.concurrency)
    f["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    print(f"gateway /run/echo/echo, {f['rounds']} rounds x {f['seconds']:g} s in turns, "
          f"{f['concurrency']} clients: metering on {f['median_on']:,.0f} req/s, off "
          f"{f['median_off']:,.0f} req/s; ratio of medians {f['ratio_of_medians']:.3f}, "
          f"median pair ratio {f['median_pair_ratio']:.3f} (target >= {TARGET}); "
          f"{f['errors']} errors")
    if f["usage_phase_mean_ms"] is not None:
        print(f"metering pass: {f['usage_phase_mean_ms']:.2f} ms mean over "
              f"{f['usage_passes']:.0f} passes; metered {f['metered_requests']:.0f} requests, "
              f"{f['metered_replica_seconds']:.0f} replica-seconds")
    if args.json:
        args.json.write_text(json.dumps(f, indent=2))


if __name__ == "__main__":
    main()
