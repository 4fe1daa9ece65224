"""core/usage.py: intervals priced at max(request, usage), hours and UTC months, grouping,
prices and budgets checked, thresholds crossed once."""

from __future__ import annotations

import datetime as dt

import pytest

from leptonic.core.usage import (
    DEFAULT_PRICES,
    HOUR_S,
    Amounts,
    BudgetSpec,
    Shape,
    check_price,
    check_resource,
    crossed,
    energy_cost,
    gpu_price,
    hour_slices,
    in_scope,
    interval_amounts,
    month_bounds,
    month_of,
    parse_group,
    replica_run,
    summarize,
)
from leptonic.errors import InvalidInput

PRICES = {"cpu": 0.01, "memory": 0.001, "gpu": 1.0, "gpu:A100": 2.0, "gpu:A100-80GB": 3.0,
          "energy": 0.5}


def test_an_interval_is_billed_at_the_larger_of_request_and_use() -> None:
    asked_more = Shape.billed(2.0, 1024, 0.0, None, used_cpu=0.5, used_mb=100)
    used_more = Shape.billed(0.0, 0, 0.0, None, used_cpu=1.5, used_mb=2048)
    assert (asked_more.cpu, asked_more.memory_mb) == (2.0, 1024)
    assert (used_more.cpu, used_more.memory_mb) == (1.5, 2048)
    a = interval_amounts(Shape(2.0, 2048, 0.5, "A100-SXM4"), 10.0, PRICES)
    assert (a.seconds, a.cpu_s, a.memory_gib_s, a.gpu_s) == (10.0, 20.0, 20.0, 5.0)
    assert a.cost == pytest.approx(20 * 0.01 + 20 * 0.001 + 5 * 2.0)
    assert interval_amounts(Shape(1.0), -5.0, PRICES).seconds == 0.0


def test_a_gpu_is_priced_by_its_longest_priced_model_prefix() -> None:
    assert gpu_price(PRICES, "A100-80GB-SXM") == 3.0
    assert gpu_price(PRICES, "a100-sxm4") == 2.0
    assert gpu_price(PRICES, "T4") == 1.0            # no price of its own: the plain gpu's
    assert gpu_price(PRICES, None) == 1.0
    assert gpu_price(DEFAULT_PRICES, "H100-SXM5") == 0.001525


def test_energy_is_priced_per_kwh() -> None:
    assert energy_cost(3.6e6, PRICES) == pytest.approx(0.5)
    assert energy_cost(-1.0, PRICES) == 0.0
    assert energy_cost(3.6e6, DEFAULT_PRICES) == 0.0     # compute prices pay for power


@pytest.mark.parametrize(("start", "end", "expected"), [
    (0.0, 10.0, [(0.0, 10.0)]),
    (3590.0, 3610.0, [(0.0, 10.0), (3600.0, 10.0)]),
    (100.0, 3 * HOUR_S, [(0.0, 3500.0), (3600.0, 3600.0), (7200.0, 3600.0)]),
    (50.0, 50.0, []),
])
def test_intervals_are_cut_at_utc_hours(start: float, end: float,
                                        expected: list[tuple[float, float]]) -> None:
    assert hour_slices(start, end) == expected
    assert sum(s for _, s in hour_slices(start, end)) == pytest.approx(max(0.0, end - start))


@pytest.mark.parametrize("when", [
    "1970-01-01T00:00:00", "2024-02-29T23:59:59", "2024-03-01T00:00:00",
    "2026-12-31T23:59:59", "2027-01-01T00:00:00", "2000-02-29T12:00:00",
    "2100-02-28T12:00:00", "2026-12-03T05:32:00",
])
def test_utc_months_match_the_calendar(when: str) -> None:
    t = dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC)
    start, end = month_bounds(t.timestamp())
    first = t.replace(day=1, hour=0, minute=0, second=0)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    assert (start, end) == (first.timestamp(), nxt.timestamp())
    assert month_of(t.timestamp()) == t.strftime("%Y-%m")


def test_a_restart_in_a_replica_slot_is_a_new_run() -> None:
    assert replica_run("echo-ab12", 0) != replica_run("echo-ab12", 1)


@pytest.mark.parametrize(("name", "expected"), [
    ("cpu", "cpu"), ("memory", "memory"), ("energy", "energy"), ("gpu", "gpu"),
    ("gpu:a100", "gpu:A100"), ("gpu:H100-SXM5", "gpu:H100-SXM5"),
])
def test_priced_resources(name: str, expected: str) -> None:
    assert check_resource(name) == expected


@pytest.mark.parametrize("name", ["disk", "gpu:", "cpus", "", "gpu:a b"])
def test_an_unknown_resource_is_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidInput, match="unknown resource"):
        check_resource(name)


