"""The options every command takes (``--output``, ``--url``, ``--token``) and the client.

Commands get their client from ``connect(opts)``, which calls ``make_client``: the one
seam tests replace to point the CLI at an in-process platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import typer

from leptonic.client import Client


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[Output | None, typer.Option(
    "--output", "-o", help="table for people, json for scripts (only JSON on stdout).",
    case_sensitive=False, show_default=False)]
UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="Platform URL (default: $LEPTONIC_URL, else the local platform).",
    show_default=False)]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", help="API token (default: $LEPTONIC_TOKEN, else DATA_DIR/admin-token).",
    show_default=False)]


@dataclass(frozen=True)
class Opts:
    output: Output = Output.table
    url: str | None = None
    token: str | None = None

    @property
    def json(self) -> bool:
        return self.output is Output.json


def options(ctx: typer.Context, output: Output | None = None, url: str | None = None,
            token: str | None = None) -> Opts:
    """A command's own options, falling back to those given before the command name."""
    root = ctx.find_root().obj
    base = root if isinstance(root, Opts) else Opts()
    return Opts(output=output or base.output, url=url or base.url, token=token or base.token)


def make_client(url: str | None, token: str | None) -> Client:
    """The client commands use (url/token resolved by the client: args, env, data dir)."""
    return Client(url=url, token=token)


def connect(opts: Opts) -> Client:
    return make_client(opts.url, opts.token)
