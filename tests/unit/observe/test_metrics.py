"""The aggregated /metrics: replica families relabelled, cardinality capped, process and
node gauges, all from one snapshot."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from leptonic.core.models import AutoscalingSpec, Deployment, DeploymentSpec, DeploymentStatus
from leptonic.observe.metrics import (
    MAX_HANDLERS,
    NodeStat,
    PlatformCollector,
    ReplicaScrape,
    Snapshot,
    queue_depth,
    relabel,
)
from leptonic.observe.series import ReplicaStat

RUNNER = """# HELP leptonic_photon_requests_total Handler requests by status code
# TYPE leptonic_photon_requests_total counter
leptonic_photon_requests_total{code="200",handler="echo"} 7.0
# HELP leptonic_photon_requests_created Handler requests by status code
# TYPE leptonic_photon_requests_created gauge
leptonic_photon_requests_created{code="200",handler="echo"} 1.7e+09
# HELP leptonic_photon_batch_queue_depth Requests waiting for a batch
# TYPE leptonic_photon_batch_queue_depth gauge
leptonic_photon_batch_queue_depth{handler="embed"} 3.0
# HELP process_cpu_seconds_total not re-exported
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.0
"""


def scrape(text: str = RUNNER, replica: str = "echo-1") -> ReplicaScrape:
    return ReplicaScrape("echo", replica, list(text_string_to_metric_families(text)), ok=True)


def test_relabel_adds_deployment_and_replica_and_drops_the_rest() -> None:
    fams = {f.name: f for f in relabel(scrape())}
    assert set(fams) == {"leptonic_photon_requests", "leptonic_photon_batch_queue_depth"}
    [sample] = fams["leptonic_photon_requests"].samples
    assert sample.labels == {"deployment": "echo", "replica": "echo-1", "code": "200",
                             "handler": "echo"}
    assert queue_depth(scrape()) == 3.0


def test_handlers_past_the_cap_are_dropped() -> None:
    lines = ["# TYPE leptonic_photon_in_flight gauge"]
    lines += [f'leptonic_photon_in_flight{{handler="h{i}"}} 1' for i in range(MAX_HANDLERS + 5)]
    [fam] = relabel(scrape("\n".join(lines) + "\n"))
    assert len({s.labels["handler"] for s in fam.samples}) == MAX_HANDLERS


def test_collector_serves_the_snapshot_in_one_exposition() -> None:
    registry = CollectorRegistry()
    collector = PlatformCollector()
    registry.register(collector)
    d = Deployment(name="echo", spec=DeploymentSpec(photon="builtin:echo", replicas=2),
                   status=DeploymentStatus(ready_replicas=1, restarts=4))
    collector.snapshot = Snapshot(
        at=123.0, scrapes=[scrape(replica="echo-1"), scrape(replica="echo-2")],
        replicas=[ReplicaStat("echo", "echo-1", True, 1, 2.5, 1e6)],
        deployments=[d], nodes=[NodeStat("local", True, 1.0, 50.0, 25.0, 1e9, 0.5)],
        alerts=[("slow", "deployment/echo", "firing")])
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}   # it parses
    assert len(families["leptonic_photon_requests"].samples) == 2, "one family, both replicas"
    for line in ('leptonic_replica_cpu_seconds_total{deployment="echo",replica="echo-1"} 2.5',
                 'leptonic_replica_memory_rss_bytes{deployment="echo",replica="echo-1"} 1e+06',
                 'leptonic_deployment_replicas_desired{deployment="echo"} 2.0',
                 'leptonic_deployment_restarts{deployment="echo"} 4.0',
                 'leptonic_node_cpu_utilisation{node="local"} 0.5',
                 'leptonic_node_up{node="local"} 1.0',
                 'leptonic_alert_firing{rule="slow",target="deployment/echo"} 1.0',
                 'leptonic_observe_last_sample_timestamp_seconds 123.0'):
        assert line in text
    assert "process_cpu_seconds_total" not in text


def test_desired_is_the_autoscalers_count_for_an_autoscaled_deployment() -> None:
    """One meaning of "desired" (alerts, gauges, series, CLI): spec.replicas is not what an
    autoscaled deployment aims for."""
    registry = CollectorRegistry()
    collector = PlatformCollector()
    registry.register(collector)
    fixed = Deployment(name="fixed", spec=DeploymentSpec(photon="builtin:echo", replicas=2),
                       status=DeploymentStatus(desired_replicas=0))
    auto = Deployment(name="auto", spec=DeploymentSpec(
        photon="builtin:echo", replicas=1,
        autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=8)),
        status=DeploymentStatus(desired_replicas=5, ready_replicas=3))
    assert (fixed.desired_replicas, auto.desired_replicas) == (2, 5)
    collector.snapshot = Snapshot(at=1.0, scrapes=[], replicas=[], deployments=[fixed, auto],
                                  nodes=[], alerts=[])
    text = generate_latest(registry).decode()
    assert 'leptonic_deployment_replicas_desired{deployment="auto"} 5.0' in text
    assert 'leptonic_deployment_replicas_desired{deployment="fixed"} 2.0' in text
