"""The model registry methods of ``Client`` and ``AsyncClient`` (written once, as ``Call`` s).

``register_model`` uploads an artifact file with what is known of it; the registry never
loads the file itself. ``leptonic.models.register_sklearn`` builds that knowledge
(signature, reference profile for drift, data set fingerprint) from a fitted estimator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from leptonic.client._base import Call, _model, _seg
from leptonic.core.models import Event, Job
from leptonic.core.registry import AliasMove, ModelVersion, RegisteredModel


def _none(resp: httpx.Response) -> None:
    return None


def _bytes(resp: httpx.Response) -> bytes:
    return resp.content


def _report(resp: httpx.Response) -> dict[str, Any] | None:
    """``evaluation.json`` out of a model job's output .tar.gz (None: it has none)."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and Path(m.name).name == "evaluation.json":
                f = tar.extractfile(m)
                if f is not None:
                    data: dict[str, Any] = json.loads(f.read())
                    return data
    return None


def _task_form(body: Mapping[str, Any], data: str | os.PathLike[str] | None
               ) -> dict[str, Any]:
    files: dict[str, Any] = {"_": ("", b"", "application/octet-stream")}
    if data is not None:
        path = Path(data).expanduser()
        files = {"data": (path.name, path.read_bytes(), "text/csv")}
    return {"data": {"task": json.dumps({k: v for k, v in body.items() if v is not None})},
            "files": files, "min_timeout_s": 120}


