"""leptonic: write a model service as a small Python class, run it as a scalable service.

The public surface is curated: ``Photon`` and ``handler`` to write photons, ``Client`` and
``AsyncClient`` to use a platform, ``LeptonAI`` to run tasks (batch jobs). The clients
are imported lazily so a replica process, which only needs the SDK, does not pay for the
HTTP client's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "LeptonAI", "Photon", "__version__", "handler"]

if TYPE_CHECKING:
    from leptonic.client import AsyncClient, Client
    from leptonic.photon import Photon, handler
    from leptonic.sdk import LeptonAI


def __getattr__(name: str) -> Any:
    if name in ("Photon", "handler"):
        from leptonic import photon

        return getattr(photon, name)
    if name in ("Client", "AsyncClient"):
        from leptonic import client

        return getattr(client, name)
    if name == "LeptonAI":
        from leptonic.sdk import LeptonAI

        return LeptonAI
    raise AttributeError(f"module 'leptonic' has no attribute {name!r}")
