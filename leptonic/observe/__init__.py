"""Seeing the platform: the aggregated Prometheus metrics (``metrics``), the built-in time
series (``series``), alert rules and their notifications (``alerts``, ``notify``), replica
logs (``logs``), and the loops that run them inside ``leptonic up`` (``service``).
docs/OBSERVABILITY.md is the user's guide."""
