"""Training and evaluation as jobs: ``POST /models/{name}/train`` and
``POST /models/{name}/versions/{ref}/evaluate``.

Each starts a job that runs ``python -m leptonic.models.train task.json`` in its sandbox
(the estimator is imported and the pickled model loaded there, never here). The job's
code folder holds ``task.json``, the data (``data.csv`` for a ``csv:`` data set) and, to
evaluate, the version's artifact. When the job succeeds the controller registers its
output as the next version (train) or records its report on the version (evaluate).

Checked here, before anything is written: the data set (a known scikit-learn one, or an
uploaded CSV whose header has the target column), the estimator (a class with ``fit``
from an ML package this platform has installed, constructed with the params given) and,
to evaluate, that the version exists and is a scikit-learn one.
"""

from __future__ import annotations

import asyncio
import csv
import importlib
import importlib.util
import io
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leptonic.api.deps import ApiPlatform, get_platform, principal_of
from leptonic.api.routes.jobs import in_use
from leptonic.api.routes.models import resolve
from leptonic.core.models import Job, JobSpec, ModelTaskRef, Resources, check_name
from leptonic.core.registry import Framework, TrainTask, parse_dataset
from leptonic.errors import InvalidInput, NotFound, PayloadTooLarge
from leptonic.store.model_files import version_dir

router = APIRouter(tags=["models"])

#: where an estimator may come from: importing a module runs its code, and this runs in
#: the control plane, so only the ML packages named here (your own estimator: train it in
#: your own job and register it with ``register_sklearn``)
ESTIMATOR_PACKAGES = ("sklearn", "xgboost", "lightgbm", "catboost")
COMMAND = "python -m leptonic.models.train task.json"
MAX_CSV_BYTES = 256 << 20


class TrainCreate(BaseModel):
    """What ``POST /models/{name}/train`` takes (the ``task`` form field)."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(max_length=4_096, description="sklearn:NAME or csv:PATH[:target=C]")
    estimator: str = Field(max_length=300, description="e.g. sklearn.svm.SVC")
    params: dict[str, Any] = Field(default_factory=dict)
    cv: int | None = Field(default=None, ge=2, le=50, description="K-fold cross-validation")
    test_size: float = Field(default=0.25, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    job: str | None = Field(default=None, description="the job's name (default: generated)")
    resources: Resources | None = None
    priority: int = Field(default=0, ge=-1000, le=1000)


class EvaluateCreate(BaseModel):
    """What ``POST /models/{name}/versions/{ref}/evaluate`` takes."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(max_length=4_096)
    test_size: float = Field(default=0.0, ge=0.0, lt=1.0,
                             description="0: every row; else the held-out part of a "
                                         "seeded split, as in training")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    job: str | None = None
    resources: Resources | None = None
    priority: int = Field(default=0, ge=-1000, le=1000)


def _parse(model: type[BaseModel], text: str) -> Any:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "task"
        raise InvalidInput(f"task: {where}: {first['msg']}") from exc


def check_estimator(dotted: str, params: dict[str, Any]) -> None:
    """422 unless ``dotted`` names an estimator class of an allowed, installed package
    that takes ``params``."""
    module, _, attr = dotted.rpartition(".")
    top = module.split(".", 1)[0]
    if not module or not attr:
        raise InvalidInput(f"unknown estimator {dotted!r}: give its dotted path, e.g. "
                           "sklearn.ensemble.RandomForestClassifier")
    if top not in ESTIMATOR_PACKAGES:
        raise InvalidInput(f"unknown estimator {dotted!r}: training jobs take estimators "
                           f"from {', '.join(ESTIMATOR_PACKAGES)}; train anything else in "
                           "your own job and register it (register_sklearn)")
    if importlib.util.find_spec(top) is None:
        raise InvalidInput(f"unknown estimator {dotted!r}: {top} is not installed on this "
                           "platform")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"unknown estimator {dotted!r}: {exc}") from exc
    if not isinstance(cls, type) or not callable(getattr(cls, "fit", None)):
        raise InvalidInput(f"unknown estimator {dotted!r}: it is not an estimator class "
                           "(no fit method)")
    try:
        cls(**params)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"estimator {dotted}: {exc}") from exc


