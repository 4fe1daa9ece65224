"""Tests of the photon: its methods directly, and its HTTP app in-process."""

from __future__ import annotations

import math

from app import Embedder
from starlette.testclient import TestClient

from leptonic.photon.runner import build_app


def test_embeddings_have_384_dimensions_and_similar_texts_are_close() -> None:
    photon = Embedder()
    photon.init()
    cat, kitten, car = photon.embed(["a cat", "a kitten", "a car"])
    assert len(cat) == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.prod(
            math.sqrt(sum(x * x for x in v)) for v in (a, b))

    assert cos(cat, kitten) > cos(cat, car)
    client = TestClient(build_app(photon, ready=True))
    assert len(client.post("/embed", json={"text": "hello"}).json()) == 384
