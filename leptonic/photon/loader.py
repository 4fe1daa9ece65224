"""Load a photon class from an entry: ``FILE.py:Class`` inside a bundle, or ``builtin:NAME``.

Every failure (missing file, syntax error, failing import, missing class, not a Photon)
becomes a PhotonDefinitionError naming the entry and ending with the exception's last
line, which is what a user needs to see in the platform's error message.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from leptonic.errors import PhotonDefinitionError
from leptonic.photon.alias import install as install_leptonai_alias
from leptonic.photon.photon import Photon

ENTRY_RULE = "use FILE.py:Class (a file inside the bundle) or builtin:NAME"


def load_photon_class(entry: str, bundle_dir: str | Path | None = None) -> type[Photon]:
    """Import ``entry`` and return the Photon subclass it names.

    ``FILE.py:Class`` is imported by file path from ``bundle_dir`` (default: the current
    directory), with the bundle directory put first on ``sys.path`` so the photon's own
    modules import. ``builtin:NAME`` comes from ``leptonic.photon.builtin.BUILTINS``.
    """
    try:
        if entry.startswith("builtin:"):
            obj = _load_builtin(entry[len("builtin:"):])
        else:
            obj = _load_file_entry(entry, bundle_dir)
        if not (isinstance(obj, type) and issubclass(obj, Photon)):
            if isinstance(obj, type) and any(k.__module__.startswith("leptonai.")
                                             for k in obj.__mro__):
                raise PhotonDefinitionError(
                    f"cannot load photon {entry!r}: it subclasses the Photon of the "
                    f"leptonai package installed here, which leptonic does not serve; "
                    f"leptonic runs classic leptonai photons itself when leptonai is not "
                    f"installed (pip uninstall leptonai)")
            raise TypeError(f"{obj!r} is not a subclass of leptonic.Photon")
    except PhotonDefinitionError:
        raise
    except (Exception, SystemExit) as exc:
        last = traceback.format_exception_only(exc)[-1].strip()
        raise PhotonDefinitionError(f"cannot load photon {entry!r}: {last}") from exc
    return obj


def _load_builtin(name: str) -> object:
    from leptonic.photon.builtin import BUILTINS

    target = BUILTINS.get(name)
    if target is None:
        raise PhotonDefinitionError(
            f"cannot load photon 'builtin:{name}': LookupError: no builtin photon {name!r}; "
            f"builtins are {', '.join(sorted(BUILTINS))}")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _load_file_entry(entry: str, bundle_dir: str | Path | None) -> object:
    rel, sep, cls_name = entry.rpartition(":")
    if not sep or not rel or not cls_name.isidentifier() or not rel.endswith(".py"):
        raise PhotonDefinitionError(f"invalid photon entry {entry!r}: {ENTRY_RULE}")
    root = Path(bundle_dir if bundle_dir is not None else Path.cwd()).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise PhotonDefinitionError(
            f"invalid photon entry {entry!r}: the file must be inside the bundle ({root})")
    if not path.is_file():
        raise FileNotFoundError(f"no file {rel!r} in bundle {str(root)!r}")
    # a classic leptonai photon imports `leptonai`: resolve it to leptonic.compat where
    # no real leptonai is installed (the finder goes last, so it never shadows one)
    install_leptonai_alias()
    module = _import_file(path, root)
    if not hasattr(module, cls_name):
        raise AttributeError(f"{rel} defines no class {cls_name!r}")
    return getattr(module, cls_name)


def _import_file(path: Path, root: Path) -> ModuleType:
    root_s = str(root)
    if root_s in sys.path:
        sys.path.remove(root_s)
    sys.path.insert(0, root_s)
    # Named after its place in the bundle ("pkg/mod.py" -> "pkg.mod") so relative imports
    # and pickling work; a fresh module each time, so two bundles with an app.py don't mix.
    parts = path.relative_to(root).with_suffix("").parts
    name = ".".join(parts)
    if not all(p.isidentifier() for p in parts):
        name = "_leptonic_bundle_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    return module
