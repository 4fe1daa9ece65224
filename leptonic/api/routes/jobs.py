"""Jobs: a command in an uploaded code folder, or a photon's handler over inputs; the
user's spec in, the controller's status out; logs per attempt; the output as a .tar.gz.

``POST /jobs`` is ``multipart/form-data``: ``job`` (the JSON of ``JobCreate``) and the
optional files ``code`` (a .tar.gz of the code folder, as ``photon create`` packs it) and
``inputs`` (JSON Lines). Everything is checked before anything is stored: bad input leaves
no row and no artifact behind.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leptonic.api.deps import ApiPlatform, get_platform, principal_of
from leptonic.api.routes.deployments import _check_env, _check_fits, _check_secrets
from leptonic.core.jobs import attempt_resources
from leptonic.core.models import (
    DEFAULT_MAX_OUTPUT_MB,
    MAX_COMPLETIONS,
    AttemptState,
    Event,
    Job,
    JobAttempt,
    JobScale,
    JobSpec,
    JobType,
    PhotonRef,
    PlacementSpec,
    Resources,
    check_env_bounds,
    check_labels,
    check_name,
)
from leptonic.errors import InvalidInput, NotFound, PayloadTooLarge
from leptonic.observe.logs import follow, search_file

router = APIRouter(tags=["jobs"])

MAX_INPUT_LINES = 1_000_000


class JobCreate(BaseModel):
    """What ``POST /jobs`` takes (the ``job`` form field)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: JobType = JobType.COMPUTATION
    scale: JobScale | None = None
    command: str | None = Field(default=None, max_length=16_384)
    photon: str | None = Field(default=None, description="NAME, NAME@N or NAME@vN")
    handler: str | None = None
    completions: int | None = Field(default=None, ge=1, le=MAX_COMPLETIONS)
    parallelism: int = Field(default=1, ge=1, le=1024)
    max_retries: int = Field(default=3, ge=0, le=100)
    backoff_s: float = Field(default=10.0, ge=0, le=3600)
    backoff_max_s: float = Field(default=360.0, ge=0, le=86_400)
    deadline_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    ttl_after_finished_s: float | None = Field(default=None, ge=0, le=365 * 86_400)
    priority: int = Field(default=0, ge=-1000, le=1000)
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, max_length=100)
    resources: Resources | None = None
    placement: PlacementSpec | None = None
    memory_limit_mb: int | None = Field(default=None, ge=16)
    max_output_mb: int = Field(default=DEFAULT_MAX_OUTPUT_MB, ge=0, le=100 * 1024)
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="for usage and cost: --by label:KEY")


def _parse(text: str) -> JobCreate:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("the job field is not valid JSON") from exc
    try:
        return JobCreate.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(_choices(exc)) from exc