class ModelsAPI:
    """``/api/v1/models``: register, list, get, download, alias, history, delete."""

    def _run(self, call: Call) -> Any:  # pragma: no cover - provided by the clients
        raise NotImplementedError

    def register_model(self, name: str, file: str | os.PathLike[str], *,
                       metrics: Mapping[str, float] | None = None,
                       params: Mapping[str, Any] | None = None,
                       signature: Mapping[str, Any] | None = None,
                       reference: Mapping[str, Any] | None = None,
                       dataset: str | None = None, lineage: Mapping[str, Any] | None = None,
                       tags: Mapping[str, str] | None = None, framework: str | None = None,
                       description: str = "") -> Any:
        """Register ``file`` (``.joblib``, ``.pkl``, ``.skops``, ``.pt``, ``.ts``,
        ``.pt2``) as the next version of model ``name`` -> ``ModelVersion``."""
        path = Path(file).expanduser()
        meta: dict[str, Any] = {
            "metrics": dict(metrics or {}), "params": dict(params or {}),
            "signature": dict(signature or {}), "reference": dict(reference) if reference
            else None, "dataset": dataset, "lineage": dict(lineage or {}),
            "tags": dict(tags or {}), "framework": framework, "description": description}
        data = path.read_bytes()
        return self._run(Call("POST", f"/models/{_seg(name)}/versions", _model(ModelVersion),
                              data={"meta": json.dumps(meta, default=str)},
                              files={"file": (path.name, data, "application/octet-stream")},
                              min_timeout_s=300))

    def train_model(self, name: str, *, dataset: str, estimator: str,
                    params: Mapping[str, Any] | None = None, cv: int | None = None,
                    test_size: float = 0.25, seed: int = 0, job: str | None = None,
                    **spec: Any) -> Any:
        """Start a job that trains ``estimator`` (a dotted path, e.g.
        ``sklearn.svm.SVC``) with ``params`` on ``dataset`` (``sklearn:iris``, or
        ``csv:PATH[:target=COLUMN]``: the file is uploaded), evaluates it on a held-out
        ``test_size`` (stratified, ``seed``) and by ``cv``-fold cross-validation, and
        registers it as the next version of ``name`` -> ``Job`` (``resources``,
        ``priority`` pass through)."""
        from leptonic.core.registry import parse_dataset

        ref = parse_dataset(dataset)
        body = {"dataset": dataset, "estimator": estimator, "params": dict(params or {}),
                "cv": cv, "test_size": test_size, "seed": seed, "job": job, **spec}
        form = _task_form(body, ref.name if ref.kind == "csv" else None)
        return self._run(Call("POST", f"/models/{_seg(name)}/train", _model(Job), **form))

    def evaluate_model(self, name: str, ref: str | int, *, dataset: str,
                       test_size: float = 0.0, seed: int = 0, job: str | None = None,
                       **spec: Any) -> Any:
        """Start a job that evaluates version ``ref`` (number or alias) on ``dataset``
        (every row, or the held-out ``test_size`` of a seeded split) -> ``Job``; its
        report is ``model_job_report(job)`` once it has succeeded."""
        from leptonic.core.registry import parse_dataset

        dref = parse_dataset(dataset)
        body = {"dataset": dataset, "test_size": test_size, "seed": seed, "job": job, **spec}
        form = _task_form(body, dref.name if dref.kind == "csv" else None)
        return self._run(Call("POST", f"/models/{_seg(name)}/versions/{_seg(str(ref))}"
                                      "/evaluate", _model(Job), **form))

    def model_job_report(self, job: str) -> Any:
        """The report (``metrics``, ``confusion_matrix``...) a finished train or evaluate
        job wrote -> ``dict`` (None if it wrote none)."""
        return self._run(Call("GET", f"/jobs/{_seg(job)}/output", _report,
                              min_timeout_s=300))

    def list_models(self) -> Any:
        """Every model with its versions and aliases -> ``list[RegisteredModel]``."""
        return self._run(Call("GET", "/models", _model(list[RegisteredModel])))

    def get_model(self, name: str) -> Any:
        """One model -> ``RegisteredModel``."""
        return self._run(Call("GET", f"/models/{_seg(name)}", _model(RegisteredModel)))

    def get_model_version(self, name: str, ref: str | int = "latest") -> Any:
        """A version by number, alias (``champion``) or ``latest`` -> ``ModelVersion``."""
        return self._run(Call("GET", f"/models/{_seg(name)}/versions/{_seg(str(ref))}",
                              _model(ModelVersion)))

    def model_artifact(self, name: str, ref: str | int = "latest") -> Any:
        """The artifact file's bytes of a version."""
        return self._run(Call("GET", f"/models/{_seg(name)}/versions/{_seg(str(ref))}"
                                     "/artifact", _bytes, min_timeout_s=300))

    def set_model_alias(self, name: str, alias: str, version: int, *,
                        require: Iterable[str] = (), better_than: str | None = None,
                        metric: str | None = None) -> Any:
        """Point ``alias`` at ``version`` if it passes the gate (``require``: each
        ``'f1>=0.9'``; ``better_than``: an alias to beat) -> ``AliasMove``; a refusal is
        ``Conflict`` with the figures."""
        body = {"version": int(version), "require": list(require),
                "better_than": better_than, "metric": metric}
        return self._run(Call("PUT", f"/models/{_seg(name)}/aliases/{_seg(alias)}",
                              _model(AliasMove), json=body))

    def remove_model_alias(self, name: str, alias: str) -> Any:
        return self._run(Call("DELETE", f"/models/{_seg(name)}/aliases/{_seg(alias)}",
                              _model(AliasMove)))

    def model_history(self, name: str) -> Any:
        """Every alias move, oldest first -> ``list[AliasMove]``."""
        return self._run(Call("GET", f"/models/{_seg(name)}/history",
                              _model(list[AliasMove])))

    def model_events(self, name: str) -> Any:
        return self._run(Call("GET", "/events", _model(list[Event]),
                              params={"object": f"model/{name}"}))

    def delete_model_version(self, name: str, version: int) -> Any:
        return self._run(Call("DELETE", f"/models/{_seg(name)}/versions/{int(version)}",
                              _none))

    def delete_model(self, name: str) -> Any:
        return self._run(Call("DELETE", f"/models/{_seg(name)}", _none))
