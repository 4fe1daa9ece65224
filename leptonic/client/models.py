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
from leptonic.core.models import Event
from leptonic.core.registry import AliasMove, ModelVersion, RegisteredModel


def _none(resp: httpx.Response) -> None:
    return None


def _bytes(resp: httpx.Response) -> bytes:
    return resp.content


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
