"""What ``import leptonai`` gives a classic photon: ``Photon``, ``Client``, ``__version__``."""

from __future__ import annotations

from typing import Any

from leptonic.compat.photon import Photon

__all__ = ["Photon", "__version__"]  # and Client, imported on first use
__version__ = "0.27.3"  # the leptonai API this mirrors

_UNSUPPORTED = ("Remote", "KV", "Queue", "ObjectStore", "PrivateObjectStore",
                "PublicObjectStore")


def __getattr__(name: str) -> Any:
    if name == "Client":
        from leptonic.compat.client import Client

        return Client
    if name in _UNSUPPORTED:
        raise ImportError(
            f"leptonai.{name} (Lepton's hosted cloud services) is not part of leptonic's "
            f"classic photon support; use a service of your own (a database, a queue, "
            f"an object store) from the photon instead")
    raise AttributeError(f"module 'leptonai' has no attribute {name!r}")
