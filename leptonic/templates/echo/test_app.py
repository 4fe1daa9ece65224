"""Tests of the photon: its methods directly, and its HTTP app in-process."""

from __future__ import annotations

from app import Echo
from starlette.testclient import TestClient

from leptonic.photon.runner import build_app


def test_echo_answers_the_text() -> None:
    photon = Echo()
    photon.init()
    assert photon.echo(text="hi") == "hi"


def test_http_handlers() -> None:
    photon = Echo()
    photon.init()
    client = TestClient(build_app(photon, ready=True))
    assert client.post("/echo", json={"text": "hi"}).json() == "hi"
    assert client.post("/info", json={}).json() == {"calls": 1}
    assert client.post("/echo", json={}).status_code == 422
