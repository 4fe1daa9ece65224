"""The public surface is curated: everything in ``__all__`` resolves, and nothing else leaks."""

from __future__ import annotations

import leptonic


def test_all_names_resolve() -> None:
    for name in leptonic.__all__:
        assert getattr(leptonic, name) is not None, name


def test_public_module_attributes_are_exported() -> None:
    public = {n for n in vars(leptonic) if not n.startswith("_")}
    # submodules imported as a side effect and typing helpers are not part of the surface
    public -= {"annotations", "TYPE_CHECKING", "Any"}
    public = {n for n in public if not isinstance(getattr(leptonic, n), type(leptonic))}
    assert public <= set(leptonic.__all__)


def test_user_facing_names() -> None:
    assert {"Photon", "handler", "Client", "AsyncClient", "LeptonAI"} <= set(leptonic.__all__)


def test_lepton_ai_reexports_the_task_sdk() -> None:
    import lepton_ai

    assert lepton_ai.LeptonAI is leptonic.LeptonAI
