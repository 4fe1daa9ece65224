"""Photons: upload a bundle, inspect it out of process, store it content-addressed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.models import PhotonVersion, check_name
from leptonic.errors import InvalidInput
from leptonic.store.store import Store

router = APIRouter(tags=["photons"])

_ENTRY_RE = re.compile(r"^(?P<file>[^:]+\.py):(?P<cls>[A-Za-z_][A-Za-z0-9_]*)$")


def check_entry(entry: str) -> tuple[PurePosixPath, str]:
    """``path/to/file.py:ClassName``, the path relative and inside the bundle."""
    from leptonic.compat import unsupported_entry

    if (why := unsupported_entry(entry)) is not None:
        raise InvalidInput(why)
    m = _ENTRY_RE.match(entry.strip())
    if not m:
        raise InvalidInput(f"invalid entry {entry!r}: use FILE.py:ClassName, e.g. app.py:Echo")
    path = PurePosixPath(m["file"])
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(f"invalid entry {entry!r}: the file must be a relative path "
                           "inside the bundle")
    return path, m["cls"]


@router.post("/photons", status_code=201, response_model=PhotonVersion)
async def create_photon(response: Response, name: str = Form(...), entry: str = Form(...),
                        file: UploadFile = File(...),
                        platform: ApiPlatform = Depends(get_platform)) -> PhotonVersion:
    """Store a new version of a photon (200 with the latest version if the code is
    unchanged)."""
    from leptonic.photon.inspect import inspect_bundle
    from leptonic.store.artifacts import canonical_digest

    check_name(name, "photon name")
    rel, _ = check_entry(entry)
    store, artifacts = platform.store, platform.artifacts
    staging: Path = await asyncio.to_thread(artifacts.stage, file.file,
                                            platform.settings.max_bundle_bytes)
    try:
        if not (staging / rel).is_file():
            raise InvalidInput(f"entry file {str(rel)!r} is not in the bundle; pass the "
                               "folder that holds it (--path) and a path relative to it")
        digest = await asyncio.to_thread(canonical_digest, staging)
        versions = await asyncio.to_thread(_versions, store, name)
        if versions and versions[-1].digest == digest and versions[-1].entry == entry:
            response.status_code = 200
            return versions[-1]
        manifest = await asyncio.to_thread(inspect_bundle, staging, entry,
                                           isolation=platform.isolation)
        await asyncio.to_thread(artifacts.commit, staging)
    finally:
        artifacts.discard(staging)          # a no-op once committed
    pv: PhotonVersion = await asyncio.to_thread(
        store.add_photon_version, name, entry, digest, manifest.class_name,
        manifest.handlers, manifest.requirements, None, manifest.resources,
        manifest.gpu_models)
    await asyncio.to_thread(store.add_event, f"photon/{name}", "Created",
                            f"version {pv.version} ({digest[:12]}) with handlers "
                            + ", ".join(h.name for h in pv.handlers))
    return pv


def _versions(store: Store, name: str) -> list[PhotonVersion]:
    from leptonic.errors import NotFound
    try:
        return list(store.list_photon_versions(name))
    except NotFound:
        return []


@router.get("/photons", response_model=list[PhotonVersion])
def list_photons(platform: ApiPlatform = Depends(get_platform)) -> list[PhotonVersion]:
    """The latest version of each photon."""
    return list(platform.store.list_photons())


@router.get("/photons/{name}")
def get_photon(name: str, platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Every version of a photon, oldest first."""
    versions = platform.store.list_photon_versions(name)
    return {"name": name, "versions": [v.model_dump(mode="json") for v in versions]}


@router.get("/photons/{name}/versions/{version}", response_model=PhotonVersion)
def get_photon_version(name: str, version: str,
                       platform: ApiPlatform = Depends(get_platform)) -> PhotonVersion:
    digits = version[1:] if version[:1] in ("v", "V") else version
    if not digits.isdigit() or int(digits) < 1:
        raise InvalidInput(f"invalid version {version!r}: use N or vN with N >= 1")
    pv: PhotonVersion = platform.store.get_photon(name, int(digits))
    return pv


@router.delete("/photons/{name}", status_code=204)
def delete_photon(name: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    """Delete every version; refused (409) while a deployment uses the photon."""
    digests = platform.store.delete_photon(name)
    for digest in set(digests):
        if not platform.store.digest_in_use(digest):
            platform.artifacts.remove(digest)
    platform.store.add_event(f"photon/{name}", "Deleted", "all versions deleted")
    return Response(status_code=204)
