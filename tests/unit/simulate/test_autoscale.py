"""The autoscaling replay on synthetic traces with known answers, and the request-trace
readers' bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from leptonic.core.models import AutoscalingSpec
from leptonic.simulate import autoscale as sim
from leptonic.simulate import traces

SPEC = AutoscalingSpec(min_replicas=1, max_replicas=8, target_concurrency=1)


def test_steady_load_within_one_replica_never_misses() -> None:
    """One request a second of 0.5 s: one replica (2 slots) serves all with no wait."""
    work = [sim.Work(float(i), 0.5) for i in range(600)]
    r = sim.replay(work, "reactive", SPEC, slo_ms=100)
    assert (r.requests, r.slo_miss_minutes, r.cold_starts) == (600, 0, 0)
    assert r.p99_ms == pytest.approx(500, abs=1)
    assert r.p99_wait_ms == 0
    assert r.replica_hours == pytest.approx(600 / 3600, rel=0.02)


def test_a_burst_waits_for_the_upscale_delay_reactive() -> None:
    """8 requests a second of 1 s (8 in flight) from t=0 on one replica of 2 slots: the
    reactive autoscaler waits out its 30 s upscale delay, so the first minute misses."""
    work = [sim.Work(i / 8, 1.0) for i in range(8 * 120)]
    spec = SPEC.model_copy(update={"upscale_delay_s": 30})
    r = sim.replay(work, "reactive", spec, slo_ms=1000)
    assert r.slo_miss_minutes >= 1
    assert r.max_replicas == 8
    quick = sim.replay(work, "reactive", spec.model_copy(update={"upscale_delay_s": 0}),
                       slo_ms=1000)
    assert quick.slo_miss_minutes < r.slo_miss_minutes


def test_predictive_leads_a_periodic_load() -> None:
    """A square wave (60 s busy at 6 req/s, 60 s idle) for 20 minutes: once the period is
    learned, predictive is up before each busy half and misses fewer minutes."""
    work = [sim.Work(t + i / 6, 1.0) for t in range(0, 1200, 120) for i in range(360)]
    spec = AutoscalingSpec(min_replicas=1, max_replicas=8, target_concurrency=1,
                           upscale_delay_s=30, downscale_delay_s=20, look_back_s=10)
    reactive = sim.replay(work, "reactive", spec, slo_ms=1000)
    predictive = sim.replay(work, "predictive", spec, slo_ms=1000)
    assert predictive.forecast_mape is not None
    assert predictive.slo_miss_minutes < reactive.slo_miss_minutes


def test_token_service_model() -> None:
    assert sim.token_service_s(1000, 10) == pytest.approx(0.05 + 0.1 + 0.2)


def test_every_policy_runs() -> None:
    work = [sim.Work(float(i), 0.5) for i in range(100)]
    for policy in sim.SimPolicy:
        assert sim.replay(work, policy, SPEC).requests == 100


def write(path: Path, text: str) -> str:
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return str(path)


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("azure-llm", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "no rows"),
    ("azure-llm", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,1,2\n"
                  "soon,1,2\n", "line 3: column TIMESTAMP: 'soon' is not a timestamp"),
    ("alibaba-lora", "gmt_create,exec_time_seconds\n", "no rows"),
    ("alibaba-lora", "gmt_create\n2024-11-15 16:57:50\n", "missing column exec_time_seconds"),
    ("qps-series", "timestamp_anon,value\n1.0,abc\n", "line 2: column value: 'abc'"),
    ("qps-series", "timestamp,value\n", "no rows"),
])
def test_bad_request_traces(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    path = write(tmp_path / "t.csv", text)
    kind = "rates" if fmt == "qps-series" else "requests"
    with pytest.raises(traces.TraceError, match=message) as info:
        traces.load(f"{fmt}:{path}", kind)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_readers(tmp_path: Path) -> None:
    azure = write(tmp_path / "a.csv.gz", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                  "2023-11-16 18:17:04.0319600,3180,8\n2023-11-16 18:17:03.9799600,4808,10\n")
    reqs = traces.load(f"azure-llm:{azure}", "requests")
    assert [(r.at_s, r.context_tokens) for r in reqs] == [(0.0, 4808), (0.052, 3180)]
    lora = write(tmp_path / "l.csv", "gmt_create,exec_time_seconds,x\n"
                 "2024-11-15 16:57:50,32.0,a\n2024-11-15 16:58:00,,b\n")
    reqs = traces.load(f"alibaba-lora:{lora}", "requests")
    assert [(r.at_s, r.service_s) for r in reqs] == [(0.0, 32.0), (10.0, None)]
    qps = write(tmp_path / "q.csv", "timestamp_anon,value,container_ip,request_type\n"
                "100,1.5,a,G\n100,0.5,b,G\n157,2,,API\n")
    rates = traces.load(f"qps-series:{qps}", "rates")
    assert [(r.at_s, r.rate) for r in rates] == [(0.0, 2.0), (57.0, 2.0)]
    work = sim.rates_work(rates, 1.0, seed=1)
    assert work == sim.rates_work(rates, 1.0, seed=1), "seeded: the same arrivals"
    assert 150 < len(work) < 300                   # ~2/s over 114 s


@pytest.mark.parametrize("path", [
    "traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv.gz",
    "traces/alibaba-genai-v2026/lora_request_trace.csv.gz",
    "traces/alibaba-genai-v2026/qps.csv.gz",
])
def test_the_shipped_traces_read(path: str) -> None:
    fmt = {"Azure": "azure-llm", "lora": "alibaba-lora", "qps": "qps-series"}
    name = next(v for k, v in fmt.items() if k in path)
    kind = "rates" if name == "qps-series" else "requests"
    assert len(traces.load(f"{name}:{path}", kind)) > 1000
