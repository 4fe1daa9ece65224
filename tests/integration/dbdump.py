"""Everything a store holds, as text: for tests that prove a secret is not in it."""

from __future__ import annotations

from sqlalchemy import MetaData, select

from leptonic.store.store import Store


def dump(store: Store) -> str:
    meta = MetaData()
    meta.reflect(store.engine)
    out: list[str] = []
    with store.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                out.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(out)