def _choices(exc: ValidationError) -> str:
    """The first validation error, naming the allowed values of an enum field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "job"
    if first.get("type") == "enum":
        allowed = (first.get("ctx") or {}).get("expected", "")
        return f"{where}: {first.get('input')!r} is not one of {allowed}"
    return f"{where}: {first.get('msg')}"


def _spec(platform: ApiPlatform, body: JobCreate) -> JobSpec:
    """The spec to store, every rule checked (nothing is written here)."""
    check_name(body.name, "job name")
    check_env_bounds(body.env, body.secrets)
    fields = body.model_dump(exclude={"name", "photon", "completions", "resources",
                                      "placement", "memory_limit_mb"}, exclude_unset=True)
    fields["env"] = _check_env(body.env)
    fields["secrets"] = _check_secrets(platform, body.secrets)
    fields["labels"] = check_labels(body.labels)
    if body.resources is not None:
        fields["resources"] = body.resources
    if body.placement is not None:
        fields["placement"] = body.placement
    if body.memory_limit_mb is not None:
        fields["memory_limit_mb"] = body.memory_limit_mb
    try:                # the shape first (command or handler): 422 before any lookup
        JobSpec.model_validate({**fields, "photon": body.photon})
    except ValidationError as exc:
        raise InvalidInput(_choices(exc)) from exc
    if body.photon is not None:
        ref = PhotonRef.parse(body.photon)
        if ref.builtin:
            raise InvalidInput("a photon job runs a stored photon; built-in photons are "
                               "served by deployments")
        pv = platform.store.get_photon(ref.name, ref.version)
        if body.handler and body.handler not in {h.name for h in pv.handlers}:
            raise InvalidInput(f"photon {pv.name}@{pv.version} has no handler "
                               f"{body.handler!r}; it has: "
                               + (", ".join(h.name for h in pv.handlers) or "none"))
        fields.update(photon=pv.name, photon_version=pv.version)
    if body.completions is not None:
        fields["completions"] = body.completions
    try:
        spec = JobSpec.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInput(_choices(exc)) from exc
    res = attempt_resources(spec)
    if not res.is_zero():
        _check_fits(platform, res)
    if spec.memory_limit_mb is not None and res.memory_mb > spec.memory_limit_mb:
        spec = spec.model_copy(update={"memory_limit_mb": res.memory_mb})
    return spec


def _inputs_folder(data: bytes, dest: Path) -> int:
    """Check the JSON Lines and write them as ``dest/inputs.jsonl``; the line count."""
    lines = [line for line in data.splitlines() if line.strip()]
    if len(lines) > MAX_INPUT_LINES:
        raise InvalidInput(f"{len(lines)} input lines: a job takes at most {MAX_INPUT_LINES}")
    for n, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(f"inputs line {n} is not JSON") from exc
        if not isinstance(item, dict):
            raise InvalidInput(f"inputs line {n} is not a JSON object of the handler's "
                               "inputs")
    dest.mkdir(mode=0o700, exist_ok=True)
    (dest / "inputs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


@router.post("/jobs", status_code=201, response_model=Job)
async def create_job(request: Request,
                     job: str = Form(..., description="the JobCreate JSON"),
                     code: UploadFile | None = File(None),
                     inputs: UploadFile | None = File(None),
                     platform: ApiPlatform = Depends(get_platform)) -> Job:
    """Check the job, store its code and inputs content-addressed, then its row."""
    body = _parse(job)
    spec = await asyncio.to_thread(_spec, platform, body)
    spec = spec.model_copy(update={"created_by": principal_of(request).actor})
    if spec.command is not None and inputs is not None:
        raise InvalidInput("--inputs are for photon jobs; a command reads its own files")
    if spec.photon is not None and code is not None:
        raise InvalidInput("a photon job runs the photon's stored code; leave --path out")
    if spec.photon is not None and inputs is None:
        raise InvalidInput("a photon job needs its inputs (--inputs FILE.jsonl: one JSON "
                           "object of the handler's inputs per line)")
    artifacts = platform.artifacts
    staged: list[Path] = []
    try:
        if code is not None:
            staging = await asyncio.to_thread(artifacts.stage, code.file,
                                              platform.settings.max_bundle_bytes)
            staged.append(staging)
            spec = spec.model_copy(update={"code": await asyncio.to_thread(
                artifacts.commit, staging)})
        if inputs is not None:
            data = await inputs.read(platform.settings.max_bundle_bytes + 1)
            if len(data) > platform.settings.max_bundle_bytes:
                raise PayloadTooLarge("the inputs are larger than the bundle limit")
            folder = await asyncio.to_thread(artifacts.staging_dir)
            staged.append(folder)
            count = await asyncio.to_thread(_inputs_folder, data, folder)
            if spec.completions > max(count, 1):
                raise InvalidInput(f"{spec.completions} completions for {count} input "
                                   "line(s): every index needs at least one")
            spec = spec.model_copy(update={"inputs": await asyncio.to_thread(
                artifacts.commit, folder), "inputs_count": count})
        created: Job = await asyncio.to_thread(platform.store.create_job, body.name, spec)
    except BaseException:
        for digest in (spec.code, spec.inputs):
            if digest and not await asyncio.to_thread(in_use, platform, digest):
                await asyncio.to_thread(artifacts.remove, digest)
        raise
    finally:
        for folder in staged:
            artifacts.discard(folder)               # a no-op once committed
    what = f"command {spec.command!r}" if spec.command is not None else \
        f"photon {spec.photon}@{spec.photon_version} {spec.handler} over " \
        f"{spec.inputs_count} input(s)"
    await asyncio.to_thread(platform.store.add_event, f"job/{body.name}", "Created",
                            f"{what}, {spec.completions} completion(s), parallelism "
                            f"{spec.parallelism}, priority {spec.priority}")
    platform.wake()
    return created


def in_use(platform: ApiPlatform, digest: str) -> bool:
    return bool(platform.store.digest_in_use(digest)
                or digest in platform.store.job_digests_in_use())


@router.get("/jobs", response_model=list[Job])
def list_jobs(platform: ApiPlatform = Depends(get_platform)) -> list[Job]:
    """Every job, newest first."""
    return list(platform.store.list_jobs())


@router.get("/jobs/{name}", response_model=Job)
def get_job(name: str, platform: ApiPlatform = Depends(get_platform)) -> Job:
    job: Job = platform.store.get_job(name)
    return job


@router.get("/jobs/{name}/attempts", response_model=list[JobAttempt])
def job_attempts(name: str, platform: ApiPlatform = Depends(get_platform)) -> list[JobAttempt]:
    platform.store.get_job(name)
    return list(platform.store.list_attempts(name))


@router.get("/jobs/{name}/events", response_model=list[Event])
def job_events(name: str, limit: int = Query(100, ge=1, le=1000),
               platform: ApiPlatform = Depends(get_platform)) -> list[Event]:
    platform.store.get_job(name)
    return list(platform.store.list_events(f"job/{name}", limit))


@router.post("/jobs/{name}/cancel", response_model=Job)
def cancel_job(name: str, platform: ApiPlatform = Depends(get_platform)) -> Job:
    """Stop the job's attempts; it ends Failed (Cancelled). 409 once it has finished."""
    job: Job = platform.store.cancel_job(name)
    platform.store.add_event(f"job/{name}", "Cancelling", "cancel requested")
    platform.wake()
    return job


