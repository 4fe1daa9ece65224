"""One guarded, timed phase of a background loop (STYLE.md 6: the loop never dies)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Histogram


async def run_guarded(phase: str, fn: Callable[[], Awaitable[Any]], *, seconds: Histogram,
                      errors: Counter, log: logging.Logger, loop_name: str) -> None:
    """Run ``fn``; an exception is logged and counted, never raised; the time is observed."""
    start = time.perf_counter()
    try:
        await fn()
    except asyncio.CancelledError:
        raise
    except Exception:
        errors.labels(phase).inc()
        log.exception("%s phase %r failed; continuing", loop_name, phase)
    finally:
        seconds.labels(phase).observe(time.perf_counter() - start)
