"""Placement as tables: which nodes a replica may go to and, when none, why not."""

from __future__ import annotations

import pytest

from leptonic.core.models import Node, NodeControl, PlacementSpec, Resources, Tier
from leptonic.core.scheduler import Request, place, refusal, too_large


def node(name: str, tier: str = "datacenter", cpu: float = 4, mem: float = 8192,
         gpu: float = 0, used: float = 0, alive: bool = True, cordoned: bool = False,
         draining: bool = False, **labels: str) -> Node:
    return Node(name=name, tier=tier, capacity={"cpu": cpu, "memory_mb": mem, "gpu": gpu},
                allocated={"cpu": used, "memory_mb": 0, "gpu": 0}, alive=alive,
                labels={"tier": tier, **labels},
                control=NodeControl(cordoned=cordoned, draining=draining))


def req(cpu: float = 0, mem: int = 0, gpu: float = 0, tier: Tier = Tier.ANY,
        **selector: str) -> Request:
    return Request.of("d", Resources(cpu=cpu, memory_mb=mem, gpu=gpu),
                   PlacementSpec(tier=tier, node_selector=selector))


@pytest.mark.parametrize(("n", "r", "why"), [
    (node("a"), req(cpu=1), None),
    (node("a", alive=False), req(), "not ready"),
    (node("a", cordoned=True), req(), "cordoned"),
    (node("a", draining=True, cordoned=True), req(), "draining"),
    (node("a", tier="datacenter"), req(tier=Tier.EDGE), "a datacenter node, not edge"),
    (node("a", tier="edge"), req(tier=Tier.EDGE), None),
    (node("a", zone="x"), req(zone="y"), "no label zone=y"),
    (node("a", zone="x"), req(zone="x"), None),
    (node("a", cpu=4, used=3.5), req(cpu=1), "0.5 CPU free, 1 needed"),
    (node("a", cpu=4, used=3), req(cpu=1), None),                 # exactly full fits
    (node("a", mem=512), req(mem=1024), "512 MiB of memory free, 1024 needed"),
    (node("a", gpu=0), req(gpu=0.5), "0 GPU free, 0.5 needed"),
])
def test_refusal(n: Node, r: Request, why: str | None) -> None:
    assert refusal(n, r) == why


def test_spread_first_then_least_loaded_then_name() -> None:
    nodes = [node("b", used=1), node("a", used=2), node("c", used=0)]
    assert place(nodes, req(), {}).node == "c"
    assert place(nodes, req(), {"c": 1}).node == "b"              # spread: c has one
    assert place(nodes, req(), {"c": 1, "b": 1}).node == "a"
    tied = [node("y"), node("x")]
    assert place(tied, req(), {}).node == "x"                     # deterministic


def test_unschedulable_says_what_is_missing_and_why_each_node_was_refused() -> None:
    nodes = [node("dc", tier="datacenter"), node("e1", tier="edge", cpu=1),
             node("e2", tier="edge", alive=False)]
    placed = place(nodes, req(cpu=2, tier=Tier.EDGE), {})
    assert placed.node is None
    assert placed.reason.startswith("Unschedulable: no ready edge node with 2 CPU free")
    assert "1 not ready" in placed.reason
    assert "without enough CPU" in placed.reason
    assert "1 in tier datacenter" in placed.reason
    assert placed.refused == {"dc": "a datacenter node, not edge",
                              "e1": "1 CPU free, 2 needed", "e2": "not ready"}
    assert "there are no nodes" in place([], req(), {}).reason


def test_a_request_no_node_could_ever_hold_names_the_largest_node() -> None:
    nodes = [node("a", cpu=4), node("b", cpu=8, mem=16384)]
    assert too_large(nodes, Resources(cpu=8)) is None
    assert too_large(nodes, Resources(cpu=16)) == \
        "a replica asks for 16 CPU, but the largest node has 8"
    assert "MiB of memory" in (too_large(nodes, Resources(memory_mb=32768)) or "")
    assert too_large([], Resources(cpu=99)) is None


