"""leptonic: write a model service as a small Python class, run it as a scalable service."""

from leptonic.client import AsyncClient, Client
from leptonic.photon import Photon, handler

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "Photon", "__version__", "handler"]
