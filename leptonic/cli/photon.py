"""``leptonic photon ...``: run a photon locally, store, list, inspect and delete photons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, fields, show, table
from leptonic.client import BundlePlan, PhotonInfo, plan_bundle
from leptonic.client._base import human_size
from leptonic.core.models import PhotonVersion

app = typer.Typer(help="Photons: versioned bundles of model-serving code.",
                  no_args_is_help=True)

EntryOpt = Annotated[str, typer.Option(
    "--entry", "-m", help="FILE:CLASS, e.g. app.py:Echo (or a path to the file: "
                          "sub/app.py:Echo, /abs/dir/app.py:Echo).")]


def _handlers(v: PhotonVersion) -> str:
    return ", ".join(h.name + (" (stream)" if h.stream else "")
                     + (f" (batch {h.batch})" if h.batch else "") for h in v.handlers)


def _versions(versions: list[PhotonVersion]) -> Table:
    return table(["NAME", "VERSION", "ENTRY", "HANDLERS", "DIGEST", "AGE"],
                 [(v.name, v.version, v.entry, _handlers(v), v.digest[:12], age(v.created_at))
                  for v in versions])


@app.command("run")
def run(
    ctx: typer.Context,
    entry: EntryOpt,
    path: Annotated[Path | None, typer.Option(
        help="Folder the entry file is in (default: as for photon create).",
        show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    output: OutputOpt = None,
) -> None:
    """Serve a photon from local code in this process (no platform needed).

    Classic leptonai photons (``from leptonai.photon import Photon``) run as they are.
    With ``--output json``, one line on stdout once it listens: ``{"photon", "entry",
    "url", "handlers": [{"method", "path"}]}`` (the log stays on stderr).
    """
    import json
    import sys

    from leptonic.compat import unsupported_entry
    from leptonic.photon.runner import serve

    if (why := unsupported_entry(entry)) is not None:
        raise typer.BadParameter(why, param_hint="'--entry' / '-m'")
    folder, entry = bundle_target(entry, path)

    def listening(info: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()

    as_json = options(ctx, output).json
    code = serve(entry, host, port, bundle_dir=folder.resolve(),
                 on_listening=listening if as_json else None)
    if code:
        raise typer.Exit(code)


def _plan(plan: BundlePlan) -> object:
    from rich.console import Group

    files = table(["PATH", "SIZE"], [(f.path, human_size(f.size)) for f in plan.files])
    largest = ", ".join(f"{f.path} ({human_size(f.size)})" for f in plan.largest())
    return Group(files, "", plan.totals() + (f"; largest: {largest}" if largest else ""))


def bundle_target(entry: str, path: Path | None) -> tuple[Path, str]:
    """The folder to bundle and the entry inside it, for ``-m ENTRY [--path PATH]``.

    Without ``--path``, ``-m /abs/dir/app.py:Echo`` and ``-m sub/app.py:Echo`` bundle the
    file's folder (entry ``app.py:Echo``). With ``--path``, an absolute entry file is made
    relative to it, and must lie inside it.
    """
    file, sep, cls = entry.rpartition(":")
    is_file = bool(sep) and file.endswith(".py")
    if path is None:
        target = Path(file).expanduser()
        if is_file and (target.is_absolute() or len(target.parts) > 1):
            return target.parent, f"{target.name}:{cls}"
        return Path("."), entry
    if is_file and Path(file).expanduser().is_absolute():
        root, target = path.expanduser().resolve(), Path(file).expanduser().resolve()
        if not target.is_relative_to(root if root.is_dir() else root.parent):
            raise typer.BadParameter(
                f"entry file {file} is not inside --path {path}; pass the folder that "
                f"holds it, or leave --path out to bundle the file's own folder",
                param_hint="'--entry' / '-m'")
        base = root if root.is_dir() else root.parent
        return path, f"{target.relative_to(base).as_posix()}:{cls}"
    return path, entry


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="Photon name (a slug).")],
    entry: EntryOpt,
    path: Annotated[Path | None, typer.Option(
        help="Folder (or single file) to bundle (default: the folder of the entry file "
             "when -m names one by a path, e.g. -m sub/app.py:Echo; else the current "
             "folder).", show_default=False)] = None,
    include: Annotated[list[str] | None, typer.Option(
        "--include", metavar="PATTERN",
        help="Bundle a file or folder that .gitignore, .leptonicignore or the defaults "
             "(.git, .venv, venv, node_modules, __pycache__, *.pyc, .env, .env.*) leave "
             "out; gitignore syntax, repeatable.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only list what would be bundled; upload nothing.")] = False,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Bundle a folder and store it as a new version of a photon.

    The bundle leaves out what .gitignore and .leptonicignore files ignore, and caches,
    virtual environments and .env files; it refuses symlinks that lead outside the folder
    and leptonic data dirs.
    """
    opts = options(ctx, output, url, token)
    folder, entry = bundle_target(entry, path)
    plan = plan_bundle(folder, include or ())
    if dry_run:
        show(opts, plan.to_json(), lambda _: _plan(plan))
        return
    with connect(opts) as client:
        version = client.create_photon(name, entry, plan)
    show(opts, version, lambda v: _versions([v]))
    if not opts.json:
        typer.echo(plan.summary(), err=True)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """The latest version of every photon."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        photons = client.list_photons()
    show(opts, photons, _versions)


@app.command("get")
def get(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
        token: TokenOpt = None) -> None:
    """A photon and all its versions."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        info: PhotonInfo = client.get_photon(name)

    def render(info: PhotonInfo) -> object:
        latest = info.latest
        from rich.console import Group

        return Group(fields([("name", info.name), ("latest", latest.version),
                             ("class", latest.class_name),
                             ("requirements", ", ".join(latest.requirements) or "-")]),
                     "", _versions(info.versions))

    show(opts, info, render)


@app.command("delete")
def delete(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Delete a photon and all its versions (refused while a deployment uses it)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        client.delete_photon(name)
    show(opts, {"name": name, "deleted": True}, lambda _: f"deleted photon {name}")
