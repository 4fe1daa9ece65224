"""The route table and its upstream entries."""

from __future__ import annotations

import pytest

from leptonic.errors import InvalidInput
from leptonic.gateway.__main__ import parse_routes
from leptonic.gateway.routes import RouteTable, Upstream


def ups(*ids: str) -> list[Upstream]:
    return [Upstream(i, f"http://127.0.0.1:{9000 + n}") for n, i in enumerate(ids)]


def test_unknown_known_empty_and_filled() -> None:
    table = RouteTable()
    assert table.get("echo") is None
    table.set_routes("echo", [])
    assert table.get("echo") == []
    table.set_routes("echo", ups("r1", "r2"))
    assert [u.replica_id for u in table.get("echo") or []] == ["r1", "r2"]
    table.remove("echo")
    assert table.get("echo") is None
    table.remove("echo")        # no-op


def test_replace_all_drops_what_is_not_listed() -> None:
    table = RouteTable({"a": ups("a1"), "b": ups("b1")})
    table.replace_all({"b": ups("b2"), "c": []})
    assert table.deployments() == ["b", "c"]
    assert table.get("a") is None
    assert [u.replica_id for u in table.get("b") or []] == ["b2"]


def test_route_precomputes_ids_and_lookup() -> None:
    table = RouteTable({"echo": ups("r1", "r2")})
    route = table.route("echo")
    assert route is not None
    assert route.ids == ("r1", "r2")
    assert route.by_id["r2"].port == 9001
    assert route.by_id["r1"].host_line == b"host: 127.0.0.1:9000\r\n"


def test_reads_are_snapshots() -> None:
    table = RouteTable({"echo": ups("r1")})
    before = table.route("echo")
    got = table.get("echo")
    assert got is not None
    got.clear()                                   # the caller's copy, not the table's
    table.set_routes("echo", ups("r2"))
    assert before is not None
    assert before.ids == ("r1",)
    assert [u.replica_id for u in table.get("echo") or []] == ["r2"]
    assert table.version == 2


@pytest.mark.parametrize("url", ["127.0.0.1:80", "https://h:1", "http://h", "http://h:1/x",
                                 "http://:80", "http://h:1?q=1"])
def test_bad_upstream_urls_are_rejected(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"http://HOST:PORT|path or query"):
        Upstream("r1", url)


def test_duplicate_replica_ids_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="more than once"):
        RouteTable().set_routes("echo", [Upstream("r", "http://h:1"), Upstream("r", "http://h:2")])


def test_parse_routes_from_the_command_line() -> None:
    routes = parse_routes(["echo=http://127.0.0.1:1", "echo=http://127.0.0.1:2/",
                           "other=http://127.0.0.1:3"])
    assert [(u.replica_id, u.url) for u in routes["echo"]] == [
        ("echo-0", "http://127.0.0.1:1"), ("echo-1", "http://127.0.0.1:2")]
    assert [u.replica_id for u in routes["other"]] == ["other-0"]
    with pytest.raises(SystemExit):
        parse_routes(["echo"])
