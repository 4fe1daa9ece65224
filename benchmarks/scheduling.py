"""Energy-aware placement on a public trace, and how fast the scheduler decides.

**Replay** (``leptonic.simulate.schedule``, the simulator ``leptonic simulate schedule``
runs): the pod arrivals and departures of the Alibaba GPU cluster trace v2023 (Weng et al.,
USENIX ATC '23; ``traces/README.md``) on its 1,523 nodes, under each policy (spread, pack,
ray-hybrid, energy), for the default sample and the other samples in ``traces/`` (or every
``openb_pod_list_*`` of ``--dir``, e.g. a clone of github.com/alibaba/clusterdata's
``cluster-trace-gpu-v2023/csv``). A sample without times (``multigpu*``) is replayed on
the default list's times (``traces.borrow_times``, as ``--times-from``), and also as a
fill (arrivals 1 s apart that never leave), shown apart: the goal is judged on the timed
replays. A replay is deterministic, so each is run once; the goal per sample:

* energy uses at least 25% less energy than spread, leaving no more pods unscheduled;
* energy uses no more energy than pack, leaving no more pods unscheduled than pack.

**Speed** (``core.scheduler.Cluster``): 10,000 placements (decide + bind) on the trace's
1,523 nodes, the requests drawn in turn from the default sample, with the oldest work
released once as much is bound as half the node count (so the cluster never fills); and
decisions per second at 100, 1,000 and 10,000 nodes (the trace's node list, sampled evenly
or repeated), per policy; medians over ``--runs``.

    python benchmarks/scheduling.py [--runs 5] [--json results.json]
    python benchmarks/scheduling.py --dir CLONE/cluster-trace-gpu-v2023/csv --samples all \\
        --skip-speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leptonic.core.scheduler import Cluster, NodeSpec, Policy, Request  # noqa: E402
from leptonic.simulate import schedule as sim  # noqa: E402
from leptonic.simulate import traces  # noqa: E402

TRACES = ROOT / "traces" / "alibaba-gpu-v2023"
NODES = TRACES / "openb_node_list_all_node.csv.gz"
SAMPLES = ("default", "gpushare100", "gpuspec33", "multigpu50", "cpu050")
POLICIES = tuple(Policy)
PLACEMENTS = 10_000
SIZES = (100, 1_000, 10_000)
WARMUP = 200
#: the speed target: 10,000 placements on the trace's nodes within this (seconds)
TARGET_S = 1.0
#: the energy target: at least this much less energy than spread
SAVING = 0.25


def sample_path(name: str, where: Path = TRACES) -> Path:
    """``openb_pod_list_NAME`` in ``where``, compressed or not."""
    plain = where / f"openb_pod_list_{name}.csv"
    return plain if plain.exists() else where / f"openb_pod_list_{name}.csv.gz"


def every_sample(where: Path) -> list[str]:
    names = {p.name.removeprefix("openb_pod_list_").removesuffix(".gz").removesuffix(".csv")
             for p in where.glob("openb_pod_list_*.csv*")}
    return sorted(names, key=lambda n: (n != "default", n))


# -- replay ---------------------------------------------------------------------------------

def replay(nodes: list[NodeSpec], sample: str, args: argparse.Namespace, *,
           fill: bool = False) -> dict[str, Any]:
    """One sample under every policy; a sample without times on the default list's times,
    or (``fill``) as it reads alone."""
    pods = traces.read_pods(f"alibaba:{sample_path(sample, args.dir)}")
    reading = "timed" if all(p.timed for p in pods) else "fill" if fill else "default's times"
    if reading == "default's times":
        lender = traces.read_pods(f"alibaba:{sample_path('default', args.dir)}")
        pods = traces.borrow_times(pods, lender, sample=sample, source="default")
    work = sim.arrivals(pods, args.limit)
    label = f"{sample} (fill)" if fill else sample
    results = {}
    for policy in POLICIES:
        r = sim.replay(nodes, work, policy, standby_after_s=args.standby_after)
        results[str(policy)] = r.to_dict()
        print(f"  {label:17} {policy:10} {r.energy_kwh:12,.1f} kWh  unscheduled "
              f"{r.unscheduled:5}  active {r.mean_active_nodes:7.1f}  max wait "
              f"{r.max_wait_s:6.0f} s  ({r.wall_s:.1f} s)", file=sys.stderr, flush=True)
    return {"sample": label, "reading": reading, "pods": len(work), "results": results,
            "goal": goal(results)}


def goal(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    energy, spread, pack = (results[p] for p in ("energy", "spread", "pack"))
    saving = 1 - energy["energy_kwh"] / spread["energy_kwh"] if spread["energy_kwh"] else 0.0
    vs_spread = saving >= SAVING and energy["unscheduled"] <= spread["unscheduled"]
    vs_pack = (energy["energy_kwh"] <= pack["energy_kwh"]
               and energy["unscheduled"] <= pack["unscheduled"])
    return {"saving_vs_spread": round(saving, 4),
            "vs_pack": round(energy["energy_kwh"] / pack["energy_kwh"] - 1, 4)
            if pack["energy_kwh"] else 0.0,
            "vs_spread_met": vs_spread, "vs_pack_met": vs_pack, "met": vs_spread and vs_pack}


# -- speed ----------------------------------------------------------------------------------

def cluster_of_size(nodes: Sequence[NodeSpec], size: int) -> list[NodeSpec]:
    """``size`` nodes with the trace's mix: sampled evenly below its size, repeated above."""
    n = len(nodes)
    picks = [nodes[(i * n) // size] if size <= n else nodes[i % n] for i in range(size)]
    return [NodeSpec(f"{p.name}-{i:05d}", p.cpu, p.memory_mb, p.gpus, p.gpu_model)
            for i, p in enumerate(picks)]


def placements(nodes: list[NodeSpec], requests: list[Request], policy: Policy, count: int
               ) -> dict[str, float]:
    """``count`` decide+bind placements (after a warm-up), the oldest released once as
    many are bound as half the node count; seconds in decide+bind, and with releases."""
    cluster = Cluster(nodes, workload=requests)
    live: deque[Any] = deque()
    keep = max(len(nodes) // 2, 1)
    decide_bind = total = 0.0
    placed = refused = 0
    for k in range(WARMUP + count):
        timed = k >= WARMUP
        request = requests[k % len(requests)]
        started = time.perf_counter()
        if len(live) >= keep:
            cluster.release(live.popleft())
        released = time.perf_counter()
        placement = cluster.decide(request, policy)
        if placement.node is not None:
            live.append(cluster.bind(placement.node, request))
        done = time.perf_counter()
        if timed:
            decide_bind += done - released
            total += done - started
            placed += placement.node is not None
            refused += placement.node is None
    return {"decide_bind_s": decide_bind, "with_release_s": total,
            "decisions_per_s": count / decide_bind if decide_bind else 0.0,
            "placed": placed, "refused": refused}


def speed(nodes: list[NodeSpec], requests: list[Request], args: argparse.Namespace
          ) -> dict[str, Any]:
    out: dict[str, Any] = {"trace_nodes": {}, "sizes": {}}
    for policy in args.policies:
        runs = [placements(nodes, requests, policy, args.placements) for _ in range(args.runs)]
        out["trace_nodes"][str(policy)] = _medians(runs) | {"runs": runs}
        m = out["trace_nodes"][str(policy)]
        print(f"  {len(nodes)} nodes {policy:10} {args.placements} placements: "
              f"{m['decide_bind_s']:.3f} s ({m['with_release_s']:.3f} s with releases)",
              file=sys.stderr, flush=True)
    for size in args.sizes:
        cluster = cluster_of_size(nodes, size)
        out["sizes"][str(size)] = {}
        for policy in args.policies:
            runs = [placements(cluster, requests, policy, args.decisions)
                    for _ in range(args.runs)]
            out["sizes"][str(size)][str(policy)] = _medians(runs)
            print(f"  {size:6} nodes {policy:10} "
                  f"{out['sizes'][str(size)][str(policy)]['decisions_per_s']:9,.0f} "
                  "decisions/s", file=sys.stderr, flush=True)
    return out


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


# -- report ---------------------------------------------------------------------------------

def report(replays: list[dict[str, Any]], fast: dict[str, Any], args: argparse.Namespace
           ) -> str:
    lines: list[str] = []
    if replays:
        lines += [f"Replay of the Alibaba GPU trace v2023 on {args.node_count:,} nodes "
                  f"(standby after {args.standby_after:g} s)", "",
                  f"{'sample':17} {'policy':10} {'pods':>6} {'unsched':>7} "
                  f"{'energy kWh':>12} {'vs spread':>9} {'active':>7} {'GPU frag':>8} "
                  f"{'max wait':>9} {'mean wait':>9} {'sched s':>7}"]
    for rep in replays:
        spread = rep["results"]["spread"]["energy_kwh"]
        for policy, r in rep["results"].items():
            versus = f"{(r['energy_kwh'] / spread - 1) * 100:+.1f}%" if spread else ""
            lines.append(
                f"{rep['sample']:17} {policy:10} {r['pods']:6} {r['unscheduled']:7} "
                f"{r['energy_kwh']:12,.1f} {versus:>9} {r['mean_active_nodes']:7.1f} "
                f"{r['gpu_fragmentation']:8.1f} {r['max_wait_s']:8.0f}s "
                f"{r['mean_wait_s']:8.1f}s {r['scheduler_s']:7.2f}")
        g = rep["goal"]
        judged = "" if rep["reading"] != "fill" else " (a fill: not judged)"
        lines.append(f"{'':17} goal: energy {g['saving_vs_spread'] * 100:.1f}% below spread "
                     f"({'met' if g['vs_spread_met'] else 'NOT met'}), "
                     f"{g['vs_pack'] * 100:+.1f}% vs pack "
                     f"({'met' if g['vs_pack_met'] else 'NOT met'}){judged}")
    if fast["trace_nodes"]:
        lines += ["", f"Scheduler speed, medians of {args.runs} runs", "",
                  f"{'policy':10} {args.placements:,} placements on {args.node_count:,} "
                  f"nodes (target <= {TARGET_S:g} s)   "
                  + "  ".join(f"{int(s):>7,} nodes" for s in fast["sizes"])]
        for policy in args.policies:
            m = fast["trace_nodes"][str(policy)]
            flag = "ok" if m["decide_bind_s"] <= TARGET_S else "SLOW"
            per_size = "  ".join(
                f"{fast['sizes'][s][str(policy)]['decisions_per_s']:9,.0f}/s"
                for s in fast["sizes"])
            lines.append(f"{policy!s:10} {m['decide_bind_s']:7.3f} s decide+bind, "
                         f"{m['with_release_s']:.3f} s with releases ({flag})   {per_size}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Energy-aware scheduling benchmark.")
    parser.add_argument("--samples", default=",".join(SAMPLES),
                        help="pod samples to replay (openb_pod_list_NAME), comma-separated, "
                             "or all (every one in --dir)")
    parser.add_argument("--dir", type=Path, default=TRACES,
                        help="where the node list and the samples are (.csv or .csv.gz)")
    parser.add_argument("--no-fill", action="store_true",
                        help="replay samples without times only on the default's times")
    parser.add_argument("--runs", type=int, default=5, help="runs per speed figure")
    parser.add_argument("--placements", type=int, default=PLACEMENTS)
    parser.add_argument("--decisions", type=int, default=2_000,
                        help="timed decisions per cluster size")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--standby-after", type=float, default=sim.STANDBY_AFTER_S)
    parser.add_argument("--limit", type=int, default=None, help="replay only N pods")
    parser.add_argument("--policies", default=",".join(map(str, POLICIES)),
                        help="the policies whose speed is measured, comma-separated")
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.policies = [Policy(p) for p in args.policies.split(",") if p]
    started = time.monotonic()
    node_list = args.dir / NODES.name.removesuffix(".gz")
    nodes = sim.node_specs(traces.read_nodes(
        f"alibaba:{node_list if node_list.exists() else args.dir / NODES.name}"))
    args.node_count = len(nodes)
    samples = every_sample(args.dir) if args.samples == "all" else \
        [s for s in args.samples.split(",") if s]
    replays = []
    for sample in [] if args.skip_replay else samples:
        replays.append(replay(nodes, sample, args))
        if replays[-1]["reading"] != "timed" and not args.no_fill:
            replays.append(replay(nodes, sample, args, fill=True))
    fast: dict[str, Any] = {"trace_nodes": {}, "sizes": {}}
    if not args.skip_speed:
        requests = [a.request for a in sim.arrivals(
            traces.read_pods(f"alibaba:{sample_path('default', args.dir)}"))]
        fast = speed(nodes, requests, args)
    print(report(replays, fast, args))
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "platform": platform.platform()},
             "nodes": args.node_count, "standby_after_s": args.standby_after,
             "replay": replays,
             "goal_met": all(r["goal"]["met"] for r in replays if r["reading"] != "fill"),
             "speed": fast}, indent=2))


if __name__ == "__main__":
    main()
