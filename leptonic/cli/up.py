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
    isolation: Annotated[str, typer.Option(
        "--isolation", help="How photons' code is kept from the platform: auto (own uid per "
        "deployment as root, bubblewrap sandbox where installed) or none.")] = "auto",
    run_as: Annotated[str | None, typer.Option(
        "--run-as", help="As root: run all photons' code as this user instead of a uid per "
        "deployment.", show_default=False)] = None,
    runtime: Annotated[str, typer.Option(
        "--runtime", help="Where replicas run: local (processes on this machine) or ray "
        "(actors on a Ray cluster).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", envvar="LEPTONIC_RAY_ADDRESS", help="HOST:PORT of the Ray cluster "
        "(default with --runtime ray: start a one-node head on 127.0.0.1).",
        show_default=False)] = None,
    work_dir: Annotated[Path | None, typer.Option(
        "--work-dir", help="Where replicas get their work dirs (outside the data dir; "
        "default /var/lib/leptonic/work as root, else ~/.cache/leptonic/work).",
        show_default=False)] = None,
) -> None:
    """Start the platform (API, gateway, controller, local runtime); blocks until Ctrl-C."""
    from leptonic.platform import run_platform

    if runtime not in ("local", "ray"):
        raise typer.BadParameter(f"{runtime!r}: use local or ray", param_hint="'--runtime'")
    if ray_address and runtime != "ray":
        raise typer.BadParameter("--ray-address needs --runtime ray",
                                 param_hint="'--ray-address'")
    if isolation not in ("auto", "none"):
        raise typer.BadParameter(f"{isolation!r}: use auto or none", param_hint="'--isolation'")
    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve(),
                        host=host, port=port, database_url=database_url, isolation=isolation,
                        runtime=runtime, ray_address=ray_address,
                        run_as=run_as,
                        work_dir=work_dir.expanduser().resolve() if work_dir else None)
    run_platform(settings)
