"""core/ is pure (DESIGN.md, STYLE 4): no module of it imports I/O, a clock, or the layers
above it. The same list is a ruff rule (leptonic/core/ruff.toml); this reads the source, so
it holds whatever the linter's configuration."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import leptonic.core

CORE = Path(leptonic.core.__file__).parent
BANNED = set(tomllib.loads((CORE / "ruff.toml").read_text())
             ["lint"]["flake8-tidy-imports"]["banned-api"])


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append(node.module)
    return out


def _banned(module: str) -> str | None:
    return next((b for b in BANNED if module == b or module.startswith(b + ".")), None)


def test_the_banned_list_names_io_and_the_layers_above() -> None:
    assert {"os", "time", "subprocess", "socket", "sqlalchemy", "leptonic.store",
            "leptonic.runtime"} <= BANNED


def test_no_module_of_core_imports_io() -> None:
    found = {f"{p.name}: {m}" for p in sorted(CORE.glob("*.py")) for m in _imports(p)
             if _banned(m)}
    assert found == set()


def test_the_check_sees_a_banned_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom leptonic.store import tables\nimport math\n")
    assert [m for m in _imports(bad) if _banned(m)] == ["os.path", "leptonic.store"]
