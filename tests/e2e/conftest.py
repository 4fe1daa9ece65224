from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import RunningPlatform, free_port


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A real ``leptonic up`` in a temp data dir; torn down with all its replicas."""
    p = RunningPlatform(tmp_path / "data", free_port())
    p.start()
    try:
        yield p
    finally:
        p.stop()
        p.kill_all_runners()
