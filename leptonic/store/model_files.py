"""A model version's artifact on disk and its row, written together.

The file goes under ``DATA_DIR/models/<model>/<version>/`` (0600, with its SHA-256), then
the row; a version number taken by a concurrent registration moves the file to the next.
Used by the API (an upload) and the controller (a training job's output). The control
plane never loads an artifact: unpickling a joblib file runs its code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from leptonic.core.registry import ModelVersion, VersionMeta, framework_of
from leptonic.errors import Conflict, InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from leptonic.store.store import Store

MAX_ARTIFACT_BYTES = 2 << 30          # 2 GiB
_CHUNK = 1 << 20
_REGISTER_TRIES = 5


def version_dir(models_root: str | Path, name: str, version: int) -> Path:
    return Path(models_root) / name / str(version)


def _receive(src: BinaryIO, folder: Path, max_bytes: int) -> tuple[Path, str, int]:
    """Copy the upload into a temporary file in ``folder``: (path, sha256, size)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the artifact is over {max_bytes >> 20} MiB, the "
                                          "most a model version may hold")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    if size == 0:
        os.unlink(tmp)
        raise InvalidInput("the artifact is empty; pass the model file (--file)")
    return Path(tmp), digest.hexdigest(), size


def register(store: Store, models_root: str | Path, name: str, filename: str,
             meta: VersionMeta, src: BinaryIO, by: str | None) -> ModelVersion:
    """Write the artifact read from ``src`` and add the version's row: the next number."""
    framework, fmt = framework_of(filename, meta.framework)
    root = Path(models_root) / name
    tmp, sha, size = _receive(src, root, MAX_ARTIFACT_BYTES)
    try:
        for _ in range(_REGISTER_TRIES):
            number = store.next_model_version(name)
            folder = version_dir(models_root, name, number)
            shutil.rmtree(folder, ignore_errors=True)       # a crash's leftover, no row
            folder.mkdir(mode=0o700)
            path = folder / Path(filename).name
            os.replace(tmp, path)
            version = ModelVersion(
                model=name, version=number, framework=framework, format=fmt,
                artifact=path.name, sha256=sha, size_bytes=size, signature=meta.signature,
                metrics=meta.metrics, params=meta.params, dataset=meta.dataset,
                has_reference=meta.reference is not None, lineage=meta.lineage,
                tags=meta.tags, description=meta.description, created_at=time.time(),
                created_by=by)
            try:
                got: ModelVersion = store.add_model_version(version, meta.reference, by)
            except Conflict:
                os.replace(path, tmp)                       # the number was taken: next
                shutil.rmtree(folder, ignore_errors=True)
                continue
            return got
        raise Conflict(f"could not number a version of model {name!r} (too many at once); "
                       "register again")
    finally:
        if tmp.exists():
            tmp.unlink()


def registered_event(version: ModelVersion) -> str:
    """The ``Registered`` event's message."""
    return (f"version {version.version} ({version.framework.value}, {version.format}, "
            f"{version.sha256[:12]})" + (
                " with " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(version.metrics.items()))
                if version.metrics else ""))
