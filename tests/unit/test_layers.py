"""The package layers of DESIGN.md, checked from the source: ``core`` imports nothing of
leptonic but ``errors``; the store, config and runtime import nothing above them; the
controller, auth and observe reach the gateway's types through ``core/routes.py``; and no
two packages import each other (type-only imports included)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "leptonic"

#: (importer, imported) that would run back up a layer
FORBIDDEN = {
    ("store", "observe"), ("store", "controller"), ("store", "api"), ("store", "gateway"),
    ("config", "observe"), ("config", "controller"), ("config", "store"),
    ("runtime", "controller"), ("runtime", "api"), ("gateway", "controller"),
    ("gateway", "api"), ("gateway", "observe"), ("gateway", "store"),
    # the gateway, the controller and the token check share their types through core/
    ("controller", "gateway"), ("auth", "gateway"), ("observe", "gateway"),
}


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        pkg = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = name.split(".")
                if bits[0] == "leptonic" and len(bits) > 1 and bits[1] != pkg:
                    edges[(pkg, bits[1])].append(str(path.relative_to(ROOT)))
    return edges


def test_core_imports_only_errors() -> None:
    assert {b for (a, b) in _edges() if a == "core"} <= {"errors"}


def test_no_import_runs_back_up_a_layer() -> None:
    found = {e: files for e, files in _edges().items() if e in FORBIDDEN}
    assert found == {}


def test_no_two_packages_import_each_other() -> None:
    edges = _edges()
    cycles = {frozenset(e) for e in edges if (e[1], e[0]) in edges}
    assert not cycles, {tuple(c): [edges[tuple(c)], edges[tuple(c)[::-1]]] for c in cycles}
