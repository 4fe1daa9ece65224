"""Rollout state: the repository half of rollouts, mixed into ``Store``.

The controller writes a rollout's ``status``, the API its ``control`` (pause, promote,
abort), in separate columns of one row per deployment, so neither overwrites the other.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from leptonic.core.models import Rollout, RolloutControl, RolloutStatus
from leptonic.errors import NotFound
from leptonic.store import tables as t
from leptonic.store.base import Repository


def _rollout(row: Any) -> Rollout:
    return Rollout(deployment=row.deployment, status=RolloutStatus.model_validate(row.status),
                   control=RolloutControl.model_validate(row.control))


class RolloutsMixin(Repository):
    def _rollout_tx(self) -> AbstractContextManager[Connection]:
        cm: AbstractContextManager[Connection] = self._tx()
        return cm

    def get_rollout(self, deployment: str) -> Rollout | None:
        with self._rollout_tx() as conn:
            row = conn.execute(select(t.rollouts)
                               .where(t.rollouts.c.deployment == deployment)).first()
        return None if row is None else _rollout(row)

    def list_rollouts(self) -> dict[str, Rollout]:
        with self._rollout_tx() as conn:
            rows = conn.execute(select(t.rollouts)).all()
        return {r.deployment: _rollout(r) for r in rows}

    def set_rollout_status(self, deployment: str, status: RolloutStatus) -> None:
        """Controllers only. A deployment deleted meanwhile gets no row."""
        data = status.model_dump(mode="json")
        with self._rollout_tx() as conn:
            res = conn.execute(update(t.rollouts).where(t.rollouts.c.deployment == deployment)
                               .values(status=data, updated_at=time.time()))
            if res.rowcount:
                return
            exists = conn.execute(select(t.deployments.c.name)
                                  .where(t.deployments.c.name == deployment)).first()
            if exists is not None:
                conn.execute(insert(t.rollouts).values(
                    deployment=deployment, status=data,
                    control=RolloutControl(id=status.id).model_dump(mode="json"),
                    updated_at=time.time()))

    def set_rollout_control(self, deployment: str, control: RolloutControl) -> None:
        """The API only: what a user asks of the rollout ``control.id``."""
        with self._rollout_tx() as conn:
            res = conn.execute(update(t.rollouts).where(t.rollouts.c.deployment == deployment)
                               .values(control=control.model_dump(mode="json"),
                                       updated_at=time.time()))
        if not res.rowcount:
            raise NotFound(f"deployment {deployment!r} has no rollout yet")

    def delete_rollout(self, deployment: str) -> None:
        with self._rollout_tx() as conn:
            conn.execute(delete(t.rollouts).where(t.rollouts.c.deployment == deployment))
