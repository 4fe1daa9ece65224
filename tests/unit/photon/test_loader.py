"""load_photon_class: bundle files, builtins, and a clear error for each way loading fails."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leptonic.errors import PhotonDefinitionError
from leptonic.photon import Photon
from leptonic.photon.inspect import main as inspect_main
from leptonic.photon.loader import load_photon_class

GOOD = """
from leptonic import Photon, handler
from helper import SUFFIX

class Shout(Photon):
    @handler
    def shout(self, text: str) -> str:
        return text.upper() + SUFFIX
"""


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    """Loading puts bundle dirs on sys.path and modules in sys.modules; undo both."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(GOOD)
    (tmp_path / "helper.py").write_text("SUFFIX = '!'\n")
    return tmp_path


def test_loads_a_file_entry_with_its_sibling_modules(bundle: Path) -> None:
    cls = load_photon_class("app.py:Shout", bundle)
    assert issubclass(cls, Photon)
    assert cls().shout("hi") == "HI!"  # type: ignore[attr-defined]


def test_loads_from_a_subpackage(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "const.py").write_text("N = 3\n")
    (pkg / "mod.py").write_text(
        "from leptonic import Photon, handler\nfrom .const import N\n\n"
        "class P(Photon):\n    @handler\n    def n(self) -> int:\n        return N\n")
    assert load_photon_class("pkg/mod.py:P", tmp_path)().n() == 3  # type: ignore[attr-defined]


def test_two_bundles_with_the_same_file_name_do_not_mix(tmp_path: Path) -> None:
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "app.py").write_text(
            f"from leptonic import Photon, handler\n\nclass P(Photon):\n"
            f"    @handler\n    def who(self) -> str:\n        return {name!r}\n")
    a = load_photon_class("app.py:P", tmp_path / "a")
    b = load_photon_class("app.py:P", tmp_path / "b")
    assert (a().who(), b().who()) == ("a", "b")  # type: ignore[attr-defined]


def test_builtin() -> None:
    from leptonic.photon.builtin.echo import Echo

    assert load_photon_class("builtin:echo") is Echo


@pytest.mark.parametrize(("entry", "source", "ending"), [
    ("missing.py:X", None, "FileNotFoundError: no file 'missing.py'"),
    ("app.py:X", "import nope\n", "ModuleNotFoundError: No module named 'nope'"),
    ("app.py:X", "def broken(:\n", "SyntaxError: invalid syntax"),
    ("app.py:X", "raise RuntimeError('at import')\n", "RuntimeError: at import"),
    ("app.py:X", "Y = 1\n", "AttributeError: app.py defines no class 'X'"),
    ("app.py:X", "class X:\n    pass\n", "is not a subclass of leptonic.Photon"),
    ("app.py:X", "import sys\nsys.exit(3)\n", "SystemExit: 3"),
])
def test_failures_name_the_entry_and_end_with_the_exception(
        tmp_path: Path, entry: str, source: str | None, ending: str) -> None:
    if source is not None:
        (tmp_path / "app.py").write_text(source)
    with pytest.raises(PhotonDefinitionError) as info:
        load_photon_class(entry, tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"cannot load photon {entry!r}")
    assert msg.endswith(ending) or ending in msg


@pytest.mark.parametrize("entry", ["app.py", "app:X", ":X", "app.py:", "app.py:not-a-name"])
def test_malformed_entries(entry: str) -> None:
    with pytest.raises(PhotonDefinitionError, match=r"FILE\.py:Class"):
        load_photon_class(entry)


def test_entry_outside_the_bundle(tmp_path: Path) -> None:
    with pytest.raises(PhotonDefinitionError, match="inside the bundle"):
        load_photon_class("../app.py:X", tmp_path / "sub")


def test_unknown_builtin() -> None:
    with pytest.raises(PhotonDefinitionError, match=r"no builtin photon 'nope'.*echo"):
        load_photon_class("builtin:nope")


def test_inspect_main_prints_manifest(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_main(["--entry", "app.py:Shout", "--bundle", str(bundle)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["class_name"] == "Shout"
    assert [h["path"] for h in doc["handlers"]] == ["/shout"]


def test_inspect_main_reports_definition_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "app.py").write_text("print('noise')\nfrom leptonic import Photon\n"
                                     "class Bare(Photon):\n    pass\n")
    assert inspect_main(["--entry", "app.py:Bare", "--bundle", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "has no handlers" in json.loads(captured.out)["error"]
    assert "noise" in captured.err
