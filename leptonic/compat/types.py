"""``File`` and ``FileParam``: the classic leptonai file inputs (base64 in JSON, or a URL)."""

from __future__ import annotations

import base64
import re
import tempfile
from io import BytesIO
from typing import IO, Any

from pydantic import BaseModel, field_serializer, field_validator

_DATA_URL = re.compile(r"^data:.*;base64,")
_OCTET_PREFIX = "data:application/octet-stream;base64,"
_ENCODED_PREFIX = "encoded:"


class File(BaseModel):
    """A file sent in JSON: bytes (as a ``data:`` base64 URL) or an http(s) URL."""

    content: bytes | str

    def __init__(self, content: Any = None, **data: Any) -> None:
        if content is None:
            content = data.pop("content", None)
        if isinstance(content, File):
            content = content.content
        if hasattr(content, "read"):
            content = content.read()
        super().__init__(content=content)

    @field_validator("content", mode="before")
    @classmethod
    def _validate(cls, content: Any) -> Any:
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            if content.startswith(("http://", "https://")) or _DATA_URL.match(content):
                return content
            if content.startswith(_ENCODED_PREFIX):
                return _OCTET_PREFIX + content[len(_ENCODED_PREFIX):]
        raise ValueError("content must be bytes, a base64 data: URL or an http(s) URL")

    @field_serializer("content")
    def _encode(self, content: bytes | str) -> str:
        return self.encode(content)

    @staticmethod
    def encode(content: bytes | str) -> str:
        if isinstance(content, bytes):
            return _OCTET_PREFIX + base64.b64encode(content).decode()
        return content

    def get_content(self) -> bytes:
        """The bytes (a URL is downloaded first)."""
        if isinstance(self.content, str):
            if _DATA_URL.match(self.content):
                self.content = base64.b64decode(self.content.split(",", 1)[1])
            else:
                import httpx

                res = httpx.get(self.content, follow_redirects=True, timeout=60)
                res.raise_for_status()
                self.content = res.content
        return self.content

    def get_bytesio(self) -> IO[bytes]:
        return BytesIO(self.get_content())

    def get_temp_file(self, delete: bool = True) -> Any:
        f = tempfile.NamedTemporaryFile(mode="w+b", delete=delete)  # noqa: SIM115  (the caller owns it)
        f.write(self.get_content())
        f.flush()
        f.seek(0)
        return f


class FileParam(BaseModel):
    """The older file input: ``encoded:<base64>`` in JSON (deprecated in leptonai)."""

    content: bytes

    def __init__(self, content: Any = None, **data: Any) -> None:
        super().__init__(content=data.pop("content", None) if content is None else content)

    @field_validator("content", mode="before")
    @classmethod
    def _validate(cls, content: Any) -> Any:
        if hasattr(content, "read"):
            return content.read()
        if isinstance(content, str):
            if content.startswith(_ENCODED_PREFIX):
                return base64.b64decode(content[len(_ENCODED_PREFIX):])
            return content.encode()
        return content

    @field_serializer("content")
    def _encode(self, content: bytes) -> str:
        return self.encode(content)

    @staticmethod
    def encode(content: bytes) -> str:
        return _ENCODED_PREFIX + base64.b64encode(content).decode()

    @property
    def file(self) -> IO[bytes]:
        return BytesIO(self.content)
