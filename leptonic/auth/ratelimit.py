"""In-memory rate limits: token buckets (gateway requests per token) and failure windows
(login attempts per user and per address). Time comes in as ``now``."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``rate`` requests per second with bursts up to ``max(1, rate)`` per key."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys

    def take(self, key: str, rate: float, now: float) -> float:
        """0.0 if a request may go now, else the seconds until one may."""
        burst = max(1.0, rate)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()
                b = self._buckets[key] = _Bucket(burst, now)
            b.tokens = min(burst, b.tokens + (now - b.updated) * rate)
            b.updated = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate


class FailureWindow:
    """At most ``limit`` failures per key within ``window_s``; success does not reset
    (an attacker who knows one password must not gain more guesses on others)."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, now: float) -> int:
        """0 if the key may try now, else whole seconds to wait."""
        with self._lock:
            q = self._fails.get(key)
            if not q:
                return 0
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) < self.limit:
                return 0
            return max(1, math.ceil(q[0] + self.window_s - now))

    def fail(self, key: str, now: float) -> None:
        with self._lock:
            if key not in self._fails and len(self._fails) >= self.max_keys:
                self._fails.clear()
            self._fails.setdefault(key, deque()).append(now)
