"""Unit tier: pure logic, fake backend, fake clock. Real processes are forbidden here.

Loopback sockets are allowed (the gateway's unit tests run tiny in-process servers), but
anything that would start a process fails the test, so a slow or flaky dependency cannot
creep into the fast tier.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any, NoReturn

import pytest


def _forbidden(*_: Any, **__: Any) -> NoReturn:
    raise AssertionError("unit tests must not start processes; move this test to "
                         "tests/integration or tests/e2e")


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _forbidden)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", _forbidden)
    monkeypatch.setattr(asyncio, "create_subprocess_shell", _forbidden)
    monkeypatch.setattr(os, "fork", _forbidden)
    monkeypatch.setattr(os, "system", _forbidden)
