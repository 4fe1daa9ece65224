"""A clock tests move by hand: policies and loops take ``now`` from it."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
