"""The Python client of a leptonic platform: ``Client`` (blocking) and ``AsyncClient``.

Both speak the REST contract in ``docs/API.md`` over httpx and share every request and
response rule (``_base``); they differ only in how a request is sent.
"""

from __future__ import annotations

from leptonic.client._base import (
    BundleFile,
    BundlePlan,
    DeploymentFailed,
    PhotonInfo,
    WaitTimeout,
    make_bundle,
    plan_bundle,
    resolve_token,
    resolve_url,
)
from leptonic.client.client import AsyncClient, AsyncDeploymentHandle, Client, DeploymentHandle

__all__ = [
    "AsyncClient",
    "AsyncDeploymentHandle",
    "BundleFile",
    "BundlePlan",
    "Client",
    "DeploymentFailed",
    "DeploymentHandle",
    "PhotonInfo",
    "WaitTimeout",
    "make_bundle",
    "plan_bundle",
    "resolve_token",
    "resolve_url",
]
