"""Ready-made photons, referred to as ``builtin:NAME``; each is imported only when used."""

from __future__ import annotations

BUILTINS: dict[str, str] = {
    "echo": "leptonic.photon.builtin.echo:Echo",
}
