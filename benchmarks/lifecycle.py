"""The model lifecycle's speed (issue #14): what is built so far.

* **drift**: ``core.drift.feature_drift`` + ``dataset_drift`` of 10 numeric features x
  10,000 live rows against a reference built from 10,000 training rows (the KS test gives
  way to the normed Wasserstein distance above 1,000 rows, as Evidently does), and of the
  same 10 features x 1,000 rows (the KS path); target <= 100 ms for the first;
* **reference**: ``Reference.build`` of the 10 x 10,000 training rows (done once per
  registered version).

Medians over ``--runs`` after one warm-up. Feedback ingestion and prediction with monitoring
on come with the feedback endpoint (not built yet).

    python benchmarks/lifecycle.py [--runs 21] [--json results.json]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
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
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: {"median_ms": statistics.median(v), "runs_ms": v}
             for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
