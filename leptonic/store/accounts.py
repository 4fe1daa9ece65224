"""Users, tokens, secrets and the audit log: the repository half of ``leptonic.auth``.

Mixed into ``Store``; every method is one transaction. Only hashes of tokens and
passwords and ciphertexts of secrets ever reach the database.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from leptonic.errors import Conflict, NotFound
from leptonic.store import tables as t
from leptonic.store.base import Repository


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class AccountsMixin(Repository):
    def _conn(self) -> AbstractContextManager[Connection]:
        cm: AbstractContextManager[Connection] = self._tx()
        return cm

    # -- users ----------------------------------------------------------------------------
    def add_user(self, username: str, password_hash: str, role: str) -> dict[str, Any]:
        try:
            with self._conn() as conn:
                conn.execute(insert(t.users).values(
                    username=username, password_hash=password_hash, role=role,
                    disabled=False, created_at=time.time()))
        except IntegrityError as exc:
            raise Conflict(f"user {username!r} already exists") from exc
        return self.get_user(username)

    def get_user(self, username: str) -> dict[str, Any]:
        with self._conn() as conn:
            row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
        if row is None:
            raise NotFound(f"user {username!r} does not exist")
        return _row(row)

    def find_user(self, username: str) -> dict[str, Any] | None:
        try:
            return self.get_user(username)
        except NotFound:
            return None

    def user_by_id(self, user_id: int) -> dict[str, Any] | None:
        with self._conn() as conn:
            row = conn.execute(select(t.users).where(t.users.c.id == user_id)).first()
        return _row(row) if row is not None else None

    def list_users(self) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return [_row(r) for r in conn.execute(select(t.users).order_by(t.users.c.username))]

    def update_user(self, username: str, **fields: Any) -> dict[str, Any]:
        allowed = {"password_hash", "role", "disabled", "last_login_at"}
        values = {k: v for k, v in fields.items() if k in allowed}
        with self._conn() as conn:
            res = conn.execute(update(t.users).where(t.users.c.username == username)
                               .values(**values))
            if res.rowcount == 0:
                raise NotFound(f"user {username!r} does not exist")
            if "disabled" in values or "role" in values or "password_hash" in values:
                # a changed account ends its sessions
                uid = conn.execute(select(t.users.c.id)
                                   .where(t.users.c.username == username)).scalar_one()
                conn.execute(update(t.tokens).where((t.tokens.c.user_id == uid)
                                                    & (t.tokens.c.kind == "session"))
                             .values(revoked=True))
        return self.get_user(username)

    def delete_user(self, username: str) -> None:
        with self._conn() as conn:
            uid = conn.execute(select(t.users.c.id)
                               .where(t.users.c.username == username)).scalar()
            if uid is None:
                raise NotFound(f"user {username!r} does not exist")
            conn.execute(update(t.tokens).where(t.tokens.c.user_id == uid)
                         .values(revoked=True))
            conn.execute(delete(t.users).where(t.users.c.id == uid))

    def count_admins(self) -> int:
        with self._conn() as conn:
            return int(conn.execute(select(func.count()).select_from(t.users).where(
                (t.users.c.role == "admin") & (t.users.c.disabled.is_(False)))).scalar_one())

    # -- tokens ---------------------------------------------------------------------------
    def insert_token(self, *, name: str, token_hash: str, role: str, kind: str = "api",
                     user_id: int | None = None, deployment: str | None = None,
                     expires_at: float | None = None, rate_limit_rps: float | None = None,
                     created_by: str | None = None) -> dict[str, Any]:
        with self._conn() as conn:
            res = conn.execute(insert(t.tokens).values(
                name=name, hash=token_hash, role=role, kind=kind, user_id=user_id,
                deployment=deployment, expires_at=expires_at, rate_limit_rps=rate_limit_rps,
                created_by=created_by, created_at=time.time(), revoked=False))
            tid = res.inserted_primary_key[0]  # type: ignore[index]
            row = conn.execute(select(t.tokens).where(t.tokens.c.id == tid)).first()
        return _row(row)

    def list_tokens(self, kind: str | None = "api") -> list[dict[str, Any]]:
        q = select(t.tokens).order_by(t.tokens.c.id)
        if kind is not None:
            q = q.where(t.tokens.c.kind == kind)
        with self._conn() as conn:
            return [_row(r) for r in conn.execute(q)]

    def get_token(self, token_id: int) -> dict[str, Any]:
        with self._conn() as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        return _row(row)

    def revoke_token(self, token_id: int) -> None:
        with self._conn() as conn:
            res = conn.execute(update(t.tokens).where(t.tokens.c.id == token_id)
                               .values(revoked=True))
        if res.rowcount == 0:
            raise NotFound(f"token {token_id} does not exist")

    def revoke_token_hash(self, token_hash: str) -> None:
        with self._conn() as conn:
            conn.execute(update(t.tokens).where(t.tokens.c.hash == token_hash)
                         .values(revoked=True))

    # -- secrets --------------------------------------------------------------------------
    def put_secret(self, name: str, ciphertext: str, actor: str, *,
                   create: bool) -> dict[str, Any]:
        now = time.time()
        with self._conn() as conn:
            exists = conn.execute(select(t.secrets.c.name)
                                  .where(t.secrets.c.name == name)).first() is not None
            if create and exists:
                raise Conflict(f"secret {name!r} already exists; use `leptonic secret "
                               f"update {name}` to change its value")
            if not create and not exists:
                raise NotFound(f"secret {name!r} does not exist")
            if exists:
                conn.execute(update(t.secrets).where(t.secrets.c.name == name)
                             .values(ciphertext=ciphertext, updated_at=now))
            else:
                conn.execute(insert(t.secrets).values(name=name, ciphertext=ciphertext,
                                                      created_at=now, updated_at=now,
                                                      created_by=actor))
        return self.secret_meta(name)

    def secret_meta(self, name: str) -> dict[str, Any]:
        with self._conn() as conn:
            row = conn.execute(select(t.secrets.c.name, t.secrets.c.created_at,
                                      t.secrets.c.updated_at, t.secrets.c.created_by)
                               .where(t.secrets.c.name == name)).first()
        if row is None:
            raise NotFound(f"secret {name!r} does not exist")
        return _row(row)

    def secret_ciphertext(self, name: str) -> str:
        with self._conn() as conn:
            value = conn.execute(select(t.secrets.c.ciphertext)
                                 .where(t.secrets.c.name == name)).scalar()
        if value is None:
            raise NotFound(f"secret {name!r} does not exist; create it with "
                           f"`leptonic secret create {name}`")
        return str(value)

    def list_secrets(self) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return [_row(r) for r in conn.execute(
                select(t.secrets.c.name, t.secrets.c.created_at, t.secrets.c.updated_at,
                       t.secrets.c.created_by).order_by(t.secrets.c.name))]

    def delete_secret(self, name: str) -> None:
        with self._conn() as conn:
            users = [r.name for r in conn.execute(select(t.deployments.c.name,
                                                         t.deployments.c.spec))
                     if name in ((r.spec or {}).get("secrets") or [])]
            if users:
                raise Conflict(f"secret {name!r} is used by deployment(s) "
                               f"{', '.join(sorted(users))}")
            res = conn.execute(delete(t.secrets).where(t.secrets.c.name == name))
        if res.rowcount == 0:
            raise NotFound(f"secret {name!r} does not exist")

    # -- audit ----------------------------------------------------------------------------
    def add_audit(self, actor: str, action: str, obj: str, status: int, source: str) -> None:
        with self._conn() as conn:
            conn.execute(insert(t.audit).values(time=time.time(), actor=actor[:128],
                                                action=action[:16], object=obj[:300],
                                                status=status, source=source[:64]))

    def list_audit(self, limit: int = 100, actor: str | None = None) -> list[dict[str, Any]]:
        q = select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
        if actor is not None:
            q = q.where(t.audit.c.actor == actor)
        with self._conn() as conn:
            return [_row(r) for r in conn.execute(q)]


__all__ = ["AccountsMixin"]
