"""Tests of the photon: its methods directly, and its HTTP app in-process."""

from __future__ import annotations

import pytest
from app import Model
from starlette.testclient import TestClient

from leptonic.photon.runner import build_app


def test_predicts_probabilities() -> None:
    photon = Model()
    photon.init()
    (probs,) = photon.predict([[0.1, 0.2, 0.3, 0.4]])
    assert len(probs) == 2
    assert sum(probs) == pytest.approx(1.0)
    client = TestClient(build_app(photon, ready=True))
    r = client.post("/predict", json={"features": [0.1, 0.2, 0.3, 0.4]})
    assert r.json() == pytest.approx(probs)
