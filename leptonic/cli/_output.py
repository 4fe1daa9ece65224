"""How commands print: rich tables for people, JSON for scripts, one-line errors.

Every expected failure (a ``LeptonicError``, an httpx error, a file that cannot be read)
becomes exactly one ``error: <detail>`` line on stderr and exit code 1; ``ErrorHandlingGroup``
does that once for all commands so none prints a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from leptonic.cli._context import Opts
from leptonic.errors import LeptonicError


def one_line(detail: str) -> str:
    """A possibly multi-line detail (a replica's last log lines) as one line."""
    lines = [line.strip() for line in str(detail).splitlines() if line.strip()]
    return " | ".join(lines) or "unknown error"


def fail(detail: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {one_line(detail)}", err=True)
    raise typer.Exit(code)


class ErrorHandlingGroup(TyperGroup):
    """The root command group: turns expected errors into one ``error:`` line, exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LeptonicError as exc:
            fail(exc.detail)
        except httpx.HTTPError as exc:
            fail(f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            fail(str(exc))


def jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [jsonable(item) for item in data]
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    return data


def print_json(data: Any) -> None:
    typer.echo(json.dumps(jsonable(data), indent=2))


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # not a terminal (a pipe, a test): wide enough that names and URLs are not cut
    return Console(file=stream, width=None if stream.isatty() else 200, soft_wrap=False)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    t = Table(*columns, title=title, header_style="bold", box=None, pad_edge=False)
    for row in rows:
        t.add_row(*("" if cell is None else str(cell) for cell in row))
    return t


def show(opts: Opts, data: Any, render: Any) -> None:
    """Print ``data`` as JSON, or ``render(data)`` (a rich renderable or text) as a table."""
    if opts.json:
        print_json(data)
    else:
        console().print(render(data))


def fields(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column key/value table for one object."""
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for key, value in pairs:
        t.add_row(key, "" if value is None else str(value))
    return t


def age(ts: float | None, now: float | None = None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` since the epoch time ``ts``."""
    if not ts:
        return ""
    secs = max(0, int((time.time() if now is None else now) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def clock(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
