"""The ``leptonai`` import alias: classic photons import ``leptonai`` and get leptonic.compat.

:func:`install` appends a finder to the *end* of ``sys.meta_path``, so it answers only
when no other finder does: a real leptonai installed in the environment always wins and
is never shadowed. The loader installs it before importing a photon's file, which is
where photons run (replicas, ``photon create``'s inspection, ``photon run``); nothing
installs it when ``leptonic`` itself is imported.

It lives with the loader, not in ``leptonic.compat``: it names the compat modules as
strings and imports one only when a photon asks for it, so ``compat`` builds on
``photon`` and nothing in ``photon`` imports ``compat``.

``leptonai``, ``leptonai.photon``, ``leptonai.photon.types``, ``leptonai.client`` and
``leptonai.config`` are provided; any other ``leptonai.*`` module raises an ImportError
that says it is not part of leptonic's support and what to do.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

# alias -> the leptonic module whose public names it carries
MODULES = {
    "leptonai": "leptonic.compat.toplevel",
    "leptonai.photon": "leptonic.compat.photon",
    "leptonai.photon.types": "leptonic.compat.types",
    "leptonai.client": "leptonic.compat.client",
    "leptonai.config": "leptonic.compat.config",
}
PACKAGES = frozenset({"leptonai", "leptonai.photon"})
UNSUPPORTED_HINTS = {
    "leptonai.photon.hf": "hf: model photons are not supported; write a photon that "
                          "loads the model in init() (leptonic init NAME --template "
                          "embedding shows one)",
    "leptonai.photon.vllm": "vllm: model photons are not supported; write a photon that "
                            "starts the model in init()",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        real = importlib.import_module(self.target)
        names = getattr(real, "__all__", None) or [n for n in vars(real)
                                                    if not n.startswith("_")]
        for name in names:
            if name in vars(real):
                setattr(module, name, getattr(real, name))
        if hasattr(real, "__getattr__"):
            module.__getattr__ = real.__getattr__  # type: ignore[method-assign]
        module.__doc__ = real.__doc__
        module.__leptonic_alias__ = self.target  # type: ignore[attr-defined]


class LeptonaiFinder(importlib.abc.MetaPathFinder):
    """Finds ``leptonai`` and its supported submodules in leptonic.compat."""

    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "leptonai" and not fullname.startswith("leptonai."):
            return None
        module = MODULES.get(fullname)
        if module is None:
            hint = UNSUPPORTED_HINTS.get(fullname, "leptonic supports the classic photon "
                                         f"API: {', '.join(sorted(MODULES))}")
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: leptonic runs classic leptonai photons "
                f"without leptonai installed, and {fullname} is not part of that: {hint}",
                name=fullname)
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(module),
                                              is_package=fullname in PACKAGES)
        if fullname in PACKAGES:
            spec.submodule_search_locations = []
        return spec


def installed() -> bool:
    return any(isinstance(f, LeptonaiFinder) for f in sys.meta_path)


def install() -> None:
    """Let ``import leptonai`` resolve to leptonic.compat where no leptonai is installed."""
    if not installed():
        sys.meta_path.append(LeptonaiFinder())


def uninstall() -> None:
    """Remove the finder and the alias modules it made (a real leptonai is left alone)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, LeptonaiFinder)]
    for name in [n for n in sys.modules if n == "leptonai" or n.startswith("leptonai.")]:
        if getattr(sys.modules[name], "__leptonic_alias__", None) is not None:
            del sys.modules[name]
