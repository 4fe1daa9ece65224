"""The HTTP prober's verdicts, including a replica that says all its workers are stuck."""

from __future__ import annotations

import httpx
import pytest

from leptonic.controller.probes import HttpProber, ProbeResult


@pytest.mark.parametrize(("status", "headers", "verdict"), [
    (200, {}, ProbeResult.READY),
    (503, {}, ProbeResult.NOT_READY),                         # loading: alive, no traffic
    (503, {"x-leptonic-stuck": "1"}, ProbeResult.NO_ANSWER),  # hung for good: replace it
])
async def test_probe_verdicts(status: int, headers: dict[str, str],
                              verdict: ProbeResult) -> None:
    prober = HttpProber()
    await prober.aclose()
    prober._client = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda _req: httpx.Response(status, headers=headers)))
    assert await prober.probe("http://replica") is verdict
    await prober.aclose()
