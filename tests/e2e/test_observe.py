"""Observability end to end on a real ``leptonic up``: the aggregated ``/metrics`` scraped
by a real Prometheus, the built-in series through the API and the CLI, an alert that
fires and resolves against a local webhook receiver (first delivery refused, so it is
retried), and replica logs rotated while the replica runs, searched and followed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import REPO, RunningPlatform, free_port, running_platform
from tests.e2e.sysdeps import require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST = {"LEPTONIC_METRICS_INTERVAL": "0.5s", "LEPTONIC_NOTIFY_BACKOFF": "0.3s",
        "LEPTONIC_LOG_MAX_BYTES": "64k", "LEPTONIC_LOG_BACKUPS": "2",
        "LEPTONIC_LOG_CHECK_INTERVAL": "0.3s"}
SECRET = "s3cr3t-hook-token"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    with running_platform(tmp_path / "data", FAST) as p:
        yield p


class Receiver:
    """A local webhook endpoint: refuses the first delivery (500), records the rest."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if outer.refused == 0:
                    outer.refused += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, status: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.received:
                if msg["status"] == status:
                    return msg
            time.sleep(0.1)
        raise TimeoutError(f"no {status} notification; got {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _prometheus(tmp: Path, target_port: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: leptonic\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
    with (tmp / "prometheus.log").open("wb") as log:   # the child keeps its own descriptor
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
    return proc, port


def _prom_query(port: int, query: str, timeout: float = 40.0) -> float:
    """Wait until Prometheus answers ``query`` with a positive value; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query},
                          timeout=5)
            last = r.json()
            result = last.get("data", {}).get("result", [])
            if result and float(result[0]["value"][1]) > 0:
                return float(result[0]["value"][1])
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prometheus: {query!r} never positive; last answer {last}")


def _events(p: RunningPlatform, name: str) -> list[dict[str, Any]]:
    return list(p.api("GET", f"/deployments/{name}/events", params={"limit": 200}).json())


def test_metrics_prometheus_series_and_alert_lifecycle(
        platform: RunningPlatform, tmp_path: Path) -> None:
    p = platform
    prom, prom_port = _prometheus(tmp_path, p.port)
    receiver = Receiver()
    try:
        p.cli("deployment", "create", "--name", "echo", "--photon", "builtin:echo",
              "--replicas", "2")
        out = p.cli("alert", "create", "--deployment", "echo", "--name", "busy",
                    "--expr", "requests_per_s > 5", "--for", "1s",
                    "--notify", f"webhook:{receiver.url}", "-o", "json")
        assert SECRET not in out.stdout, "notification targets are shown redacted"

        # traffic for a few seconds: the rule goes pending, then fires
        async def traffic(seconds: float) -> None:
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                res = await p.load("echo", "echo", 40, concurrency=4)
                assert res.failed == []
                await asyncio.sleep(0.1)

        asyncio.run(traffic(4.0))
        firing = receiver.wait_for("firing")
        assert receiver.refused == 1, "the first delivery was refused and retried"
        assert firing["rule"] == "busy"
        assert firing["target"] == "deployment/echo"
        assert "FIRING" in firing["text"]           # Slack-compatible body
        # no traffic: the rule resolves
        resolved = receiver.wait_for("resolved")
        assert resolved["rule"] == "busy"
        time.sleep(1.5)
        statuses = [m["status"] for m in receiver.received]
        assert statuses == ["firing", "resolved"], "each move notifies exactly once"
        reasons = [e["reason"] for e in _events(p, "echo")]
        for reason in ("AlertRuleCreated", "AlertFiring", "AlertNotified", "AlertResolved"):
            assert reason in reasons
        notes = p.api("GET", "/alerts/busy/notifications").json()
        assert {n["status"] for n in notes} == {"sent"}
        assert any(n["attempts"] == 2 for n in notes)

        # the aggregated /metrics: per replica and handler, process and node stats
        text = httpx.get(f"{p.url}/metrics", timeout=10).text
        for name in ("leptonic_photon_requests_total", "leptonic_replica_memory_rss_bytes",
                     "leptonic_replica_cpu_seconds_total"):
            series = [line for line in text.splitlines() if line.startswith(name + "{")]
            assert series, name
            assert all('deployment="echo"' in s and 'replica="echo-' in s for s in series)
        assert any('handler="echo"' in line and 'code="200"' in line for line in
                   text.splitlines() if line.startswith("leptonic_photon_requests_total"))
        assert "_created" not in text.split("leptonic_photon_requests_total", 1)[1][:200]
        assert 'leptonic_deployment_replicas_ready{deployment="echo"} 2.0' in text
        assert 'leptonic_node_cpu_utilisation{node="local"}' in text
        assert 'leptonic_controller_phase_seconds_bucket' in text
        assert 'leptonic_alert_firing{rule="busy",target="deployment/echo"} 0.0' in text

        # a real Prometheus scraped it
        assert _prom_query(prom_port, 'sum(leptonic_gateway_requests_total'
                                      '{deployment="echo",code="200"})') >= 100
        assert _prom_query(prom_port, 'sum(leptonic_photon_requests_total'
                                      '{deployment="echo",handler="echo"})') >= 100
        assert _prom_query(prom_port, 'count(leptonic_replica_up{deployment="echo"})') == 2
        # every query of the Grafana dashboard in docs/ is valid PromQL for this Prometheus
        dash = json.loads((REPO / "docs" / "grafana" / "leptonic-dashboard.json").read_text())
        for panel in dash["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$deployment", ".*")
                r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query",
                              params={"query": expr}, timeout=5)
                assert r.json()["status"] == "success", (panel["title"], r.text)

        # the built-in series, through the API and the CLI
        q = p.api("GET", "/metrics/query", params={"deployment": "echo", "since": "5m"}).json()
        assert q["resolution_s"] == 0
        assert max(v or 0 for v in q["values"]["requests_per_s"]) > 5
        assert max(v or 0 for v in q["values"]["p99_latency_ms"]) > 0
        out = p.cli("deployment", "metrics", "echo", "--since", "1h", "-o", "json")
        cli = json.loads(out.stdout)
        assert cli["series"] == "deployment/echo"
        assert len(cli["t"]) >= 5
        table = p.cli("deployment", "metrics", "echo", "--since", "1h").stdout
        assert "requests_per_s" in table
        assert "p99_latency_ms" in table
        p.cli("alert", "delete", "busy")
        assert SECRET not in p.read_log(), "the webhook token never reaches the log"
        assert all(SECRET not in e["message"] for e in _events(p, "echo"))
    finally:
        receiver.close()
        prom.terminate()
        prom.wait(10)


def test_logs_rotate_while_running_search_and_follow(platform: RunningPlatform) -> None:
    p = platform
    p.cli("photon", "create", "--name", "chatty", "-m", "chatty.py:Chatty",
          "--path", str(REPO / "tests" / "e2e" / "photons"))
    p.cli("deployment", "create", "--name", "chatty", "--photon", "chatty")
    [replica] = p.wait_ready("chatty", 1)
    log_path = Path(replica["log_path"])

    def say(text: str, n: int) -> None:
        r = httpx.post(f"{p.url}/run/chatty/say", json={"text": text, "n": n},
                       headers=p.headers, timeout=30)
        assert r.status_code == 200, r.text

    # ~100 bytes a line: each burst is over the 64 KiB limit, so the file rotates
    for burst in range(4):
        say(f"BURST{burst}", 1000)
        time.sleep(0.8)
    say("AFTERROTATE", 3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "AFTERROTATE" not in log_path.read_text():
        time.sleep(0.1)
    assert "AFTERROTATE" in log_path.read_text(), "the running replica writes on"
    rotated = sorted(log_path.parent.glob(log_path.name + ".*"))
    assert [r.name for r in rotated] == [log_path.name + ".1", log_path.name + ".2"]
    sizes = [log_path.stat().st_size, *(r.stat().st_size for r in rotated)]
    assert all(s < 64 * 1024 + 120_000 for s in sizes), sizes
    assert sum(sizes) < 4 * 100_000 + 3 * 64 * 1024, "bounded: BURST0 is gone"

    found = p.cli("deployment", "logs", "chatty", "--grep", "AFTERROTATE line [0-9]",
                  "--tail", "10").stdout.splitlines()
    assert len(found) == 3
    assert all(line.startswith(f"[{replica['id']}] AFTERROTATE") for line in found)
    bad = p.cli("deployment", "logs", "chatty", "--grep", "(", check=False)
    assert bad.returncode == 1
    assert "invalid grep pattern" in bad.stderr

    # --follow --grep streams only the matching new lines
    follower = subprocess.Popen(
        [sys.executable, "-m", "leptonic", "deployment", "logs", "chatty", "--follow",
         "--grep", "NEEDLE", "--tail", "0"], env=p.env(), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        say("HAY", 5)
        say("NEEDLE", 2)
        lines = [follower.stdout.readline().strip() for _ in range(2)] \
            if follower.stdout else []
    finally:
        follower.terminate()
        follower.wait(10)
        if follower.stdout:
            follower.stdout.close()
    assert all("NEEDLE line" in line for line in lines), lines
    assert len(lines) == 2
