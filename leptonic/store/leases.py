"""Leases: the controller's leadership, one row per lease, taken and renewed with a
single conditional UPDATE so two control planes on one database never both hold it."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from leptonic.store import tables as t
from leptonic.store.base import Repository


class LeasesMixin(Repository):
    def acquire_lease(self, name: str, holder: str, now: float, duration_s: float) -> bool:
        """Take or renew ``name`` for ``holder`` until ``now + duration_s``; True if held.

        It succeeds when the lease is free, expired, or already ours (a renewal)."""
        with self._tx() as conn:
            res = conn.execute(
                update(t.leases)
                .where((t.leases.c.name == name)
                       & ((t.leases.c.holder == holder) | (t.leases.c.expires_at < now)))
                .values(holder=holder, expires_at=now + duration_s, renewed_at=now))
            if res.rowcount == 1:
                return True
        try:
            with self._tx() as conn:
                conn.execute(insert(t.leases).values(name=name, holder=holder,
                                                     expires_at=now + duration_s,
                                                     renewed_at=now))
            return True
        except IntegrityError:
            return False             # someone else holds it

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(update(t.leases)
                         .where((t.leases.c.name == name) & (t.leases.c.holder == holder))
                         .values(expires_at=0.0))

    def lease_holder(self, name: str, now: float) -> str | None:
        with self._tx() as conn:
            row = conn.execute(select(t.leases).where(t.leases.c.name == name)).first()
        if row is None or row.expires_at < now:
            return None
        return str(row.holder)