# -- the Cluster: filters on GPUs, every score plugin, ties, power -----------------------

from leptonic.core.power import NodePower, PowerModel  # noqa: E402
from leptonic.core.scheduler import Binding, Cluster, NodeSpec, Policy  # noqa: E402


def cluster(*specs: NodeSpec, workload: tuple[Request, ...] = ()) -> Cluster:
    return Cluster(list(specs), workload=workload)


def work(cpu: float = 0, mem: float = 0, gpu: float = 0, owner: str = "d",
         models: tuple[str, ...] = ()) -> Request:
    return Request(owner, cpu, mem, gpu, models)


@pytest.mark.parametrize(("request_", "why"), [
    (work(gpu=0.5), None),                                   # a share of one GPU
    (work(gpu=0.9), "no GPU with 0.9 free (at most 0.6 on one GPU)"),
    (work(gpu=1), "0 GPU free, 1 needed"),                   # no GPU is whole
])
def test_gpu_shares_fit_on_one_gpu_not_across_gpus(request_: Request, why: str | None) -> None:
    c = cluster(NodeSpec("g", 8, 8192, gpus=2, gpu_model="T4"))
    c.bind("g", work(gpu=0.4))
    c.bind("g", work(gpu=0.7))           # 0.6 left on GPU 0, 0.3 on GPU 1: 0.9 free, split
    assert c.refusal(0, request_) == why


def test_fractional_shares_use_best_fit_and_whole_gpus_need_whole_free_gpus() -> None:
    c = cluster(NodeSpec("g", 8, 8192, gpus=2, gpu_model="T4"))
    first = c.bind("g", work(gpu=0.4))
    second = c.bind("g", work(gpu=0.4))
    assert first.gpu_shares == ((0, 0.4),)
    assert second.gpu_shares == ((0, 0.4),)
    assert c.refusal(0, work(gpu=2)) == "1 GPU free, 2 needed"
    assert c.refusal(0, work(gpu=0.3)) is None
    assert c.refusal(0, work(gpu=0.8)) is None              # GPU 1 is whole
    c.bind("g", work(gpu=1))
    assert c.refusal(0, work(gpu=0.3)) == "no GPU with 0.3 free (at most 0.2 on one GPU)"
    c.release(first)
    assert c.refusal(0, work(gpu=0.6)) is None
    assert c.refusal(0, work(gpu=1)) == "0 GPU free, 1 needed"


def test_gpu_model_constraint_and_reason() -> None:
    c = cluster(NodeSpec("a", 8, 8192, gpus=1, gpu_model="T4"),
                NodeSpec("b", 8, 8192, gpus=1, gpu_model="A100"))
    placed = c.decide(work(gpu=1, models=("a100",)))
    assert placed.node == "b"
    assert c.refusal(0, work(gpu=1, models=("A100",))) == "GPU model T4, not A100"
    none = c.decide(work(gpu=1, models=("H100",)))
    assert none.node is None
    assert "with a H100 GPU" in none.reason
    assert "2 with another GPU model" in none.reason


def test_cpu_and_memory_refusals_on_the_cluster() -> None:
    c = cluster(NodeSpec("a", 2, 1024))
    c.set_ready("a", False, "cordoned")
    assert c.refusal(0, work(cpu=1)) == "cordoned"
    c.set_ready("a", True)
    assert c.refusal(0, work(cpu=3)) == "2 CPU free, 3 needed"
    assert c.refusal(0, work(mem=2048)) == "1024 MiB of memory free, 2048 needed"


def _two(policy: Policy) -> list[str]:
    """Four 1-CPU items on two 4-CPU nodes: where each lands."""
    c = cluster(NodeSpec("a", 4, 4096), NodeSpec("b", 4, 4096))
    out = []
    for _ in range(4):
        placed, _binding = c.place(work(cpu=1), policy)
        assert placed.node is not None
        out.append(placed.node)
    return out


