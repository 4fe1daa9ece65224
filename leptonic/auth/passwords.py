"""Passwords: argon2id (memory-hard) via argon2-cffi, with its recommended parameters."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from leptonic.errors import InvalidInput

_hasher = PasswordHasher()
MIN_LENGTH = 8
MAX_LENGTH = 1024
# verifying against this keeps the time of "no such user" equal to "wrong password"
_DUMMY = _hasher.hash("leptonic-timing-equaliser")


def check_password_rules(password: str) -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidInput(f"passwords are {MIN_LENGTH} to {MAX_LENGTH} characters long")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password_rules(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
