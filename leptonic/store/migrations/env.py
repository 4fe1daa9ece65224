"""Alembic environment: the connection is handed in by ``Store.migrate`` (or made from
``sqlalchemy.url`` when alembic runs from the command line)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from leptonic.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def run() -> None:
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
