"""Waiting on the in-process platform and checking its problem+json answers (shared by the
integration tests)."""

from __future__ import annotations

import time
from typing import Any

PROBLEM = "application/problem+json"


def wait(predicate: Any, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def problem(resp: Any, status: int, *words: str) -> str:
    """Assert a problem+json answer of ``status`` whose detail names ``words``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    detail = str(resp.json()["detail"])
    for word in words:
        assert word in detail, detail
    return detail
