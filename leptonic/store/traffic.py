"""Rows of ``gateway_traffic`` (migration 0012): each follower's gateway counters, written
by the follower about once a second and read by the leader. Same rules as ``Store``:
synchronous, one transaction per call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select

from leptonic.store import tables as t
from leptonic.store.base import Repository


class TrafficStore(Repository):
    """The published gateway counters, on the store's engine."""

    def publish(self, holder: str, data: Mapping[str, Any], now: float) -> None:
        with self._tx() as conn:
            t.upsert(conn, t.gateway_traffic, {"holder": holder},
                     {"updated_at": now, "data": dict(data)})

    def others(self, holder: str, since: float) -> list[tuple[str, float, dict[str, Any]]]:
        """Every other control plane's row written since ``since``."""
        c = t.gateway_traffic.c
        with self._tx() as conn:
            rows = conn.execute(select(c.holder, c.updated_at, c.data).where(
                (c.holder != holder) & (c.updated_at >= since))).all()
        return [(r.holder, float(r.updated_at), r.data) for r in rows]

    def prune(self, before: float) -> int:
        """Forget the rows of control planes gone since ``before``."""
        with self._tx() as conn:
            return int(conn.execute(delete(t.gateway_traffic).where(
                t.gateway_traffic.c.updated_at < before)).rowcount or 0)