def check_csv(data: bytes, target: str | None, where: str) -> None:
    """422 unless the CSV has a header, the target column and at least two rows."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{where} is not UTF-8 text") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if len(rows) < 3:
        raise InvalidInput(f"{where} needs a header and at least two rows; it has "
                           f"{len(rows)} line(s)")
    header = rows[0]
    if target is not None and target not in header:
        raise InvalidInput(f"{where} has no column {target!r} (the target); its columns: "
                           + ", ".join(header))
    if len(header) < 2:
        raise InvalidInput(f"{where} needs a feature column and a target column")


async def _read_csv(data: UploadFile | None, dataset: str) -> bytes | None:
    ref = parse_dataset(dataset)
    if ref.kind != "csv":
        if data is not None:
            raise InvalidInput(f"{dataset} is a bundled data set; send a file only for csv:")
        return None
    if data is None:
        raise InvalidInput(f"{dataset}: send the CSV file with the task (the CLI does)")
    raw = await data.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise PayloadTooLarge(f"the CSV is over {MAX_CSV_BYTES >> 20} MiB")
    await asyncio.to_thread(check_csv, raw, ref.target, ref.name)
    return raw


def _job_name(platform: ApiPlatform, given: str | None, kind: str, model: str) -> str:
    if given is not None:
        check_name(given, "job name")
        return given
    name = f"{kind}-{model}"[:40].rstrip("-") + "-" + secrets.token_hex(3)
    check_name(name, "job name")
    return name


def _start(platform: ApiPlatform, name: str, task: TrainTask, csv_data: bytes | None,
           artifact: Path | None, ref: ModelTaskRef, resources: Resources | None,
           priority: int) -> Job:
    """Stage the code folder, then the job's row (the folder is removed on failure)."""
    artifacts = platform.artifacts
    folder = artifacts.staging_dir()
    digest = None
    try:
        (folder / "task.json").write_text(task.model_dump_json())
        if csv_data is not None:
            (folder / "data.csv").write_bytes(csv_data)
        if artifact is not None:
            shutil.copyfile(artifact, folder / "model.joblib")
        digest = artifacts.commit(folder)
        # joblib's process pools need /dev/shm, which the sandbox does not give
        spec = JobSpec(command=COMMAND, code=digest, max_retries=0, priority=priority,
                       resources=resources or Resources(), model_task=ref,
                       env={"JOBLIB_MULTIPROCESSING": "0"}, created_by=ref.by)
        job: Job = platform.store.create_job(name, spec)
    except BaseException:
        if digest is not None and not in_use(platform, digest):
            artifacts.remove(digest)
        raise
    finally:
        artifacts.discard(folder)
    return job


@router.post("/models/{name}/train", status_code=201, response_model=Job)
async def train_model(name: str, request: Request,
                      task: str = Form(..., description="the TrainCreate JSON"),
                      data: UploadFile | None = File(None, description="csv: the data"),
                      platform: ApiPlatform = Depends(get_platform)) -> Job:
    """Start a job that trains ``task.estimator`` on ``task.dataset``, evaluates it and
    registers it as the next version of model ``name``."""
    check_name(name, "model name")
    body: TrainCreate = _parse(TrainCreate, task)
    parse_dataset(body.dataset)
    await asyncio.to_thread(check_estimator, body.estimator, body.params)
    raw = await _read_csv(data, body.dataset)
    job_name = _job_name(platform, body.job, "train", name)
    spec = TrainTask(kind="train", model=name, dataset=body.dataset,
                     estimator=body.estimator, params=body.params, cv=body.cv,
                     test_size=body.test_size, seed=body.seed)
    ref = ModelTaskRef(kind="train", model=name, by=principal_of(request).actor)
    job = await asyncio.to_thread(_start, platform, job_name, spec, raw, None, ref,
                                  body.resources, body.priority)
    await asyncio.to_thread(
        platform.store.add_event, f"job/{job_name}", "Created",
        f"train {body.estimator} on {body.dataset} for model {name} "
        f"(test size {body.test_size}, cv {body.cv or '-'}, seed {body.seed})")
    platform.wake()
    return job


@router.post("/models/{name}/versions/{ref}/evaluate", status_code=201, response_model=Job)
async def evaluate_model(name: str, ref: str, request: Request,
                         task: str = Form(..., description="the EvaluateCreate JSON"),
                         data: UploadFile | None = File(None),
                         platform: ApiPlatform = Depends(get_platform)) -> Job:
    """Start a job that evaluates version ``ref`` of model ``name`` on a data set; its
    report is recorded on the version when it succeeds."""
    body: EvaluateCreate = _parse(EvaluateCreate, task)
    parse_dataset(body.dataset)
    version = await asyncio.to_thread(resolve, platform, name, ref)
    if version.framework is not Framework.SKLEARN or version.format != "joblib":
        raise InvalidInput(f"{name}@{version.version} is {version.framework.value} "
                           f"({version.format}); evaluation jobs load joblib scikit-learn "
                           "models")
    artifact = version_dir(platform.layout.models, name, version.version) / version.artifact
    if not artifact.is_file():
        raise NotFound(f"the artifact of {name}@{version.version} is missing from the data "
                       "dir; register the model again")
    raw = await _read_csv(data, body.dataset)
    job_name = _job_name(platform, body.job, "evaluate", name)
    spec = TrainTask(kind="evaluate", model=name, version=version.version,
                     dataset=body.dataset, test_size=body.test_size, seed=body.seed)
    mref = ModelTaskRef(kind="evaluate", model=name, version=version.version,
                        by=principal_of(request).actor)
    job = await asyncio.to_thread(_start, platform, job_name, spec, raw, artifact, mref,
                                  body.resources, body.priority)
    await asyncio.to_thread(
        platform.store.add_event, f"job/{job_name}", "Created",
        f"evaluate {name}@{version.version} on {body.dataset}"
        + (f" (held-out {body.test_size}, seed {body.seed})" if body.test_size else ""))
    platform.wake()
    return job


def report_of(platform: ApiPlatform, job: Job) -> dict[str, Any] | None:
    """The ``evaluation.json`` a finished model job wrote, if it is there."""
    for a in platform.store.list_attempts(job.name):
        if a.output:
            path = Path(platform.artifacts.path(a.output)) / "evaluation.json"
            if path.is_file():
                data: dict[str, Any] = json.loads(path.read_text())
                return data
    return None