@pytest.mark.parametrize(("policy", "where"), [
    (Policy.SPREAD, ["a", "b", "a", "b"]),        # least allocated, ties by name
    (Policy.PACK, ["a", "a", "a", "a"]),          # most allocated
    (Policy.RAY_HYBRID, ["a", "a", "b", "b"]),    # pack until 50%, then the least used
    (Policy.ENERGY, ["a", "a", "a", "a"]),        # same marginal watts: ties by name
])
def test_each_policy_places_as_it_says(policy: Policy, where: list[str]) -> None:
    assert _two(policy) == where


def test_ray_hybrid_spreads_above_the_threshold() -> None:
    c = cluster(NodeSpec("a", 4, 4096), NodeSpec("b", 4, 4096))
    c.bind("a", work(cpu=3))
    c.bind("b", work(cpu=2))
    assert c.decide(work(cpu=1), Policy.RAY_HYBRID).node == "b"     # both past 50%: least used


def test_spread_keeps_an_owners_replicas_apart_before_load() -> None:
    c = cluster(NodeSpec("a", 8, 8192), NodeSpec("b", 8, 8192))
    c.bind("a", work(cpu=1, owner="x"))
    c.bind("b", work(cpu=4, owner="y"))
    assert c.decide(work(cpu=1, owner="x"), Policy.SPREAD).node == "b"
    assert c.decide(work(cpu=1, owner="z"), Policy.SPREAD).node == "a"


def test_ties_are_broken_by_name_whatever_the_input_order() -> None:
    for order in (["n2", "n1", "n3"], ["n3", "n1", "n2"]):
        c = cluster(*(NodeSpec(n, 4, 4096) for n in order))
        for policy in Policy:
            assert c.decide(work(cpu=1), policy).node == "n1"


def test_energy_prefers_an_awake_node_over_waking_one_and_the_cheaper_node() -> None:
    cheap = NodePower(PowerModel.linear(50, 100))
    dear = NodePower(PowerModel.linear(50, 150))
    c = cluster(NodeSpec("a", 4, 4096, power=dear), NodeSpec("b", 4, 4096, power=cheap))
    assert c.decide(work(cpu=1), Policy.ENERGY).node == "b"         # 12.5 W < 25 W
    c.set_standby("b", True)
    placed = c.decide(work(cpu=1), Policy.ENERGY)
    assert placed.node == "a"
    assert not placed.waking
    c.set_standby("a", True)
    placed = c.decide(work(cpu=1), Policy.ENERGY)
    assert placed.node == "b"
    assert placed.waking
    assert c.power_w("a") == pytest.approx(10.0)                     # standby draw


def test_energy_does_not_strand_a_whole_gpu_for_a_share() -> None:
    # workload: mostly whole-GPU tasks; a share goes to the GPU already shared
    whole = (*tuple(work(gpu=1) for _ in range(9)), work(gpu=0.5))
    c = cluster(NodeSpec("a", 32, 65536, gpus=2, gpu_model="T4"),
                NodeSpec("b", 32, 65536, gpus=2, gpu_model="T4"), workload=whole)
    c.bind("b", work(gpu=0.5))
    assert c.decide(work(gpu=0.5), Policy.ENERGY).node == "b"       # same GPU, no new frag
    frag = c.gpu_fragmentation()
    c.bind("b", work(gpu=0.5))
    assert c.gpu_fragmentation() <= frag


def test_fragmentation_counts_what_the_typical_task_cannot_use() -> None:
    c = cluster(NodeSpec("g", 8, 8192, gpus=2, gpu_model="T4"),
                workload=(work(cpu=1, gpu=1),))
    assert c.gpu_fragmentation() == 0.0
    c.bind("g", work(gpu=0.3))
    assert c.gpu_fragmentation() == pytest.approx(0.7)               # 0.7 left on GPU 0
    c.bind("g", work(cpu=8))                                         # no CPU left at all
    assert c.gpu_fragmentation() == pytest.approx(1.7)               # nothing fits there


