"""The ``leptonic`` command line: a typer app, one module per command group (``main.py``)."""
