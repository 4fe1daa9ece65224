"""The task SDK: ``LeptonAI(token).execute_task({"type": ..., "scale": ..., "output": ...})``.

A task is a job (``docs/JOBS.md``) described by a dict; ``execute_task`` submits it,
waits (drawing progress on a terminal), downloads its output to ``task["output"]`` and
returns a summary::

    from lepton_ai import LeptonAI
    lepton = LeptonAI("API_TOKEN")
    task = {"type": "computation", "scale": "large", "output": "/tmp/output",
            "command": "python job.py", "path": "."}
    result = lepton.execute_task(task)   # {"id", "status", "output", "attempts", ...}

Task keys: ``type`` (computation: datacenter nodes; edge: edge nodes; storage: little CPU,
on nodes labelled ``storage=true`` when there are any), ``scale`` (small: 0.5 CPU, 512 MiB;
medium: 1 CPU, 2 GiB; large: 2 CPU, 8 GiB), ``output`` (a local path: one output file is
written there, several make it a folder), ``command`` + ``path`` or ``photon`` +
``handler`` + ``inputs`` (a JSON Lines file, or a list of dicts), ``completions``,
``parallelism``, ``env``, ``deadline``, and ``name``, ``max_retries``, ``backoff``,
``priority``, ``secrets``, ``ttl_after_finished``. A failed task raises ``JobFailed``
with the reason and the last log lines.
"""

from __future__ import annotations

import io
import json
import os
import secrets as _secrets
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from leptonic.client.client import Client
from leptonic.client.jobs import JobFailed
from leptonic.core.models import Job, JobPhase
from leptonic.errors import InvalidInput

#: task key -> the job field it sets (the rest are handled apart)
_FIELDS = {"type": "type", "scale": "scale", "command": "command", "photon": "photon",
           "handler": "handler", "completions": "completions", "parallelism": "parallelism",
           "deadline": "deadline_s", "max_retries": "max_retries", "backoff": "backoff_s",
           "priority": "priority", "ttl_after_finished": "ttl_after_finished_s",
           "resources": "resources", "max_output_mb": "max_output_mb"}
_OWN = {"output", "path", "inputs", "env", "secrets", "name"}
KEYS = tuple(sorted({*_FIELDS, *_OWN}))

__all__ = ["KEYS", "JobFailed", "LeptonAI", "check_output_path"]


def check_output_path(output: str | os.PathLike[str]) -> Path:
    """Where a task's output goes, checked to be writable before anything is submitted."""
    path = Path(output).expanduser()
    if path.exists():
        target = path if path.is_dir() else path.parent
        if path.is_file() and not os.access(path, os.W_OK):
            raise InvalidInput(f"output {str(path)!r} cannot be written: the file is "
                               "read-only")
    else:
        target = path.parent
        if not target.is_dir():
            raise InvalidInput(f"output {str(path)!r} cannot be written: its folder "
                               f"{str(target)!r} does not exist")
    if not os.access(target, os.W_OK | os.X_OK):
        raise InvalidInput(f"output {str(path)!r} cannot be written: no permission to "
                           f"write in {str(target)!r}")
    return path


class LeptonAI:
    """Tasks on a leptonic platform. ``token`` and ``url`` default as the client's do
    (``$LEPTONIC_TOKEN``/``$LEPTONIC_URL``, else the local platform)."""

    def __init__(self, token: str | None = None, *, url: str | None = None,
                 timeout: float = 60.0) -> None:
        self.client = Client(url=url, token=token, timeout=timeout)
        self._outputs: dict[str, Path | None] = {}

    def __enter__(self) -> LeptonAI:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"LeptonAI(url={self.client.url!r})"

    # -- the calls ------------------------------------------------------------------------------
    def submit_task(self, task: dict[str, Any]) -> str:
        """Submit the task; its id (the job's name) at once."""
        if not isinstance(task, dict):
            raise InvalidInput("a task is a dict, e.g. {'type': 'computation', 'scale': "
                               "'small', 'command': 'python job.py', 'path': '.'}")
        unknown = sorted(set(task) - set(KEYS))
        if unknown:
            raise InvalidInput(f"unknown task key(s) {', '.join(map(repr, unknown))}; the "
                               f"keys are: {', '.join(KEYS)}")
        output = check_output_path(task["output"]) if task.get("output") else None
        name = str(task.get("name") or f"task-{_secrets.token_hex(4)}")
        fields = {_FIELDS[k]: v for k, v in task.items() if k in _FIELDS and v is not None}
        inputs = task.get("inputs")
        if isinstance(inputs, list):
            inputs = "".join(json.dumps(item) + "\n" for item in inputs).encode()
        self.client.create_job(name, path=task.get("path"), inputs=inputs,
                               env={str(k): str(v) for k, v in (task.get("env") or {}).items()},
                               secrets=task.get("secrets") or (), **fields)
        self._outputs[name] = output
        return name

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task to finish; its summary (the output downloaded when it was
        submitted here with an ``output``). Raises ``JobFailed`` when it failed."""
        job = self._wait(task_id, timeout)
        output = self._outputs.get(task_id)
        written = self._download(task_id, output) if output is not None else None
        return self._summary(job, written)

    def execute_task(self, task: dict[str, Any], timeout: float | None = None
                     ) -> dict[str, Any]:
        """Submit, wait, download the output: ``{"id", "status", "output", "attempts",
        "duration_s", ...}``."""
        return self.wait(self.submit_task(task), timeout)

    # -- parts ------------------------------------------------------------------------------------
    def _wait(self, name: str, timeout: float | None) -> Job:
        if not sys.stderr.isatty():
            return self.client.wait_job(name, timeout)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TextColumn("{task.fields[phase]}"),
                      TimeElapsedColumn(), console=Console(file=sys.stderr),
                      transient=True) as progress:
            bar = progress.add_task(f"task {name}", total=None, phase="")

            def on_progress(j: Job) -> None:
                progress.update(bar, total=j.spec.completions, completed=j.status.succeeded,
                                phase=j.status.phase.value)

            return self.client.wait_job(name, timeout, on_progress)

    def _download(self, name: str, output: Path) -> Path:
        """One file: written at ``output``; several: ``output`` becomes a folder."""
        data = self.client.job_output(name)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            files = [m for m in tar.getmembers() if m.isfile()]
            if len(files) == 1:
                src = tar.extractfile(files[0])
                assert src is not None
                if output.is_dir():
                    output = output / Path(files[0].name).name
                fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=".leptonic-")
                with os.fdopen(fd, "wb") as out, src:
                    shutil.copyfileobj(src, out)
                os.replace(tmp, output)
                return output
        from leptonic.client.jobs import extract_output

        if output.exists() and not output.is_dir():
            output.unlink()
        extract_output(data, output)
        return output

    @staticmethod
    def _summary(job: Job, output: Path | None) -> dict[str, Any]:
        st = job.status
        duration = (st.finished_at - st.started_at) if st.finished_at and st.started_at \
            else None
        return {"id": job.name, "status": st.phase.value, "output": str(output)
                if output is not None else None, "attempts": st.attempts,
                "retries": st.retries, "duration_s": duration,
                "completions": job.spec.completions, "succeeded": st.succeeded,
                "output_files": st.output_files, "output_bytes": st.output_bytes,
                "ok": st.phase is JobPhase.SUCCEEDED, "finished_at": st.finished_at
                or time.time()}