def test_power_follows_the_model_and_standby() -> None:
    c = cluster(NodeSpec("g", 32, 65536, gpus=1, gpu_model="A100"))
    idle = c.power_w("g")
    c.bind("g", work(cpu=16, gpu=1))
    assert c.power_w("g") - idle == pytest.approx(350 + (140 - 58.4))
    assert c.total_power_w() == pytest.approx(c.power_w("g"))
    c.set_standby("g", True)
    assert c.total_power_w() == pytest.approx(10.0)
    assert c.active_nodes() == 0


# -- consolidation -------------------------------------------------------------------------

from leptonic.core.scheduler import consolidation  # noqa: E402


def test_consolidation_empties_the_nearly_empty_node_onto_an_awake_one() -> None:
    c = cluster(NodeSpec("a", 32, 65536), NodeSpec("b", 32, 65536), NodeSpec("c", 32, 65536))
    c.bind("a", work(cpu=2, owner="x"))
    c.bind("b", work(cpu=8, owner="y"))
    c.set_standby("c", True)
    move = consolidation(c, {"a": [work(cpu=2, owner="x")], "b": [work(cpu=8, owner="y")]})
    assert move is not None
    assert move.node == "a"
    assert [n for _, n in move.moves] == ["b"]
    # a's whole draw (58.4 W idle + its share) goes, b draws 2 cores more, a stands by at 10
    assert move.saving_w == pytest.approx(c.power_w("a") - 10.0
                                          - (IBM(10 / 32) - IBM(8 / 32)))
    assert c.bound.tolist() == [1, 1, 0]
    assert c.is_standby("c")


def IBM(u: float) -> float:
    from leptonic.core.power import IBM_X3550_M3
    return IBM_X3550_M3.watts(u)


@pytest.mark.parametrize("case", ["pinned", "no room", "busy", "no saving"])
def test_no_consolidation_when_it_cannot_or_should_not(case: str) -> None:
    c = cluster(NodeSpec("a", 32, 65536), NodeSpec("b", 32, 4096))
    c.bind("a", work(cpu=2, mem=1024 if case != "no room" else 8192))
    c.bind("b", work(cpu=1))
    movable = {"a": [work(cpu=2, mem=1024 if case != "no room" else 8192)],
               "b": [work(cpu=1)]}
    if case == "pinned":
        movable = {}
    if case == "no room":                         # b's own work stays (it is pinned)
        del movable["b"]
    if case == "busy":
        c.bind("a", work(cpu=14))                 # a half full: not nearly empty
        c.bind("b", work(cpu=30))                 # and b has no room for a's work either
    kwargs = {"min_saving_w": 1e6} if case == "no saving" else {}
    assert consolidation(c, movable, **kwargs) is None


@pytest.mark.parametrize("policy", list(Policy))
def test_scoring_one_of_each_kind_of_empty_node_decides_exactly_as_scoring_all(
        policy: Policy) -> None:
    import random

    specs = [NodeSpec(f"n{i:02}", 8, 16384, gpus=(2 if i % 3 else 0), gpu_model="T4")
             for i in range(24)]
    shapes = [work(cpu=1, mem=1024), work(cpu=2, gpu=0.5), work(cpu=4, gpu=1),
              work(cpu=0.5, mem=512, gpu=0.25), work(cpu=6, gpu=2)]
    fast, full = cluster(*specs, workload=tuple(shapes)), cluster(*specs,
                                                               workload=tuple(shapes))
    full._reclass = lambda i: None          # type: ignore[method-assign]
    full.skip[:] = False
    rnd = random.Random(7)
    live: list[tuple[Binding, Binding]] = []
    for step in range(400):
        if step % 37 == 0:
            name = f"n{rnd.randrange(24):02}"
            fast.set_standby(name, True)
            full.set_standby(name, True)
        if live and rnd.random() < 0.4:
            a, b = live.pop(rnd.randrange(len(live)))
            fast.release(a)
            full.release(b)
        r = rnd.choice(shapes)
        got, want = fast.decide(r, policy), full.decide(r, policy)
        assert got.node == want.node, step
        if got.node is not None:
            live.append((fast.bind(got.node, r), full.bind(want.node, r)))


