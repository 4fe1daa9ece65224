"""Power of two choices, as a table with seeded randomness plus a statistical check; the
whole choice for one attempt (``pick``: weighted split, tried and ejected replicas)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from leptonic.core.routes import Route, Upstream
from leptonic.gateway.balancer import choose, pick


class Draws(random.Random):
    """An rng whose ``randrange`` returns scripted values, to pin the two picks."""

    def __init__(self, *values: int) -> None:
        super().__init__(0)
        self.values = list(values)

    def randrange(self, *args: int, **kwargs: int) -> int:  # type: ignore[override]
        return self.values.pop(0)


@pytest.mark.parametrize(
    ("candidates", "outstanding", "draws", "exclude", "expected"),
    [
        ([], {}, (), (), None),
        (["a"], {"a": 9}, (), (), "a"),                     # one candidate: no draw
        (["a", "b"], {"a": 3, "b": 1}, (0, 0), (), "b"),    # picks a then b; b less busy
        (["a", "b"], {"a": 1, "b": 3}, (0, 0), (), "a"),
        (["a", "b"], {"a": 2, "b": 2}, (1, 0), (), "b"),    # tie: the first pick (b) wins
        (["a", "b"], {"a": 2, "b": 2}, (0, 0), (), "a"),
        (["a", "b", "c"], {"a": 5}, (0, 1), (), "c"),       # second draw skips the first: c
        (["a", "b", "c"], {"c": 1}, (2, 0), (), "a"),       # missing counts as 0
        (["a", "b", "c"], {}, (0, 0), ("b",), "a"),         # exclude b: pool [a, c]
        (["a", "b", "c"], {"a": 4}, (0, 0), ("b",), "c"),
        (["a", "b"], {}, (), ("a",), "b"),                  # one left after exclusion
        (["a", "b"], {}, (), ("a", "b"), None),
    ],
)
def test_choice_table(candidates: list[str], outstanding: dict[str, int],
                      draws: tuple[int, ...], exclude: tuple[str, ...],
                      expected: str | None) -> None:
    rng = Draws(*draws)
    assert choose(candidates, outstanding, rng, exclude) == expected
    assert rng.values == []     # every scripted draw was used, no more


def test_two_distinct_replicas_are_compared() -> None:
    rng = random.Random(1)
    # With two candidates the busier one must never win, whatever the draws.
    for _ in range(1000):
        assert choose(["a", "b"], {"a": 1, "b": 0}, rng) == "b"


def test_load_goes_to_the_less_busy_replicas() -> None:
    rng = random.Random(42)
    outstanding = {"r0": 0, "r1": 2, "r2": 4, "r3": 8}
    counts = Counter(choose(list(outstanding), outstanding, rng) for _ in range(20_000))
    # The busiest replica can only win against itself, which never happens.
    assert counts["r3"] == 0
    assert counts["r0"] > counts["r1"] > counts["r2"]
    # r0 wins every pair it is in: 3 of the 6 pairs, so about half of the choices.
    assert 0.45 < counts["r0"] / 20_000 < 0.55


def simulate(policy: str, seed: int) -> int:
    """Spread (max - min outstanding) after a random arrival/completion process."""
    rng = random.Random(seed)
    outstanding = dict.fromkeys([f"r{i}" for i in range(8)], 0)
    ids = list(outstanding)
    for _ in range(4000):
        chosen = choose(ids, outstanding, rng) if policy == "p2c" else rng.choice(ids)
        assert chosen is not None
        outstanding[chosen] += 1
        if rng.random() < 0.5:
            outstanding[rng.choice([r for r in ids if outstanding[r] > 0])] -= 1
    return max(outstanding.values()) - min(outstanding.values())


def test_p2c_keeps_simulated_load_balanced() -> None:
    assert simulate("p2c", seed=3) <= 8
    assert simulate("random", seed=3) >= 25     # what p2c is saving us from


def test_same_seed_same_choices() -> None:
    ids = ["a", "b", "c", "d"]
    first = [choose(ids, {}, random.Random(9)) for _ in range(5)]
    again = [choose(ids, {}, random.Random(9)) for _ in range(5)]
    assert first == again


def _route(weights: dict[str, float] | None = None, **groups: list[str]) -> Route:
    ups = [Upstream(rid, f"http://127.0.0.1:{9000 + i}", group=g)
           for g, rids in groups.items() for i, rid in enumerate(rids)]
    return Route.of("d", ups, weights)


def test_pick_splits_traffic_by_weight() -> None:
    route = _route({"stable": 90, "canary": 10}, stable=["s1", "s2"], canary=["c1"])
    rng = random.Random(5)
    counts = Counter(pick(route.ids, route.split, {}, rng) for _ in range(20_000))
    assert set(counts) == {"s1", "s2", "c1"}
    assert 0.085 < counts["c1"] / 20_000 < 0.115


def test_pick_without_a_split_is_choose() -> None:
    route = _route(None, a=["a", "b", "c"])
    assert route.split == ()
    draws = [pick(route.ids, route.split, {"a": 3}, random.Random(s)) for s in range(50)]
    assert draws == [choose(route.ids, {"a": 3}, random.Random(s)) for s in range(50)]


def test_pick_skips_tried_and_ejected_replicas() -> None:
    route = _route(None, a=["a", "b", "c"])
    rng = random.Random(1)
    for _ in range(200):
        assert pick(route.ids, (), {}, rng, tried={"a"}, ejected={"b": 10.0}, now=5.0) == "c"
    # an ejection whose time is up no longer counts
    seen = {pick(route.ids, (), {}, rng, tried={"a"}, ejected={"b": 4.0}, now=5.0)
            for _ in range(200)}
    assert seen == {"b", "c"}


def test_pick_tries_an_ejected_replica_rather_than_fail() -> None:
    route = _route(None, a=["a", "b"])
    rng = random.Random(2)
    assert pick(route.ids, (), {}, rng, tried={"a"}, ejected={"b": 10.0}, now=1.0) == "b"
    # but never one already tried for this request
    assert pick(route.ids, (), {}, rng, tried={"a", "b"}, ejected={"b": 10.0}, now=1.0) is None


def test_pick_leaves_an_exhausted_group_for_any_replica() -> None:
    route = _route({"stable": 1, "canary": 99}, stable=["s1"], canary=["c1"])
    rng = random.Random(3)
    # the canary drew nearly every request; with it tried, the stable replica answers
    assert {pick(route.ids, route.split, {}, rng, tried={"c1"}) for _ in range(100)} == {"s1"}
    assert {pick(route.ids, route.split, {}, rng, ejected={"c1": 9.0}, now=0.0)
            for _ in range(100)} == {"s1"}
