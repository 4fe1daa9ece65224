"""``python -m leptonic`` is the ``leptonic`` CLI."""

from leptonic.cli.main import main

main()