@pytest.mark.parametrize(("kept", "afresh"), [(1000, 0), (0, 1000)])
def test_energy_scores_kept_per_shape_decide_exactly_as_scoring_afresh(
        monkeypatch: pytest.MonkeyPatch, kept: int, afresh: int) -> None:
    """The energy score is kept per request shape and node version (a lower bound until
    its penalty is needed), and a stale node is scored in plain Python or, many at once,
    with numpy: a cluster that keeps its scores decides as one that forgets them before
    every decision and scores the other way, and as scoring every node in full."""
    import random

    from leptonic.core import scheduler

    specs = [NodeSpec(f"n{i:02}", 8 + 8 * (i % 2), 16384, gpus=(2 if i % 3 else 4 * (i % 2)),
                      gpu_model="T4" if i % 3 else "A100") for i in range(30)]
    shapes = [work(cpu=1, mem=1024), work(cpu=2, gpu=0.5), work(cpu=4, gpu=1),
              work(cpu=0.5, mem=512, gpu=0.25), work(cpu=6, gpu=2), work(cpu=3, gpu=0.3)]
    keeps, forgets = (cluster(*specs, workload=tuple(shapes)) for _ in range(2))
    rnd = random.Random(11)
    live: list[tuple[Binding, Binding]] = []
    for step in range(600):
        if step % 41 == 0:
            name = f"n{rnd.randrange(30):02}"
            keeps.set_standby(name, keeps.is_empty(name))
            forgets.set_standby(name, forgets.is_empty(name))
        if live and rnd.random() < 0.45:
            a, b = live.pop(rnd.randrange(len(live)))
            keeps.release(a)
            forgets.release(b)
        r = rnd.choice(shapes)
        monkeypatch.setattr(scheduler, "ONE_BY_ONE", kept)
        got = keeps.decide(r, Policy.ENERGY)
        forgets._score_cache.clear()
        forgets._frag_cache.clear()
        forgets._frag_memo.clear()
        monkeypatch.setattr(scheduler, "ONE_BY_ONE", afresh)
        want = forgets.decide(r, Policy.ENERGY)
        assert (got.node, got.waking, got.score) == (want.node, want.waking, want.score), step
        if want.node is not None:       # every node's score, the penalties all computed
            forgets._score_cache.clear()
            full = forgets.scores(r, Policy.ENERGY, forgets.fit_mask(r) & ~forgets.skip)
            best = int(full.argmin())
            assert (forgets.specs[best].name, float(full[best])) == (want.node, want.score)
        if got.node is not None:
            live.append((keeps.bind(got.node, r), forgets.bind(want.node, r)))
    assert keeps._score_cache       # it did keep them


def test_fragmentation_of_many_nodes_is_bit_for_bit_that_of_each_node() -> None:
    """The numpy and the plain Python measure sum alike, so alike nodes tie exactly."""
    import random

    rnd = random.Random(5)
    specs = [NodeSpec(f"n{i:02}", 16, 65536, gpus=rnd.choice([1, 2, 4, 8]), gpu_model="A100")
             for i in range(40)]
    shapes = [work(cpu=c, mem=m, gpu=g) for c, m, g in
              [(1, 1024, 0.13), (2, 4096, 0.5), (4, 8192, 1), (3, 2048, 0.81), (8, 9000, 2),
               (12, 30000, 4), (1, 512, 0.27), (2, 100, 0.3)]]
    c = cluster(*specs, workload=tuple(shapes * 3))
    for _ in range(300):
        r = rnd.choice(shapes)
        name = specs[rnd.randrange(len(specs))].name
        if c.refusal(c.index[name], r) is None:
            c.bind(name, r)
    rows = c.gpu_free
    assert c._fragmentation(c.free_cpu, c.free_mem, rows).tolist() == [
        c._frag_of(float(c.free_cpu[i]), float(c.free_mem[i]), rows[i].tolist())
        for i in range(len(specs))]
    assert float(c._fragmentation(c.free_cpu, c.free_mem, rows).sum()) > 0
