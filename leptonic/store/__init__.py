"""Persistent state: SQLAlchemy tables, the repositories (``Store`` and the observability
ones, each a ``base.Repository``), Alembic migrations, and the content-addressed artifact
store for photon bundles."""
