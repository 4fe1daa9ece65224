"""Jobs and their attempts: the repository half of batch jobs, mixed into ``Store``.

The API writes a job's spec and its ``cancelled``/``deleting`` flags; the controller its
status and every attempt row. ``finished`` mirrors the status so the controller's every
tick reads only the jobs that still need it.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from leptonic.core.models import AttemptState, Job, JobAttempt, JobSpec, JobStatus
from leptonic.errors import Conflict, NotFound
from leptonic.store import tables as t
from leptonic.store.base import Repository


def _job(row: Any) -> Job:
    return Job(name=row.name, spec=JobSpec.model_validate(row.spec),
               status=JobStatus.model_validate(row.status), cancelled=bool(row.cancelled),
               deleting=bool(row.deleting), created_at=row.created_at,
               updated_at=row.updated_at)


def _missing(name: str) -> NotFound:
    return NotFound(f"job {name!r} does not exist; `leptonic job list` shows the jobs")


class JobsMixin(Repository):
    def _jobs_tx(self) -> AbstractContextManager[Connection]:
        cm: AbstractContextManager[Connection] = self._tx()
        return cm

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, name: str, spec: JobSpec, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        try:
            with self._jobs_tx() as conn:
                conn.execute(insert(t.jobs).values(
                    name=name, spec=spec.model_dump(mode="json"),
                    status=JobStatus(updated_at=now).model_dump(mode="json"),
                    cancelled=False, deleting=False, finished=False, created_at=now,
                    updated_at=now))
        except IntegrityError as exc:
            raise Conflict(f"job {name!r} already exists; pick another name or delete it "
                           f"first (`leptonic job delete {name}`)") from exc
        return self.get_job(name)

    def get_job(self, name: str) -> Job:
        with self._jobs_tx() as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.name == name)).first()
        if row is None:
            raise _missing(name)
        return _job(row)

    def list_jobs(self, *, live: bool = False) -> list[Job]:
        """Every job, newest first; ``live``: only those not finished or being deleted."""
        q = select(t.jobs)
        if live:
            q = q.where(or_(t.jobs.c.finished.is_(False), t.jobs.c.deleting.is_(True)))
        with self._jobs_tx() as conn:
            rows = conn.execute(q.order_by(t.jobs.c.created_at.desc(), t.jobs.c.name)).all()
        return [_job(r) for r in rows]

    def set_job_status(self, name: str, status: JobStatus) -> None:
        """Controllers only. A job removed meanwhile is silently skipped."""
        with self._jobs_tx() as conn:
            conn.execute(update(t.jobs).where(t.jobs.c.name == name).values(
                status=status.model_dump(mode="json"), finished=status.finished))

    def cancel_job(self, name: str, now: float | None = None) -> Job:
        """Ask the controller to stop the job (Failed, Cancelled); 409 once finished."""
        now = time.time() if now is None else now
        with self._jobs_tx() as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.name == name)
                               .with_for_update()).first()
            if row is None:
                raise _missing(name)
            job = _job(row)
            if job.status.finished:
                raise Conflict(f"job {name!r} already {job.status.phase.value.lower()}"
                               + (f" ({job.status.reason})" if job.status.reason else "")
                               + "; there is nothing to cancel")
            if job.deleting:
                raise Conflict(f"job {name!r} is being deleted")
            conn.execute(update(t.jobs).where(t.jobs.c.name == name)
                         .values(cancelled=True, updated_at=now))
        return self.get_job(name)

    def mark_job_deleting(self, name: str, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        with self._jobs_tx() as conn:
            res = conn.execute(update(t.jobs).where(t.jobs.c.name == name)
                               .values(deleting=True, updated_at=now))
            if res.rowcount == 0:
                raise _missing(name)
        return self.get_job(name)

    def remove_job(self, name: str) -> set[str]:
        """Drop the job and its attempts; returns the artifact digests they referenced."""
        with self._jobs_tx() as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.name == name)).first()
            attempts = conn.execute(select(t.job_attempts.c.data)
                                    .where(t.job_attempts.c.job == name)).scalars().all()
            conn.execute(delete(t.job_attempts).where(t.job_attempts.c.job == name))
            conn.execute(delete(t.jobs).where(t.jobs.c.name == name))
            conn.execute(delete(t.run_uids).where(t.run_uids.c.owner == f"job:{name}"))
        digests = {d.get("output") for d in attempts if d.get("output")}
        if row is not None:
            digests |= {row.spec.get("code"), row.spec.get("inputs")}
        return {d for d in digests if d}

    def job_digests_in_use(self) -> set[str]:
        """Artifact digests any job still refers to (code, inputs, outputs)."""
        with self._jobs_tx() as conn:
            specs = conn.execute(select(t.jobs.c.spec)).scalars().all()
            outputs = conn.execute(select(t.job_attempts.c.data)).scalars().all()
        used = {s.get(k) for s in specs for k in ("code", "inputs")}
        used |= {d.get("output") for d in outputs}
        return {d for d in used if d}

    # -- attempts -------------------------------------------------------------------------
    def list_attempts(self, job: str | None = None, *, running: bool = False
                      ) -> list[JobAttempt]:
        q = select(t.job_attempts.c.data)
        if job is not None:
            q = q.where(t.job_attempts.c.job == job)
        if running:
            q = q.where(t.job_attempts.c.state == AttemptState.RUNNING.value)
        with self._jobs_tx() as conn:
            rows = conn.execute(q).scalars().all()
        out = [JobAttempt.model_validate(d) for d in rows]
        out.sort(key=lambda a: (a.job, a.index, a.number, a.created_at))
        return out

    def upsert_attempt(self, attempt: JobAttempt) -> None:
        data = attempt.model_dump(mode="json")
        with self._jobs_tx() as conn:
            t.upsert(conn, t.job_attempts, {"id": attempt.id},
                     {"job": attempt.job, "idx": attempt.index,
                      "state": attempt.state.value, "data": data})