@router.delete("/jobs/{name}", status_code=202, response_model=Job)
def delete_job(name: str, platform: ApiPlatform = Depends(get_platform)) -> Job:
    """Stop the job's attempts, then remove it with its output."""
    job: Job = platform.store.mark_job_deleting(name)
    platform.store.add_event(f"job/{name}", "Deleting", "delete requested")
    platform.wake()
    return job


def _pick(attempts: list[JobAttempt], index: int | None, attempt: int | None
          ) -> list[JobAttempt]:
    out = [a for a in attempts if (index is None or a.index == index)
           and (attempt is None or a.number == attempt)]
    if index is not None and attempt is None:
        return out                              # every attempt of the index
    return out


def _log_sources(platform: ApiPlatform, name: str, index: int | None, attempt: int | None
                 ) -> dict[str, str]:
    picked = _pick(platform.store.list_attempts(name), index, attempt)
    return {f"{a.index}/{a.number}": a.log_path for a in picked if a.log_path}


@router.get("/jobs/{name}/logs", response_model=None)
def job_logs(name: str, index: int | None = Query(None, ge=0),
             attempt: int | None = Query(None, ge=1),
             tail: int = Query(200, ge=0, le=10_000),
             follow_: bool = Query(False, alias="follow"),
             platform: ApiPlatform = Depends(get_platform)
             ) -> PlainTextResponse | StreamingResponse:
    """The attempts' logs, each line prefixed ``[INDEX/ATTEMPT] ``; ``index`` and
    ``attempt`` narrow it; ``follow=true`` streams new lines."""
    platform.store.get_job(name)
    sources = _log_sources(platform, name, index, attempt)
    if (index is not None or attempt is not None) and not sources:
        which = " ".join(p for p in (f"index {index}" if index is not None else "",
                                     f"attempt {attempt}" if attempt is not None else "") if p)
        raise NotFound(f"job {name!r} has no {which} (yet)")
    lines = [f"[{key}] {line}" for key, path in sources.items()
             for line in search_file(path, tail, None)] if tail else []
    if not follow_:
        return PlainTextResponse("".join(f"{line}\n" for line in lines))

    async def stream() -> AsyncIterator[str]:
        for line in lines:
            yield f"{line}\n"

        ended = [0]

        async def current() -> dict[str, str]:
            if ended[0] >= 2:            # one more read after the job ended, then stop
                raise _Finished
            job = await asyncio.to_thread(platform.store.get_job, name)
            if job.status.finished and not await asyncio.to_thread(
                    platform.store.list_attempts, name, running=True):
                ended[0] += 1
            return await asyncio.to_thread(_log_sources, platform, name, index, attempt)

        try:
            async for key, line in follow(current):
                yield f"[{key}] {line}\n"
        except (_Finished, NotFound):
            return

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8",
                             headers={"cache-control": "no-cache"})


class _Finished(Exception):
    """The followed job has ended: the stream ends too."""


def output_tar(root: Path, attempts: list[JobAttempt], completions: int) -> bytes:
    """The job's output as a .tar.gz: an index's files at the top for a one-index job,
    under ``INDEX/`` otherwise."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for a in sorted(attempts, key=lambda a: a.index):
            if not a.output:
                continue
            folder = root / a.output
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    rel = path.relative_to(folder).as_posix()
                    name = rel if completions == 1 else f"{a.index}/{rel}"
                    info = tar.gettarinfo(str(path), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                    with path.open("rb") as f:
                        tar.addfile(info, f)
    return buf.getvalue()


@router.get("/jobs/{name}/output", response_model=None)
def job_output(name: str, platform: ApiPlatform = Depends(get_platform)) -> Response:
    """What the succeeded indexes left in their output folders, as a .tar.gz (header
    ``x-leptonic-files``: how many files)."""
    job: Job = platform.store.get_job(name)
    done = [a for a in platform.store.list_attempts(name)
            if a.state is AttemptState.SUCCEEDED]
    data = output_tar(Path(platform.artifacts.root), done, job.spec.completions)
    return Response(data, media_type="application/gzip", headers={
        "content-disposition": f'attachment; filename="{name}-output.tar.gz"',
        "x-leptonic-files": str(sum(a.output_files for a in done))})
