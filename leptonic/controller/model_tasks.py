"""What a model registry job leaves behind once it succeeded (``JobSpec.model_task``).

``train``: its output (``model.joblib`` and ``version.json``, written by
``leptonic.models.train`` in the job's sandbox) becomes the next version of the model,
with the job in its lineage. Done before the job is marked Succeeded, and at most once: a
version whose lineage names this job is the one registered before a restart.
``evaluate``: its report becomes an ``Evaluated`` event of the model, with the figures.

A train job whose output cannot be registered (a file missing, a meta the registry
refuses) fails with ``RegisterFailed`` and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leptonic.core.models import AttemptState, Job, JobAttempt
from leptonic.core.registry import VersionMeta
from leptonic.errors import LeptonicError, NotFound
from leptonic.store.model_files import register, registered_event

if TYPE_CHECKING:
    from leptonic.store.store import Store

MAX_META_BYTES = 8 << 20


class ModelTaskFailed(Exception):
    """Why the job's output could not be taken in (the job then fails)."""


def _output(ctx: Any, attempts: list[JobAttempt]) -> Path:
    for a in attempts:
        if a.state is AttemptState.SUCCEEDED and a.output:
            return Path(ctx.artifacts.path(a.output))
    raise ModelTaskFailed("the job wrote no output")


def _registered(store: Store, model: str, job: str) -> Any:
    try:
        versions = store.get_model(model).versions
    except NotFound:
        return None
    return next((v for v in versions if v.lineage.get("job") == job), None)


def finish_train(ctx: Any, job: Job, attempts: list[JobAttempt]) -> Any:
    """Register the job's model as the next version (sync); the version."""
    task = job.spec.model_task
    assert task is not None
    store = ctx.store
    done = _registered(store, task.model, job.name)
    if done is not None:
        return done
    out = _output(ctx, attempts)
    meta_path, model_path = out / "version.json", out / "model.joblib"
    for p in (meta_path, model_path):
        if not p.is_file():
            raise ModelTaskFailed(f"the job's output has no {p.name}")
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise ModelTaskFailed(f"version.json is over {MAX_META_BYTES >> 20} MiB")
    try:
        meta = VersionMeta.model_validate_json(meta_path.read_text())
    except ValueError as exc:
        raise ModelTaskFailed(f"version.json: {str(exc).splitlines()[0]}") from exc
    meta = meta.model_copy(update={"lineage": {
        **meta.lineage, "job": job.name, "logs": f"/api/v1/jobs/{job.name}/logs"}})
    if ctx.models_root is None:
        raise ModelTaskFailed("this control plane keeps no models (no data dir)")
    try:
        with model_path.open("rb") as f:
            version = register(store, ctx.models_root, task.model, "model.joblib", meta, f,
                               task.by)
    except LeptonicError as exc:
        raise ModelTaskFailed(exc.detail) from exc
    store.add_event(f"model/{task.model}", "Registered",
                    registered_event(version) + f" by job {job.name}")
    return version


def finish_evaluate(ctx: Any, job: Job, attempts: list[JobAttempt]) -> dict[str, Any]:
    """Record the report as an event of the model (sync); the report."""
    task = job.spec.model_task
    assert task is not None
    path = _output(ctx, attempts) / "evaluation.json"
    if not path.is_file():
        raise ModelTaskFailed("the job's output has no evaluation.json")
    try:
        report: dict[str, Any] = json.loads(path.read_text())
        metrics = {str(k): float(v) for k, v in dict(report["metrics"]).items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelTaskFailed(f"evaluation.json is not a report: {exc}") from exc
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
    ctx.store.add_event(f"model/{task.model}", "Evaluated",
                        f"version {task.version} on {report.get('dataset')} "
                        f"({report.get('rows')} rows) by job {job.name}: {shown}")
    return report


def finish(ctx: Any, job: Job, attempts: list[JobAttempt]) -> str | None:
    """Take in a succeeded model job's output (sync); None, or why the job fails."""
    task = job.spec.model_task
    if task is None:
        return None
    try:
        if task.kind == "train":
            finish_train(ctx, job, attempts)
        else:
            finish_evaluate(ctx, job, attempts)
    except ModelTaskFailed as exc:
        return str(exc)
    return None
