"""Build photon bundles (.tar.gz) in memory for upload tests."""

from __future__ import annotations

import io
import tarfile

ECHO = (
    "from leptonic import Photon, handler\n\n"
    "class Echo(Photon):\n"
    "    @handler\n"
    "    def echo(self, text: str) -> str:\n"
    "        return text\n"
)


def bundle(files: dict[str, str | bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def upload(client, name: str, entry: str = "app.py:Echo", files: dict | None = None,
           data: bytes | None = None):
    payload = data if data is not None else bundle(files or {"app.py": ECHO})
    return client.post("/api/v1/photons", data={"name": name, "entry": entry},
                       files={"file": ("bundle.tar.gz", payload, "application/gzip")})
