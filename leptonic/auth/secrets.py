"""Secrets encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key lives outside the database: ``$LEPTONIC_SECRET_KEY`` (a Fernet key), else the file
``DATA_DIR/secret-key`` (mode 0600, created on first use). A stolen database alone reveals
no secret; rotating the key means re-creating the secrets.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from leptonic.errors import BackendError

KEY_ENV = "LEPTONIC_SECRET_KEY"


def load_or_create_key(path: Path) -> bytes:
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:            # another process created it meanwhile
        return path.read_bytes().strip()
    try:
        os.write(fd, key + b"\n")
    finally:
        os.close(fd)
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise BackendError(f"the secrets key is not a valid Fernet key ({KEY_ENV} or "
                               "DATA_DIR/secret-key)") from exc

    @classmethod
    def for_data_dir(cls, root: Path) -> SecretBox:
        return cls(load_or_create_key(root / "secret-key"))

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise BackendError("a stored secret cannot be decrypted with this key; was "
                               f"{KEY_ENV} or DATA_DIR/secret-key changed?") from exc
