"""``leptonic up``: start the whole platform on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leptonic.config import DEFAULT_HOST, DEFAULT_PORT, Settings, default_data_dir


def up(
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="State, bundles and logs (default: $LEPTONIC_DATA_DIR or ~/.leptonic).",
        show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port of the API and the gateway.")] = DEFAULT_PORT,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="LEPTONIC_DATABASE_URL",
        help="postgresql://USER:PASS@HOST/DB to share state between control planes "
             "(default: SQLite in the data dir).", show_default=False)] = None,
) -> None:
    """Start the platform (API, gateway, controller, local runtime); blocks until Ctrl-C."""
    from leptonic.platform import run_platform

    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve(),
                        host=host, port=port, database_url=database_url)
    run_platform(settings)
