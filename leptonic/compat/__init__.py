"""Classic leptonai photons, run unchanged on leptonic.

leptonai 0.27.3 was the last release with ``leptonai.photon``. A photon written for it
imports ``leptonai``; inside replicas and local runs that import resolves to this package
(:mod:`leptonic.photon.alias`, never over a real leptonai install), so the file runs as
written. :mod:`leptonic.compat.photon` has the ``Photon`` class and how each classic
feature maps onto leptonic; :mod:`leptonic.compat.app` serves it with the classic wire
format; :mod:`leptonic.compat.client` is the classic ``Client``.

Run a classic photon file as a script (its ``launch()`` under ``__main__``) with
``python -m leptonic.compat app.py``.
"""

from __future__ import annotations

from leptonic.compat.photon import HTTPException, Photon, handler

__all__ = [
    "UNSUPPORTED_ENTRY_SCHEMES",
    "HTTPException",
    "Photon",
    "handler",
    "unsupported_entry",
]

# classic `lep photon create -m SCHEME:...` model specs leptonic does not build
UNSUPPORTED_ENTRY_SCHEMES = {
    "hf": "Hugging Face model photons (hf:MODEL) are not supported; write a photon "
          "class that loads the model in init() and pass it as FILE.py:Class "
          "(leptonic init NAME --template embedding writes one)",
    "vllm": "vLLM model photons (vllm:MODEL) are not supported; write a photon class "
            "that starts the model in init() and pass it as FILE.py:Class",
}


def unsupported_entry(entry: str) -> str | None:
    """Why ``entry`` is a classic model spec leptonic refuses, or None."""
    scheme, sep, _ = entry.strip().partition(":")
    if sep and scheme in UNSUPPORTED_ENTRY_SCHEMES:
        return f"invalid entry {entry!r}: {UNSUPPORTED_ENTRY_SCHEMES[scheme]}"
    return None
