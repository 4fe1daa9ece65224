"""Persistent state: SQLAlchemy tables, the repository (``Store``), Alembic migrations,
and the content-addressed artifact store for photon bundles."""
