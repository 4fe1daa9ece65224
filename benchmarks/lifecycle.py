"""The model lifecycle's speed (issue #14).

* **drift**: ``core.drift.feature_drift`` + ``dataset_drift`` of 10 numeric features x
  10,000 live rows against a reference built from 10,000 training rows (the KS test gives
  way to the normed Wasserstein distance above 1,000 rows, as Evidently does), and of the
  same 10 features x 1,000 rows (the KS path); target <= 100 ms for the first;
* **reference**: ``Reference.build`` of the 10 x 10,000 training rows (done once per
  registered version);
* with ``--platform`` (a real ``leptonic up``, sampling every second):
  **monitoring on / off**: ``predict`` of an iris model through the gateway, two
  deployments of the same version, one with its answers sampled (the default) and one with
  ``--no-monitor``, measured in turns, ``--rounds`` each; target >= 0.95;
  **feedback**: ``POST /deployments/D/feedback`` of the truth of 10,000 sampled answers in
  batches of 1,000, labels joined per second; target >= 5,000.

Medians over ``--runs`` (``--rounds``) after one warm-up.

    python benchmarks/lifecycle.py [--runs 21] [--platform --rounds 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leptonic.core.drift import Reference, dataset_drift, feature_drift  # noqa: E402

FEATURES = 10
ROWS = 10_000
TARGET_MS = 100.0


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls, after one warm-up."""
    fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def platform_figures(rounds: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """Monitoring on vs off through the gateway, and feedback ingestion, on a real
    ``leptonic up``."""
    import asyncio

    import httpx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from benchmarks.gateway import Context
    from benchmarks.loadgen import run_load
    from leptonic.client import Client
    from leptonic.models import register_sklearn

    X, y = load_iris(return_X_y=True)
    ctx = Context(handler_path="/predict")
    try:
        import tempfile
        tmp = tempfile.TemporaryDirectory(prefix="leptonic-bench-")
        ctx.tmpdirs.append(tmp)
        data, port = Path(tmp.name) / "data", _free_port()
        base = f"http://127.0.0.1:{port}"
        ctx.spawn([sys.executable, "-m", "leptonic", "up", "--data-dir", str(data), "--port",
                   str(port)], f"{base}/healthz", env={"LEPTONIC_METRICS_INTERVAL": "1s"})
        token = (data / "admin-token").read_text().strip()
        headers = {"authorization": f"Bearer {token}"}
        with Client(url=base, token=token) as client:
            register_sklearn(client, "iris", LogisticRegression(max_iter=1000).fit(X, y), X, y)
            for name, monitor in (("mon", True), ("off", False)):
                client.create_deployment(name, model="iris@1", monitor=monitor)
            for name in ("mon", "off"):
                client.wait_ready(name, 120)
        body = json.dumps({"features": X[50].tolist()})
        rps: dict[str, list[float]] = {"mon": [], "off": []}
        errors = 0
        for i in range(rounds + 1):                  # the first round warms both up
            for name in (("mon", "off") if i % 2 else ("off", "mon")):
                res = asyncio.run(run_load(f"{base}/run/{name}/predict", body, concurrency,
                                           seconds, headers=headers))
                errors += res.errors
                if i:
                    rps[name].append(res.rps)
        # feedback: the truth of the last 10,000 sampled answers, 1,000 a request
        api = httpx.Client(base_url=f"{base}/api/v1", headers=headers, timeout=60)
        time.sleep(2.5)                              # the monitor has read the samples
        [replica] = api.get("/deployments/mon/replicas").json()
        ids: list[str] = []
        after = 0
        while True:
            page = httpx.get(f"{replica['url']}/_leptonic/sample",
                             params={"after": after}, timeout=30).json()
            if not page["records"]:
                break
            ids += [r[1] for r in page["records"]]
            after = page["next"]
        ids = ids[-10_000:]
        batches = [ids[i:i + 1000] for i in range(0, len(ids), 1000)]
        started = time.perf_counter()
        matched = 0
        for batch in batches:
            r = api.post("/deployments/mon/feedback",
                         json={"items": [{"request_id": rid, "truth": 1} for rid in batch]})
            r.raise_for_status()
            matched += r.json()["matched"]
        elapsed = time.perf_counter() - started
        metrics = api.get("/deployments/mon/model-metrics").json()
        api.close()
    finally:
        ctx.stop()
    mon, off = statistics.median(rps["mon"]), statistics.median(rps["off"])
    return {"rounds": rounds, "seconds": seconds, "concurrency": concurrency,
            "rps_monitoring_on": rps["mon"], "rps_monitoring_off": rps["off"],
            "median_on": mon, "median_off": off, "ratio": mon / off, "errors": errors,
            "feedback_items": len(ids), "feedback_matched": matched,
            "feedback_s": elapsed, "labels_per_s": matched / elapsed,
            "live_accuracy": metrics["accuracy"], "labelled": metrics["labelled"]}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--platform", action="store_true",
                        help="also monitoring on/off through the gateway and feedback")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(FEATURES)]
    train = rng.normal(size=(ROWS, FEATURES))
    live = rng.normal(loc=0.3, size=(ROWS, FEATURES))
    reference = Reference.build(train, names)
    results = {
        "reference_build_ms": timed(lambda: Reference.build(train, names), args.runs),
        "drift_10x10000_ms": timed(lambda: dataset_drift(feature_drift(reference, live)),
                                   args.runs),
        "drift_10x1000_ms": timed(lambda: dataset_drift(feature_drift(reference,
                                                                      live[:1000])),
                                  args.runs),
    }
    share = dataset_drift(feature_drift(reference, live)).drift_share
    print(f"{platform.processor() or platform.machine()}, {args.runs} runs each, medians:")
    for key, runs in results.items():
        print(f"  {key:22} {statistics.median(runs):8.2f} ms  (min {min(runs):.2f}, "
              f"max {max(runs):.2f})")
    verdict = "met" if statistics.median(results["drift_10x10000_ms"]) <= TARGET_MS \
        else "NOT met"
    print(f"drift of 10 features x 10,000 rows: target <= {TARGET_MS:g} ms {verdict}; "
          f"drift_share of the shifted data {share:.2f}")
    out: dict[str, Any] = {k: {"median_ms": statistics.median(v), "runs_ms": v}
                           for k, v in results.items()}
    if args.platform:
        f = platform_figures(args.rounds, args.seconds, args.concurrency)
        out["platform"] = f
        print(f"predict through the gateway, c={f['concurrency']}, {f['rounds']} rounds of "
              f"{f['seconds']:g} s each, in turns: monitoring on {f['median_on']:,.0f} req/s, "
              f"off {f['median_off']:,.0f} req/s (medians), ratio {f['ratio']:.3f} "
              f"(target >= 0.95 {'met' if f['ratio'] >= 0.95 else 'NOT met'}); "
              f"{f['errors']} errors")
        print(f"feedback: {f['feedback_matched']:,} of {f['feedback_items']:,} labels "
              f"matched in {f['feedback_s']:.3f} s = {f['labels_per_s']:,.0f} labels/s "
              f"(target >= 5,000 {'met' if f['labels_per_s'] >= 5000 else 'NOT met'}); "
              f"live accuracy then {f['live_accuracy']}, {f['labelled']:,} labelled")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
