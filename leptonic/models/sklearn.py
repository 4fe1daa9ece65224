"""Register a fitted scikit-learn estimator from the script that trained it.

The registry never loads an artifact, so what it knows of a version comes from here, where
the estimator is in memory: its signature (feature names and count, classes), a reference
profile of the training features (and class balance) for drift, and a fingerprint of the
data set. The artifact is written with joblib.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leptonic.core.drift import Reference


def fingerprint(X: Any, y: Any = None) -> str:
    """A SHA-256 of the data set's values (features, then labels): equal data, equal print."""
    digest = hashlib.sha256()
    for part in (X, y):
        if part is not None:
            arr = np.ascontiguousarray(np.asarray(part))
            digest.update(str((arr.shape, arr.dtype.str)).encode())
            digest.update(arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode())
    return "sha256:" + digest.hexdigest()


def sklearn_meta(estimator: Any, X: Any, y: Any = None, *,
                 feature_names: Sequence[str] | None = None,
                 metrics: Mapping[str, float] | None = None,
                 lineage: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The registry's ``meta`` for ``estimator`` fitted on ``X`` (``y``)."""
    data = np.asarray(X, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"X must be 2-D (rows x features), got shape {data.shape}")
    fitted = getattr(estimator, "feature_names_in_", None)     # fitted on a DataFrame
    if feature_names is not None:
        names = [str(n) for n in feature_names]
    elif fitted is not None:
        names = [str(n) for n in fitted]
    else:
        names = [f"x{i}" for i in range(data.shape[1])]
    classes = getattr(estimator, "classes_", None)
    signature: dict[str, Any] = {
        "features": names,
        "n_features": int(getattr(estimator, "n_features_in_", None) or data.shape[1]),
        "task": "classification" if classes is not None else "regression"}
    if classes is not None:
        signature["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
    labels = np.asarray(y) if y is not None and classes is not None else None
    reference = Reference.build(data, names, labels=labels)
    params = {k: v for k, v in estimator.get_params(deep=False).items()
              if isinstance(v, str | int | float | bool) or v is None}
    return {"framework": "sklearn", "signature": signature,
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "params": params, "dataset": fingerprint(X, y), "reference": reference.to_dict(),
            "lineage": dict(lineage or {}),
            "tags": {"estimator": type(estimator).__module__ + "." + type(estimator).__name__}}


def register_sklearn(client: Any, name: str, estimator: Any, X: Any, y: Any = None, *,
                     feature_names: Sequence[str] | None = None,
                     metrics: Mapping[str, float] | None = None,
                     lineage: Mapping[str, Any] | None = None, description: str = "") -> Any:
    """Dump ``estimator`` with joblib and register it as the next version of model
    ``name`` through ``client`` (a :class:`leptonic.Client`) -> ``ModelVersion``."""
    import joblib

    meta = sklearn_meta(estimator, X, y, feature_names=feature_names, metrics=metrics,
                        lineage=lineage)
    with tempfile.TemporaryDirectory(prefix="leptonic-model-") as tmp:
        path = Path(tmp) / f"{name}.joblib"
        joblib.dump(estimator, path)
        return client.register_model(
            name, path, metrics=meta["metrics"], params=meta["params"],
            signature=meta["signature"], reference=meta["reference"],
            dataset=meta["dataset"], lineage=meta["lineage"], tags=meta["tags"],
            framework="sklearn", description=description)
