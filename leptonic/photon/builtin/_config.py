"""Configuration of the ready-made photons: environment variables set on the deployment
(``leptonic deployment create --env KEY=VALUE``), read and checked in ``init()`` so a
missing or bad setting stops the replica with a message that says what to set."""

from __future__ import annotations

import os
from pathlib import Path

from leptonic.errors import PhotonDefinitionError


def env_str(name: str, default: str | None = None) -> str | None:
    """The variable's value, stripped; ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_file(name: str, photon: str, what: str) -> Path:
    """A required path to an existing file, named by the variable ``name``."""
    raw = env_str(name)
    if raw is None:
        raise PhotonDefinitionError(
            f"builtin:{photon} needs {name}, the path of {what}; set it on the deployment: "
            f"leptonic deployment create --photon builtin:{photon} --env {name}=/path/to/file")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise PhotonDefinitionError(
            f"builtin:{photon}: {name}={raw!r} is not a file on this node; it must name "
            f"{what} readable by the replica")
    return path


def env_int(name: str, photon: str, default: int | None = None, *,
            minimum: int = 1) -> int | None:
    """An optional integer >= ``minimum``."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise PhotonDefinitionError(
            f"builtin:{photon}: {name}={raw!r} must be an integer >= {minimum}")
    return value


def set_torch_threads(photon: str) -> None:
    """Apply ``TORCH_NUM_THREADS`` (intra-op threads) when set; torch's default otherwise."""
    threads = env_int("TORCH_NUM_THREADS", photon)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
