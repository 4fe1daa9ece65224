"""ClusterTraffic: the leader's gateway plus what the followers published, summed so the
counters only grow (first seen counts from then, a restart goes on, a gone follower keeps
what it counted), gauges from live followers only."""

from __future__ import annotations

import json
import math
from typing import Any

from leptonic.core.analysis import N_BUCKETS, TrafficCounters
from leptonic.gateway.proxy import Gateway
from leptonic.gateway.routes import RouteTable
from leptonic.observe.series import GatewayCounts
from leptonic.observe.traffic import ClusterTraffic, add, snapshot


def published(arrived: int, requests: int = 0, errors: int = 0, *, in_flight: float = 0.0,
              outstanding: dict[str, int] | None = None, waiting: int = 0,
              codes: dict[str, float] | None = None) -> dict[str, Any]:
    buckets = [0] * N_BUCKETS
    buckets[0] = requests
    return {"arrived": {"web": arrived}, "held": {"web": waiting},
            "waiting": {"web": waiting} if waiting else {},
            "outstanding": outstanding or {},
            "traffic": {"web": {"2": [requests, errors, buckets]}},
            "series": {"web": {"codes": codes or {"200": float(requests)},
                               "buckets": [["0.005", float(requests)],
                                           ["inf", float(requests)]],
                               "in_flight": in_flight}}}


def test_with_no_follower_it_is_the_local_gateway() -> None:
    gw = Gateway(RouteTable())
    view = ClusterTraffic(gw)
    assert view.outstanding is gw.outstanding
    assert (view.arrived("web"), view.waiting("web"), view.held_total("web")) == (0, 0, 0)
    assert view.traffic("web") == {}
    assert view.merge_series({}) == {}


def test_a_follower_counts_from_when_it_is_first_seen_and_goes_on_past_a_restart() -> None:
    view = ClusterTraffic(Gateway(RouteTable()))
    view.update([("b", 1.0, published(100, requests=100))], now=1.0)
    assert view.arrived("web") == 0                      # its past is not a burst
    view.update([("b", 2.0, published(130, requests=130))], now=2.0)
    assert view.arrived("web") == 30
    assert view.traffic("web")["2"].requests == 30
    view.update([("b", 2.0, published(999))], now=2.5)   # not newer: ignored
    assert view.arrived("web") == 30
    view.update([("b", 3.0, published(5, requests=5))], now=3.0)     # it restarted
    assert view.arrived("web") == 35
    assert view.traffic("web")["2"].requests == 35
    view.update([("c", 3.0, published(7, requests=7))], now=3.0)     # a second follower
    view.update([("c", 4.0, published(17, requests=17))], now=4.0)
    assert view.arrived("web") == 45


def test_gauges_come_from_live_followers_and_counters_stay() -> None:
    view = ClusterTraffic(Gateway(RouteTable()), fresh_s=5.0)
    view.update([("b", 1.0, published(0))], now=1.0)
    view.update([("b", 2.0, published(50, requests=50, outstanding={"web-1": 3}, waiting=2,
                                      in_flight=3.0))], now=2.0)
    assert view.outstanding == {"web-1": 3}
    assert view.waiting("web") == 2
    assert view.merge_series({})["web"].in_flight == 3.0
    view.update([], now=20.0)                            # gone quiet: no gauges
    assert dict(view.outstanding) == {}
    assert view.waiting("web") == 0
    assert view.arrived("web") == 50


def test_traffic_and_series_add_to_the_local_gateway() -> None:
    gw = Gateway(RouteTable())
    view = ClusterTraffic(gw)
    view.update([("b", 1.0, published(0))], now=1.0)
    view.update([("b", 2.0, published(40, requests=40, errors=4,
                                      codes={"200": 36.0, "503": 4.0}))], now=2.0)
    local = TrafficCounters(10, 1, tuple([10] + [0] * (N_BUCKETS - 1)))
    assert view.traffic("web")["2"] == TrafficCounters(
        40, 4, tuple([40] + [0] * (N_BUCKETS - 1)))
    assert add(local, view.traffic("web")["2"]).requests == 50
    mine = {"web": GatewayCounts(codes={"200": 10.0}, buckets=[(0.005, 10.0),
                                                               (math.inf, 10.0)])}
    merged = view.merge_series(mine)["web"]
    assert merged.codes == {"200": 46.0, "503": 4.0}
    assert merged.buckets == [(0.005, 50.0), (math.inf, 50.0)]


def test_what_a_gateway_publishes_reads_back_after_json() -> None:
    gw = Gateway(RouteTable())
    gw._arrived["web"] = 12
    gw._outstanding["web-1"] = 2
    gw.metrics.request("web", 200)
    gw._record("web", "", 200, 0.003)     # what _forward counts for an answer
    data = json.loads(json.dumps(snapshot(gw)))
    assert data["arrived"] == {"web": 12}
    assert data["outstanding"] == {"web-1": 2}
    assert data["series"]["web"]["codes"] == {"200": 1.0}
    assert ["inf", 1.0] in data["series"]["web"]["buckets"]
    assert ["0.002", 0.0] in data["series"]["web"]["buckets"]   # the analysis' bounds
    assert ["0.003", 1.0] in data["series"]["web"]["buckets"]
    view = ClusterTraffic(Gateway(RouteTable()))
    view.update([("b", 1.0, data)], now=1.0)
    assert view.outstanding == {"web-1": 2}
