"""Rows of ``energy_totals`` (migration 0008): the running joules of the live energy
accounting per node and per deployment. Same rules as ``Store``: synchronous, one
transaction per call."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from leptonic.store import tables as t
from leptonic.store.base import Repository


class EnergyStore(Repository):
    """The energy totals, on the store's engine."""


    def totals(self) -> dict[tuple[str, str], float]:
        """``{(kind, name): joules}`` of every node and deployment ever accounted."""
        c = t.energy_totals.c
        with self._tx() as conn:
            rows = conn.execute(select(c.kind, c.name, c.joules)).all()
        return {(r.kind, r.name): float(r.joules) for r in rows}

    def save(self, totals: Mapping[tuple[str, str], float], now: float) -> None:
        """Write these totals (insert or replace), in one transaction."""
        if not totals:
            return
        with self._tx() as conn:
            for (kind, name), joules in totals.items():
                t.upsert(conn, t.energy_totals, {"kind": kind, "name": name},
                         {"joules": joules, "updated_at": now})
