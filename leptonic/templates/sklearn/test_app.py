"""Tests of the photon: its methods directly, and its HTTP app in-process."""

from __future__ import annotations

from app import Classifier, Flower
from starlette.testclient import TestClient

from leptonic.photon.runner import build_app

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_classifies_a_setosa() -> None:
    photon = Classifier()
    photon.init()
    assert photon.classify([Flower(**SETOSA)]) == ["setosa"]
    client = TestClient(build_app(photon, ready=True))
    assert client.post("/classify", json={"flower": SETOSA}).json() == "setosa"
