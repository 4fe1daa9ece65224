"""Calls the server may take long over wait as long as the server allows, whatever the
client's own timeout (photon create inspects for up to INSPECT_TIMEOUT_S)."""

from __future__ import annotations

import httpx

from leptonic.client._base import Call
from leptonic.config import INSPECT_TIMEOUT_S


def test_min_timeout_raises_a_shorter_client_timeout_only() -> None:
    short = httpx.Client(base_url="http://x", timeout=30)
    long_ = httpx.Client(base_url="http://x", timeout=600)
    call = Call("POST", "/photons", min_timeout_s=INSPECT_TIMEOUT_S + 30)
    assert call.request(short).extensions["timeout"]["read"] == INSPECT_TIMEOUT_S + 30
    assert call.request(long_).extensions["timeout"]["read"] == 600
    assert Call("GET", "/photons").request(short).extensions["timeout"]["read"] == 30
    short.close()
    long_.close()
