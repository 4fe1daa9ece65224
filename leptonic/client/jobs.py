"""The job methods of ``Client`` and ``AsyncClient`` (written once, as ``Call`` s)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from leptonic.client._base import Call, _model, _seg, _text, make_bundle
from leptonic.core.models import Event, Job, JobAttempt, JobPhase
from leptonic.errors import BackendError


class JobFailed(BackendError):
    """A job being waited on failed; ``reason`` is its JobReason, ``detail`` says why and
    ends with the last log lines of its last failed attempt."""

    def __init__(self, detail: str, *, reason: str = "", job: Job | None = None) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason
        self.job = job


def job_failed(job: Job) -> JobFailed:
    st = job.status
    detail = f"job {job.name} failed ({st.reason}): {st.message}"
    if st.last_error:
        detail += "\n" + st.last_error
    return JobFailed(detail, reason=st.reason, job=job)


def job_done(job: Job) -> bool:
    """True once the job succeeded; raises JobFailed once it failed."""
    if job.status.phase is JobPhase.FAILED:
        raise job_failed(job)
    return job.status.phase is JobPhase.SUCCEEDED


def extract_output(data: bytes, dest: str | os.PathLike[str]) -> list[Path]:
    """Unpack a job's output .tar.gz into folder ``dest``; the files written."""
    from leptonic.store.artifacts import extract_bundle

    root = Path(dest).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    extract_bundle(io.BytesIO(data), root, max_bytes=1 << 40)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return [root / m.name for m in tar.getmembers() if m.isfile()]


def _bytes(resp: httpx.Response) -> bytes:
    return resp.content


class JobsAPI:
    """``/api/v1/jobs``: create, list, get, attempts, events, logs, output, cancel, delete."""

    def _run(self, call: Call) -> Any:  # pragma: no cover - provided by the clients
        raise NotImplementedError

    def create_job(self, name: str, *, command: str | None = None,
                   path: str | os.PathLike[str] | None = None,
                   photon: str | None = None, handler: str | None = None,
                   inputs: str | os.PathLike[str] | bytes | None = None,
                   env: Mapping[str, str] | None = None, secrets: Iterable[str] = (),
                   include: Iterable[str] = (), **spec: Any) -> Any:
        """Run ``command`` in a copy of folder ``path`` (bundled as ``photon create``
        bundles), or ``photon``'s ``handler`` over ``inputs`` (a JSON Lines file, or its
        bytes) -> ``Job``. Further fields (``completions``, ``parallelism``, ``type``,
        ``scale``, ``max_retries``, ``backoff_s``, ``deadline_s``, ``priority``,
        ``resources``...) pass through."""
        body: dict[str, Any] = {"name": name, "command": command, "photon": photon,
                                "handler": handler, "env": dict(env or {}),
                                "secrets": list(secrets),
                                **{k: v for k, v in spec.items() if v is not None}}
        body = {k: v for k, v in body.items() if v is not None}
        files: dict[str, Any] = {}
        if path is not None:
            files["code"] = ("code.tar.gz", make_bundle(path, include), "application/gzip")
        if inputs is not None:
            data = inputs if isinstance(inputs, bytes) else Path(inputs).read_bytes()
            files["inputs"] = ("inputs.jsonl", data, "application/jsonl")
        if not files:           # multipart even without files: the form field is the job
            files["_"] = ("", b"", "application/octet-stream")
        return self._run(Call("POST", "/jobs", _model(Job), data={"job": json.dumps(body)},
                              files=files, min_timeout_s=120))

    def list_jobs(self) -> Any:
        """-> ``list[Job]``, newest first."""
        return self._run(Call("GET", "/jobs", _model(list[Job])))

    def get_job(self, name: str) -> Any:
        """-> ``Job``."""
        return self._run(Call("GET", f"/jobs/{_seg(name)}", _model(Job)))

    def job_attempts(self, name: str) -> Any:
        """-> ``list[JobAttempt]``."""
        return self._run(Call("GET", f"/jobs/{_seg(name)}/attempts", _model(list[JobAttempt])))

    def job_events(self, name: str, limit: int = 100) -> Any:
        return self._run(Call("GET", f"/jobs/{_seg(name)}/events", _model(list[Event]),
                              params={"limit": limit}))

    def job_logs(self, name: str, *, index: int | None = None, attempt: int | None = None,
                 tail: int = 200) -> Any:
        """The attempts' log lines, each prefixed ``[INDEX/ATTEMPT]`` -> ``str``."""
        return self._run(Call("GET", f"/jobs/{_seg(name)}/logs", _text,
                              params={"index": index, "attempt": attempt, "tail": tail}))

    def job_output(self, name: str) -> Any:
        """The job's output as .tar.gz bytes (see ``extract_output``)."""
        return self._run(Call("GET", f"/jobs/{_seg(name)}/output", _bytes,
                              min_timeout_s=300))

    def cancel_job(self, name: str) -> Any:
        """Stop it (Failed, Cancelled); ``Conflict`` once it has finished -> ``Job``."""
        return self._run(Call("POST", f"/jobs/{_seg(name)}/cancel", _model(Job)))

    def delete_job(self, name: str) -> Any:
        """Stop it and remove it with its output -> ``Job`` (202)."""
        return self._run(Call("DELETE", f"/jobs/{_seg(name)}", _model(Job)))

