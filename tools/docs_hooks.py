"""mkdocs hooks: the CLI and REST references, generated at build time (never committed).

``reference/cli.md`` walks the typer app's click tree (every command's help, arguments
and options); ``reference/rest.md`` renders the control plane's OpenAPI document, built
by a platform on the fake backend in a temporary data dir.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def cli_markdown() -> str:
    import typer

    from leptonic.cli.main import app

    root = typer.main.get_command(app)
    out = ["# CLI reference", "",
           "Generated from the `leptonic` typer app when the site is built. Every command "
           "also takes `--output json`, `--url` and `--token` where it talks to a platform.",
           ""]

    # typer vendors its own click: duck-typed, not isinstance(click.Group)
    def walk(cmd: Any, path: list[str]) -> None:
        name = " ".join(path)
        if path[1:]:
            out.extend([f"{'#' * min(len(path), 4)} `{name}`", ""])
            if cmd.help:
                out.extend([_clean(cmd.help), ""])
            params = [p for p in cmd.params if not getattr(p, "hidden", False)
                      and p.name not in ("help",)]
            if params:
                out.extend(["| parameter | help | default |", "|---|---|---|"])
                for p in params:
                    flags = ", ".join(f"`{o}`" for o in getattr(p, "opts", [])
                                      ) if p.param_type_name == "option" else f"`{p.name.upper()}`"
                    helptext = _clean(getattr(p, "help", "") or "").replace("\n", " ")
                    helptext = helptext.replace("|", "\\|")
                    default = p.default if p.default not in (None, False, (), []) else ""
                    if callable(default):
                        default = ""
                    out.append(f"| {flags} | {helptext} | {_cell(default)} |")
                out.append("")
        if hasattr(cmd, "commands"):
            for sub in sorted(cmd.commands):
                walk(cmd.commands[sub], [*path, sub])

    walk(root, ["leptonic"])
    return "\n".join(out) + "\n"


def _clean(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines()).replace("\b", "")


def _cell(value: Any) -> str:
    text = getattr(value, "value", value)
    return f"`{text}`" if text != "" else ""


def openapi_document() -> dict[str, Any]:
    from leptonic.config import Settings
    from leptonic.platform import Platform
    from leptonic.runtime.fake import FakeBackend, FakeProber

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Settings(data_dir=Path(tmp) / "data"), backend=FakeBackend(),
                            prober=FakeProber())
        try:
            app: Any = platform.api
            while not hasattr(app, "openapi"):      # below the middleware stack
                app = app.app
            doc: dict[str, Any] = app.openapi()
            return doc
        finally:
            platform.store.close()


def rest_markdown() -> str:
    doc = openapi_document()
    out = ["# REST API reference", "",
           f"Generated from the control plane's OpenAPI document (version "
           f"{doc['info']['version']}) when the site is built. Every request needs "
           "`Authorization: Bearer TOKEN`; every error is `application/problem+json`. "
           "[REST API notes](../API.md) explain the contract.", ""]
    tags: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            tag = (op.get("tags") or ["other"])[0]
            tags.setdefault(tag, []).append((method.upper(), path, op))
    for tag in sorted(tags):
        out.extend([f"## {tag}", ""])
        for method, path, op in tags[tag]:
            out.extend([f"### `{method} {path}`", ""])
            summary = op.get("description") or op.get("summary") or ""
            if summary:
                out.extend([_clean(summary), ""])
            params = op.get("parameters") or []
            if params:
                out.extend(["| parameter | in | required |", "|---|---|---|"])
                out.extend(f"| `{p['name']}` | {p['in']} | {p.get('required', False)} |"
                           for p in params)
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for ctype, media in body.items():
                ref = media.get("schema", {}).get("$ref", "")
                out.append(f"Body: `{ctype}` {('`' + ref.rsplit('/', 1)[-1] + '`') if ref else ''}")
                out.append("")
            codes = ", ".join(f"`{c}`" for c in op.get("responses", {}))
            out.extend([f"Responses: {codes}", ""])
    out.extend(["## Schemas", "", "```json",
                json.dumps(doc.get("components", {}).get("schemas", {}), indent=1)[:200000],
                "```", ""])
    return "\n".join(out)


def on_files(files: Files, config: Any) -> Files:
    for path, render in (("reference/cli.md", cli_markdown), ("reference/rest.md",
                                                               rest_markdown)):
        files.append(File.generated(config, path, content=render()))
    return files