@pytest.mark.parametrize("value", [-0.01, float("nan"), 2e6])
def test_a_negative_or_absurd_price_is_refused(value: float) -> None:
    with pytest.raises(InvalidInput, match="price of cpu"):
        check_price("cpu", value)
    assert check_price("cpu", 0) == 0.0


def _row(owner_kind: str, owner: str, cost: float, *, user: str | None = None,
         labels: dict[str, str] | None = None, node: str = "n1",
         seconds: float = 10.0, requests: float = 0.0) -> dict[str, object]:
    return {"owner_kind": owner_kind, "owner": owner, "user": user, "labels": labels or {},
            "node": node, "seconds": seconds, "cpu_s": seconds, "memory_gib_s": 0.0,
            "gpu_s": 0.0, "energy_j": 0.0, "requests": requests, "errors": 0.0,
            "cost": cost}


ROWS = [
    _row("deployment", "web", 1.0, user="user:ann", labels={"team": "a"}, requests=100),
    _row("deployment", "web", 2.0, user="user:ann", labels={"team": "a"}),
    _row("deployment", "api", 4.0, user="token:ci", labels={"team": "b"}, node="n2"),
    _row("job", "train", 8.0, user="user:ann"),
    _row("node", "n1", 16.0, node="n1"),
]


def test_usage_groups_by_deployment_job_user_node_and_label() -> None:
    items, total, idle = summarize(ROWS, "deployment")
    assert [(i.key, i.amounts.cost, i.amounts.seconds) for i in items] == [
        ("api", 4.0, 10.0), ("web", 3.0, 20.0)]
    assert items[1].amounts.requests == 100
    assert (total.cost, idle.cost) == (15.0, 16.0)     # idle is never in the total
    assert [(i.key, i.amounts.cost) for i in summarize(ROWS, "job")[0]] == [("train", 8.0)]
    assert [(i.key, i.amounts.cost) for i in summarize(ROWS, "user")[0]] == [
        ("user:ann", 11.0), ("token:ci", 4.0)]
    assert [(i.key, i.amounts.cost) for i in summarize(ROWS, "label:team")[0]] == [
        ("(none)", 8.0), ("b", 4.0), ("a", 3.0)]
    assert [(i.key, i.amounts.cost) for i in summarize(ROWS, "node")[0]] == [
        ("n1", 11.0), ("n2", 4.0)]


@pytest.mark.parametrize("by", ["team", "label:", "label:a b", "replica"])
def test_an_unknown_grouping_is_refused(by: str) -> None:
    with pytest.raises(InvalidInput, match="cannot group usage"):
        parse_group(by)


def test_budget_scopes() -> None:
    web, api, job, idle = ROWS[0], ROWS[2], ROWS[3], ROWS[4]
    assert in_scope("all", web)
    assert in_scope("all", job)
    assert not in_scope("all", idle)
    assert in_scope("deployment:web", web)
    assert not in_scope("deployment:web", api)
    assert in_scope("job:train", job)
    assert not in_scope("job:web", web)
    assert in_scope("user:ann", web)
    assert in_scope("user:user:ann", web)
    assert in_scope("user:token:ci", api)
    assert not in_scope("user:ann", api)
    assert in_scope("label:team=a", web)
    assert not in_scope("label:team=a", api)


@pytest.mark.parametrize(("fields", "word"), [
    ({"monthly": -5}, "monthly"),
    ({"monthly": 0}, "monthly"),
    ({"scope": "team:x"}, "unknown scope"),
    ({"scope": "label:team"}, "unknown scope"),
    ({"alerts": [0]}, "threshold"),
    ({"alerts": []}, "thresholds"),
    ({"action": "delete"}, "action"),
])
def test_a_bad_budget_is_refused_naming_the_field(fields: dict[str, object],
                                                  word: str) -> None:
    body = {"name": "b", "scope": "all", "monthly": 10.0, **fields}
    with pytest.raises(ValueError, match=word):
        BudgetSpec.model_validate(body)


def test_thresholds_are_crossed_once_each() -> None:
    assert crossed(79.0, 100.0, [80, 100], []) == []
    assert crossed(80.0, 100.0, [100, 80], []) == [80]
    assert crossed(150.0, 100.0, [80, 100], [80]) == [100]
    assert crossed(150.0, 100.0, [80, 100], [80, 100]) == []
    assert BudgetSpec(name="b", scope="all", monthly=5, alerts=[100, 80, 80]).alerts == [80, 100]


def test_amounts_add_up() -> None:
    a = Amounts(seconds=1.0, cost=0.5).add({"seconds": 2.0, "cost": 0.25, "requests": 3})
    assert (a.seconds, a.cost, a.requests) == (3.0, 0.75, 3.0)
