"""Dynamic batching end to end: a real ``leptonic up``, real replica processes, real HTTP
through the gateway, for the ready-made embedding photon and the iris example."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest

from leptonic import AsyncClient
from leptonic.photon.builtin.sentence_embedding import load_model
from tests.e2e.harness import REPO, RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORDS = ["river", "engine", "violin", "harvest", "galaxy", "pepper", "lantern", "glacier",
         "orbit", "meadow", "copper", "thunder", "saddle", "pixel", "canyon", "ember"]


def sentence(i: int) -> str:
    """200 distinct sentences of varied length (so batches mix padding lengths)."""
    words = [WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 9)]
    return f"Sentence {i}: " + " ".join(words) + "."


def batch_counts(metrics: str, handler: str) -> tuple[float, float]:
    """(batches run, items in them) for ``handler`` from a replica's /metrics text."""
    def value(name: str) -> float:
        m = re.search(rf'^{name}{{handler="{handler}"}} (\S+)$', metrics, re.M)
        assert m, f"{name} for {handler} not in /metrics"
        return float(m.group(1))
    return (value("leptonic_photon_batch_size_count"),
            value("leptonic_photon_batch_size_sum"))


async def test_sentence_embedding_answers_200_concurrent_clients_exactly(
        platform: RunningPlatform) -> None:
    p = platform
    p.cli("deployment", "create", "--name", "emb", "--photon", "builtin:sentence-embedding",
          "--env", "TORCH_NUM_THREADS=1", "--timeout", "240")
    [replica] = p.wait_ready("emb", 1)
    texts = [sentence(i) for i in range(200)]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(headers=p.headers, timeout=120, limits=limits) as client:
        responses = await asyncio.gather(*(
            client.post(f"{p.url}/run/emb/embed", json={"text": t}) for t in texts))
        metrics = (await client.get(f"{replica['url']}/metrics")).text
    failed = [(i, r.status_code, r.text[:200]) for i, r in enumerate(responses)
              if r.status_code != 200]
    assert failed == []
    reference = load_model().encode(texts, batch_size=1)   # the model, one at a time
    got = np.array([r.json() for r in responses])
    assert got.shape == (200, 384)
    np.testing.assert_allclose(got, reference, atol=1e-4)

    batches, items = batch_counts(metrics, "embed")
    assert items == 200
    assert batches < 200 / 4, "concurrent requests share model calls"
    assert 'leptonic_photon_batch_queue_wait_seconds_count{handler="embed"} 200.0' in metrics


async def test_iris_example_through_the_platform(platform: RunningPlatform) -> None:
    p = platform
    p.cli("photon", "create", "--name", "iris", "-m", "app.py:Iris",
          "--path", str(REPO / "examples" / "iris"))
    p.cli("deployment", "create", "--name", "iris", "--photon", "iris")
    [replica] = p.wait_ready("iris", 1)
    setosa = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
              "petal_width": 0.2}
    virginica = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2,
                 "petal_width": 2.3}
    async with AsyncClient(p.url, p.token) as client:
        iris = client.deployment("iris")
        answers = await asyncio.gather(*(iris.classify(flower=f)
                                         for f in [setosa, virginica] * 20))
        assert await iris.species() == ["setosa", "versicolor", "virginica"]
    assert [a["species"] for a in answers] == ["setosa", "virginica"] * 20
    assert all(0.5 < a["probability"] <= 1 for a in answers)

    async with httpx.AsyncClient(headers=p.headers, timeout=30) as http:
        bad = await http.post(f"{p.url}/run/iris/classify",
                              json={"flower": {**setosa, "petal_width": -1}})
        metrics = (await http.get(f"{replica['url']}/metrics")).text
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    batches, items = batch_counts(metrics, "classify")
    assert items == 40
    assert batches < 40
