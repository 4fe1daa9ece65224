"""The photon SDK: ``Photon`` and ``@handler`` to write a model service, and the runner
(``leptonic.photon.runner``) that serves one as a lean ASGI app."""

from __future__ import annotations

from leptonic.photon.handler import handler
from leptonic.photon.photon import Photon, PhotonManifest

__all__ = ["Photon", "PhotonManifest", "handler"]
