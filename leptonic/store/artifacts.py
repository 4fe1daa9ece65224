"""Content-addressed photon bundles: ``DATA_DIR/artifacts/<sha256>/``.

An upload is unpacked into a private staging folder (never where it will live), checked
member by member (no absolute paths, no ``..``, no links or devices, no data-dir files,
bounded size and count), hashed canonically (sorted relative paths and file bytes, so the
same code gives the same digest whatever tar tool packed it), and only then moved into
place with one atomic rename. Stored files are 0600 and folders 0700: only the platform
(and the runtime, as root) reads them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from leptonic.errors import InvalidInput, PayloadTooLarge

MAX_MEMBERS = 10_000
_CHUNK = 1 << 20
# a data dir's token, secret key and database (leptonic/config.py DataDir): a bundle
# holding one was packed from a data dir by mistake, and storing it would spread it
DATA_DIR_FILES = frozenset({"admin-token", "secret-key", "leptonic.db"})
FILE_MODE = 0o600
DIR_MODE = 0o700


def canonical_digest(root: Path) -> str:
    """sha256 over every regular file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(4, "big") + rel)
        h.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or ".." in p.parts or "\\" in name:
        raise InvalidInput(f"bundle member {name!r} escapes the bundle; use paths relative "
                           "to the bundle's root")
    return p


def extract_bundle(archive: BinaryIO, dest: Path, max_bytes: int) -> None:
    """Unpack a .tar.gz (or .tar) into ``dest``, refusing anything unsafe."""
    try:
        tar = tarfile.open(fileobj=archive, mode="r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(f"the bundle is not a readable .tar.gz archive: {exc}") from exc
    total = 0
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidInput(f"the bundle archive is corrupt: {exc}") from exc
        if len(members) > MAX_MEMBERS:
            raise InvalidInput(f"the bundle has {len(members)} entries; the limit is "
                               f"{MAX_MEMBERS}")
        for m in members:                   # refused before anything is written
            _check_member(m)
        for m in members:
            rel = _safe_name(m.name)
            if str(rel) in ("", "."):
                continue
            if m.issym() or m.islnk():
                raise InvalidInput(f"bundle member {m.name!r} is a link; bundles may hold "
                                   "only regular files and folders")
            if not (m.isfile() or m.isdir()):
                raise InvalidInput(f"bundle member {m.name!r} is not a regular file or "
                                   "folder")
            target = dest.joinpath(*rel.parts)
            if m.isdir():
                _mkdirs(dest, target)
                continue
            total += m.size
            if total > max_bytes:
                raise PayloadTooLarge(f"the unpacked bundle is larger than {max_bytes} "
                                      "bytes; leave data and weights out of the bundle")
            _mkdirs(dest, target.parent)
            src = tar.extractfile(m)
            if src is None:
                continue
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with src, os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), FILE_MODE)   # a member named twice keeps no old mode
                shutil.copyfileobj(src, out, _CHUNK)


def _check_member(m: tarfile.TarInfo) -> None:
    rel = _safe_name(m.name)
    if rel.name in DATA_DIR_FILES and not m.isdir():
        raise InvalidInput(f"bundle member {m.name!r} is a leptonic data-dir file ({rel.name}: "
                           "the platform's token, key or database); pack only your code, "
                           "with the data dir outside the folder")


def _mkdirs(dest: Path, folder: Path) -> None:
    """``folder`` and its missing parents under ``dest``, each 0700 (``mkdir``'s own mode
    is cut by the umask and not given to parents)."""
    missing = []
    while folder != dest and not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        os.chmod(path, DIR_MODE)


class ArtifactStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidInput(f"invalid artifact digest {digest!r}")
        return self.root / digest

    def stage(self, archive: BinaryIO, max_bytes: int) -> Path:
        """Unpack an upload into a fresh staging folder; the caller commits or discards."""
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        # mkdtemp makes the folder 0700, and the rename in commit() keeps that mode
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=self.root))
        try:
            extract_bundle(archive, staging, max_bytes)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def staging_dir(self) -> Path:
        """A fresh, empty staging folder (0700) to fill; the caller commits or discards."""
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        return Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=self.root))

    def commit(self, staging: Path) -> str:
        """Move a staged bundle to its content address; returns the digest."""
        digest = canonical_digest(staging)
        final = self.path(digest)
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            try:
                os.rename(staging, final)
            except OSError:          # someone else committed the same bundle meanwhile
                shutil.rmtree(staging, ignore_errors=True)
        return digest

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def remove(self, digest: str) -> None:
        shutil.rmtree(self.path(digest), ignore_errors=True)

    def sweep_staging(self) -> int:
        """Remove staging folders left by a process that died mid-upload (not those of a
        live control plane sharing this data dir); returns how many."""
        removed = 0
        if not self.root.exists():
            return 0
        for p in self.root.glob(".staging-*"):
            pid_text = p.name.split("-")[1] if p.name.count("-") >= 2 else ""
            if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
