"""``builtin:sklearn``: serves a fitted scikit-learn estimator from a joblib/pickle file.

Handlers (each client sends one row; concurrent rows share one ``predict`` call):

* ``POST /predict`` ``{"features": [x1, ..., xn]}`` -> the prediction for that row
  (a class label or a value)
* ``POST /predict_proba`` ``{"features": [...]}`` -> one probability per class, in the
  order of ``/info``'s ``classes`` (422 if the estimator has no ``predict_proba``)
* ``POST /info`` ``{}`` -> ``{"estimator", "n_features", "classes"}``

A row whose length is not the estimator's ``n_features_in_``, or that the estimator
rejects (NaN, infinity), gets a 422 naming the problem; the other rows of its batch are
served as usual.

Environment (set on the deployment: ``--env KEY=VALUE``):

* ``SKLEARN_MODEL_PATH`` (required): the file written by ``joblib.dump(estimator, path)``
  (or ``pickle.dump``). Loading it runs code from the file, so serve only files you trust.
* ``PHOTON_BATCH_SIZE`` / ``PHOTON_BATCH_WAIT_MS`` / ``PHOTON_BATCH_QUEUE``: the
  batching (default 256 rows, 5 ms, 4096 waiting)
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel

from leptonic.errors import InvalidInput, PhotonDefinitionError
from leptonic.photon.builtin._config import env_file
from leptonic.photon.handler import handler
from leptonic.photon.photon import Photon

NAME = "sklearn"
Label = bool | int | float | str


class SklearnInfo(BaseModel):
    """What the replica serves."""

    estimator: str
    n_features: int | None
    classes: list[Label] | None


class SklearnModel(Photon):
    """A fitted scikit-learn estimator (``SKLEARN_MODEL_PATH``), dynamically batched."""

    requirements = ["scikit-learn", "joblib"]

    def init(self) -> None:
        import joblib

        path = env_file("SKLEARN_MODEL_PATH", NAME, "a fitted estimator saved with joblib")
        try:
            model = joblib.load(path)
        except Exception as exc:
            raise PhotonDefinitionError(
                f"builtin:{NAME}: cannot load SKLEARN_MODEL_PATH={str(path)!r}: "
                f"{type(exc).__name__}: {exc}") from exc
        if not callable(getattr(model, "predict", None)):
            raise PhotonDefinitionError(
                f"builtin:{NAME}: {str(path)!r} holds a {type(model).__name__}, which has no "
                f"predict(); save a fitted scikit-learn estimator or pipeline")
        self.model = model
        n = getattr(model, "n_features_in_", None)
        self.n_features: int | None = int(n) if n is not None else None
        self.lock = threading.Lock()

    def _checked(self, rows: list[list[float]]) -> list[InvalidInput | None]:
        n = self.n_features
        if n is None:
            return [None] * len(rows)
        return [None if len(r) == n else InvalidInput(
            f"features has {len(r)} values; the model ({type(self.model).__name__}) takes "
            f"{n} (its n_features_in_)", expected=n, got=len(r)) for r in rows]

    def _run(self, method: str, rows: list[list[float]]) -> list[Any]:
        """``model.method`` over the valid rows at once; a per-row 422 for the others.

        If the estimator rejects the batch (a ValueError, e.g. a NaN), the rows are retried
        one by one so that only the offending ones fail.
        """
        import numpy as np

        outputs: list[Any] = list(self._checked(rows))
        good = [i for i, err in enumerate(outputs) if err is None]
        if not good:
            return outputs
        fn = getattr(self.model, method)
        try:
            with self.lock:
                results = fn(np.asarray([rows[i] for i in good], dtype=float))
            for i, value in zip(good, results.tolist(), strict=True):
                outputs[i] = value
        except ValueError:
            for i in good:
                try:
                    with self.lock:
                        outputs[i] = fn(np.asarray([rows[i]], dtype=float)).tolist()[0]
                except ValueError as exc:
                    outputs[i] = InvalidInput(
                        f"the model rejected these features: {str(exc).splitlines()[0]}")
        return outputs

    @handler(batch=256, max_wait_ms=5)
    def predict(self, features: list[list[float]]) -> list[Label | InvalidInput]:
        """The model's prediction for one row of features."""
        return self._run("predict", features)

    @handler(batch=256, max_wait_ms=5)
    def predict_proba(self, features: list[list[float]]) -> list[list[float] | InvalidInput]:
        """The probability of each class (in ``classes`` order) for one row of features."""
        if not callable(getattr(self.model, "predict_proba", None)):
            raise InvalidInput(
                f"this model ({type(self.model).__name__}) has no predict_proba; "
                f"call /predict instead")
        return self._run("predict_proba", features)

    @handler
    def info(self) -> SklearnInfo:
        """The estimator's type, how many features a row has and its classes."""
        classes = getattr(self.model, "classes_", None)
        return SklearnInfo(estimator=type(self.model).__name__, n_features=self.n_features,
                           classes=None if classes is None else list(classes.tolist()))
