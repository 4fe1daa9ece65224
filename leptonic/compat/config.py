"""The constants of ``leptonai.config`` that classic photons use."""

from __future__ import annotations

from leptonic.compat.photon import ENV_VAR_REQUIRED

__all__ = ["DEFAULT_PORT", "ENV_VAR_REQUIRED"]
DEFAULT_PORT = 8080
