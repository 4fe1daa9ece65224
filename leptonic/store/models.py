"""The model registry's rows, mixed into ``Store``: models, their versions, aliases and
every alias move. The artifacts themselves are files (``api/routes/models.py`` writes them
under ``DATA_DIR/models``); a version row is written only once its file is in place, and
removed before it.

An alias move and its history row are one transaction, as is the gate's read of the
version it compares against: a concurrent move of the same alias is refused (409), never
lost.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from leptonic.core.registry import AliasMove, ModelVersion, RegisteredModel
from leptonic.errors import Conflict, NotFound
from leptonic.store import tables as t
from leptonic.store.base import Repository


def _missing(name: str) -> NotFound:
    return NotFound(f"model {name!r} does not exist; `leptonic model list` shows the models")


def _version(row: Any, aliases: list[str]) -> ModelVersion:
    return ModelVersion.model_validate({**row.data, "aliases": sorted(aliases)})


class ModelsMixin(Repository):
    def _models_tx(self) -> AbstractContextManager[Connection]:
        cm: AbstractContextManager[Connection] = self._tx()
        return cm

    def next_model_version(self, name: str) -> int:
        """The number the next version of ``name`` would get (the artifact's folder)."""
        c = t.model_versions.c
        with self._models_tx() as conn:
            top = conn.execute(select(func.max(c.version)).where(c.model == name)).scalar()
        return int(top or 0) + 1

    def add_model_version(self, version: ModelVersion, reference: dict[str, Any] | None,
                          by: str | None) -> ModelVersion:
        """Record ``version`` (its number as reserved by :meth:`next_model_version`); the
        model is created with its first version. Conflict when that number was taken
        meanwhile (the caller picks the next and moves its file)."""
        now = version.created_at
        data = version.model_dump(mode="json", exclude={"aliases"})
        try:
            with self._models_tx() as conn:
                exists = conn.execute(select(t.models.c.name).where(
                    t.models.c.name == version.model)).first()
                if exists is None:
                    conn.execute(insert(t.models).values(name=version.model, created_at=now,
                                                         created_by=by))
                conn.execute(insert(t.model_versions).values(
                    model=version.model, version=version.version, data=data,
                    reference=reference, created_at=now))
        except IntegrityError as exc:
            raise Conflict(f"version {version.version} of model {version.model!r} was "
                           "registered at the same time; register again") from exc
        return self.get_model_version(version.model, version.version)

    def list_models(self) -> list[RegisteredModel]:
        with self._models_tx() as conn:
            names = [r.name for r in conn.execute(select(t.models).order_by(t.models.c.name))]
        return [self.get_model(n) for n in names]

    def get_model(self, name: str) -> RegisteredModel:
        with self._models_tx() as conn:
            row = conn.execute(select(t.models).where(t.models.c.name == name)).first()
            if row is None:
                raise _missing(name)
            c = t.model_versions.c
            rows = conn.execute(select(c.model, c.version, c.data).where(c.model == name)
                                .order_by(c.version)).all()
            aliases = self._aliases(conn, name)
        by_version: dict[int, list[str]] = {}
        for alias, v in aliases.items():
            by_version.setdefault(v, []).append(alias)
        versions = [_version(r, by_version.get(r.version, [])) for r in rows]
        return RegisteredModel(name=name, created_at=row.created_at,
                               latest=versions[-1].version if versions else None,
                               aliases=aliases, versions=versions)

    def _aliases(self, conn: Connection, name: str) -> dict[str, int]:
        c = t.model_aliases.c
        return {r.alias: int(r.version) for r in conn.execute(
            select(c.alias, c.version).where(c.model == name).order_by(c.alias))}

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        c = t.model_versions.c
        with self._models_tx() as conn:
            row = conn.execute(select(c.model, c.version, c.data).where(
                c.model == name, c.version == version)).first()
            if row is None:
                if conn.execute(select(t.models.c.name).where(
                        t.models.c.name == name)).first() is None:
                    raise _missing(name)
                raise NotFound(f"model {name!r} has no version {version}; `leptonic model get "
                               f"{name}` lists its versions")
            aliases = [a for a, v in self._aliases(conn, name).items() if v == version]
        return _version(row, aliases)

    def model_reference(self, name: str, version: int) -> dict[str, Any] | None:
        c = t.model_versions.c
        with self._models_tx() as conn:
            ref = conn.execute(select(c.reference).where(c.model == name,
                                                         c.version == version)).scalar()
        return dict(ref) if ref else None

    def resolve_model_alias(self, name: str, alias: str) -> int:
        c = t.model_aliases.c
        with self._models_tx() as conn:
            v = conn.execute(select(c.version).where(c.model == name,
                                                     c.alias == alias)).scalar()
        if v is None:
            self.get_model(name)            # NotFound for the model first
            raise NotFound(f"model {name!r} has no alias {alias!r}; set it with `leptonic "
                           f"model alias {name}@VERSION {alias}`")
        return int(v)

    def move_model_alias(self, name: str, alias: str, version: int | None,
                         expected: int | None, by: str | None,
                         now: float | None = None) -> AliasMove:
        """Point ``alias`` at ``version`` (None: remove it), provided it still points where
        the caller read it (``expected``; None: unset), and record the move."""
        now = time.time() if now is None else now
        c = t.model_aliases.c
        with self._models_tx() as conn:
            current = conn.execute(select(c.version).where(c.model == name,
                                                           c.alias == alias)).scalar()
            if current != expected:
                raise Conflict(f"alias {alias!r} of model {name!r} moved meanwhile (to "
                               f"version {current}); try again")
            if version is None:
                conn.execute(delete(t.model_aliases).where(c.model == name, c.alias == alias))
            elif current is None:
                try:
                    conn.execute(insert(t.model_aliases).values(
                        model=name, alias=alias, version=version, updated_at=now,
                        updated_by=by))
                except IntegrityError as exc:
                    raise Conflict(f"alias {alias!r} of model {name!r} was set meanwhile; "
                                   "try again") from exc
            else:
                conn.execute(update(t.model_aliases).where(
                    c.model == name, c.alias == alias).values(
                    version=version, updated_at=now, updated_by=by))
            conn.execute(insert(t.model_alias_moves).values(
                model=name, alias=alias, from_version=current, to_version=version, at=now,
                by=by))
        return AliasMove(model=name, alias=alias, from_version=current, to_version=version,
                         at=now, by=by)

    def model_alias_history(self, name: str) -> list[AliasMove]:
        self.get_model(name)
        c = t.model_alias_moves.c
        with self._models_tx() as conn:
            rows = conn.execute(select(t.model_alias_moves).where(c.model == name)
                                .order_by(c.id)).all()
        return [AliasMove(model=r.model, alias=r.alias, from_version=r.from_version,
                          to_version=r.to_version, at=r.at, by=r.by) for r in rows]

    def delete_model_version(self, name: str, version: int) -> None:
        """Remove a version's row; Conflict while an alias points at it."""
        self.get_model_version(name, version)
        with self._models_tx() as conn:
            held = sorted(a for a, v in self._aliases(conn, name).items() if v == version)
            if held:
                raise Conflict(f"version {version} of model {name!r} is {', '.join(held)}; "
                               "move or remove the alias first (`leptonic model alias "
                               f"{name}@OTHER {held[0]}`)")
            c = t.model_versions.c
            conn.execute(delete(t.model_versions).where(c.model == name, c.version == version))

    def delete_model(self, name: str) -> None:
        """Remove a model, its versions, aliases and history."""
        self.get_model(name)
        with self._models_tx() as conn:
            for table in (t.model_alias_moves, t.model_aliases, t.model_versions):
                conn.execute(delete(table).where(table.c.model == name))
            conn.execute(delete(t.models).where(t.models.c.name == name))
