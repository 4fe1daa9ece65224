"""The Grafana dashboard in docs/ only uses series leptonic really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from leptonic.config import Settings
from leptonic.core.models import Deployment, DeploymentSpec
from leptonic.observe.metrics import NodeStat, ReplicaScrape, Snapshot
from leptonic.observe.series import ReplicaStat
from leptonic.photon.runner import _RunnerMetrics
from leptonic.platform import Platform
from leptonic.runtime.fake import FakeBackend, FakeProber

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "leptonic-dashboard.json"


def exported_names(tmp_path: Path) -> set[str]:
    platform = Platform(Settings(data_dir=tmp_path / "data"), backend=FakeBackend(),
                        prober=FakeProber())
    runner = _RunnerMetrics()
    replica = ReplicaScrape("echo", "echo-1", list(runner.registry.collect()), ok=True)
    for fam in replica.families:      # an empty family exports nothing: give it a sample
        if not fam.samples:
            fam.add_sample(fam.name, {"handler": "echo"}, 0.0)
    platform.observe.collector.snapshot = Snapshot(
        at=1.0, scrapes=[replica], replicas=[ReplicaStat("echo", "echo-1", True, 0, 1.0, 1.0)],
        deployments=[Deployment(name="echo", spec=DeploymentSpec(photon="builtin:echo"))],
        nodes=[NodeStat("local", True, 0.0, 1.0, 1.0, 1.0, 1.0)],
        alerts=[("r", "deployment/echo", "firing")])
    from prometheus_client import generate_latest

    text = generate_latest(platform.registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    for fam in runner.registry.collect():
        names.add(fam.name)
    suffixed = set()
    for n in names:
        suffixed |= {n, f"{n}_total", f"{n}_bucket", f"{n}_count", f"{n}_sum"}
    return suffixed


def test_every_series_the_dashboard_queries_is_exported(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 14
    used = {m for e in exprs for m in re.findall(r"\bleptonic_[a-z0-9_]+", e)}
    missing = used - exported_names(tmp_path)
    assert not missing, f"the dashboard queries series leptonic does not export: {missing}"
