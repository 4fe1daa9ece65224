"""The program a ``model train`` or ``model evaluate`` job runs (``python -m
leptonic.models.train task.json``), in the job's sandbox: it is where user-named estimator
code and pickled models are loaded, never the control plane.

``train``: load the data set, split it (stratified for a classifier, seeded), fit the
estimator on the training part, evaluate it on the held-out part, cross-validate a fresh
copy on the whole data set (K folds, mean and spread), then write to the job's output
folder (``LEPTONIC_OUTPUT_DIR``):

* ``model.joblib``: the fitted estimator;
* ``version.json``: what the registry stores (``VersionMeta``: signature, metrics, params,
  data set fingerprint, drift reference, lineage with the confusion matrix);
* ``evaluation.json``: the full report.

``evaluate``: load ``model.joblib`` from the job's code folder and write
``evaluation.json`` for the data set given (all its rows, or the held-out part with
``--test-size``).

The metrics are scikit-learn's own (``sklearn.metrics``): accuracy, precision, recall and
F1 (macro and weighted), ROC AUC where the estimator gives probabilities, the confusion
matrix; MAE, RMSE and R2 for a regressor.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from leptonic.core.registry import SKLEARN_DATASETS, DatasetRef, TrainTask

SCORERS = {"classification": ("accuracy", "f1_macro"),
           "regression": ("r2", "neg_mean_absolute_error")}


def estimator_class(dotted: str) -> Any:
    """The class a dotted path names (``sklearn.ensemble.RandomForestClassifier``)."""
    module, _, attr = dotted.rpartition(".")
    if not module:
        raise ValueError(f"estimator {dotted!r} is not a dotted path (module.Class)")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"estimator {dotted!r} cannot be imported: {exc}") from exc
    if not callable(getattr(cls, "fit", None)):
        raise ValueError(f"estimator {dotted!r} has no fit(); name a scikit-learn estimator")
    return cls


def build_estimator(task: TrainTask) -> Any:
    if task.estimator is None:
        raise ValueError("a train task names its estimator")
    cls = estimator_class(task.estimator)
    try:
        return cls(**task.params)
    except TypeError as exc:
        raise ValueError(f"estimator {task.estimator}: {exc}") from exc


def load(ref: DatasetRef, folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) of a bundled scikit-learn data set or the job's CSV file."""
    if ref.kind == "sklearn":
        import sklearn.datasets

        loader = getattr(sklearn.datasets, SKLEARN_DATASETS[ref.name])
        bunch = loader()
        names = [str(n) for n in getattr(bunch, "feature_names", [])] or \
            [f"x{i}" for i in range(bunch.data.shape[1])]
        return np.asarray(bunch.data, dtype=float), np.asarray(bunch.target), names
    return read_csv(folder / "data.csv", ref.target)


def read_csv(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numeric feature columns and one target column (the last unless named)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path.name} is empty")
    header, body = rows[0], [r for r in rows[1:] if r]
    col = header.index(target) if target is not None else len(header) - 1
    names = [h for i, h in enumerate(header) if i != col]
    X = np.empty((len(body), len(names)), dtype=float)
    labels: list[str] = []
    for n, row in enumerate(body, 2):
        if len(row) != len(header):
            raise ValueError(f"{path.name} line {n} has {len(row)} values, the header "
                             f"{len(header)}")
        labels.append(row[col])
        values = [v for i, v in enumerate(row) if i != col]
        try:
            X[n - 2] = [float(v) for v in values]
        except ValueError as exc:
            raise ValueError(f"{path.name} line {n}: a feature is not a number ({exc})"
                             ) from exc
    return X, _labels(labels), names


def _labels(values: list[str]) -> np.ndarray:
    """Numbers where every label is one (ints where they are whole), else strings."""
    try:
        nums = [float(v) for v in values]
    except ValueError:
        return np.asarray(values)
    if all(math.isfinite(v) and v.is_integer() for v in nums):
        return np.asarray([int(v) for v in nums])
    return np.asarray(nums)


def evaluate(model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The held-out report: flat ``metrics`` (floats) and, for a classifier, the
    ``confusion_matrix`` over ``labels``."""
    from sklearn import metrics as m
    from sklearn.base import is_classifier

    pred = model.predict(X)
    if not is_classifier(model):
        return {"task": "regression", "rows": len(y), "metrics": {
            "mae": float(m.mean_absolute_error(y, pred)),
            "rmse": float(math.sqrt(m.mean_squared_error(y, pred))),
            "r2": float(m.r2_score(y, pred))}}
    out = {"accuracy": float(m.accuracy_score(y, pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = m.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r),
                    f"f1_{avg}": float(f)})
    classes = list(getattr(model, "classes_", np.unique(y)))
    if callable(getattr(model, "predict_proba", None)) and len(np.unique(y)) > 1:
        proba = model.predict_proba(X)
        try:
            if len(classes) == 2:
                out["roc_auc"] = float(m.roc_auc_score(y, proba[:, 1]))
            else:
                out["roc_auc"] = float(m.roc_auc_score(y, proba, multi_class="ovr",
                                                       average="macro", labels=classes))
        except ValueError:
            pass                        # a class absent from the held-out part
    matrix = m.confusion_matrix(y, pred, labels=classes)
    return {"task": "classification", "rows": len(y), "metrics": out,
            "labels": [_plain(c) for c in classes], "confusion_matrix": matrix.tolist()}


def cross_validate(estimator: Any, X: np.ndarray, y: np.ndarray, k: int,
                   seed: int) -> dict[str, float]:
    """K-fold scores of a fresh copy: ``cv_<metric>_mean`` and ``cv_<metric>_std``."""
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.model_selection import cross_validate as sk_cv

    classifier = is_classifier(estimator)
    folds = (StratifiedKFold if classifier else KFold)(n_splits=k, shuffle=True,
                                                       random_state=seed)
    scoring = SCORERS["classification" if classifier else "regression"]
    res = sk_cv(clone(estimator), X, y, cv=folds, scoring=list(scoring))
    out: dict[str, float] = {}
    for name in scoring:
        scores = np.asarray(res[f"test_{name}"], dtype=float)
        label = name.removeprefix("neg_")
        if name.startswith("neg_"):
            scores = -scores
        label = {"mean_absolute_error": "mae"}.get(label, label)
        out[f"cv_{label}_mean"] = float(scores.mean())
        out[f"cv_{label}_std"] = float(scores.std())
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _split(task: TrainTask, X: np.ndarray, y: np.ndarray, classifier: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    stratify = y if classifier and _stratifiable(y, task.test_size) else None
    parts = train_test_split(X, y, test_size=task.test_size, random_state=task.seed,
                             stratify=stratify)
    return parts[0], parts[1], parts[2], parts[3]


def _stratifiable(y: np.ndarray, test_size: float) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return bool(counts.min() >= 2 and len(y) * test_size >= len(counts))


def train(task: TrainTask, folder: Path, out: Path) -> dict[str, Any]:
    import joblib
    from sklearn.base import is_classifier

    from leptonic.models.sklearn import sklearn_meta

    estimator = build_estimator(task)
    X, y, names = load(task.dataset_ref(), folder)
    classifier = is_classifier(estimator)
    X_train, X_test, y_train, y_test = _split(task, X, y, classifier)
    started = time.perf_counter()
    estimator.fit(X_train, y_train)
    fit_s = time.perf_counter() - started
    report = evaluate(estimator, X_test, y_test)
    metrics = dict(report["metrics"])
    if task.cv:
        metrics.update(cross_validate(build_estimator(task), X, y, task.cv, task.seed))
    report.update(dataset=task.dataset, estimator=task.estimator, params=task.params,
                  train_rows=len(y_train), test_size=task.test_size, seed=task.seed,
                  cv=task.cv, fit_s=round(fit_s, 4), metrics=metrics)
    lineage = {"job": os.environ.get("LEPTONIC_JOB", ""), "dataset": task.dataset,
               "estimator": task.estimator, "split": {"test_size": task.test_size,
                                                      "seed": task.seed, "cv": task.cv}}
    if "confusion_matrix" in report:
        lineage["confusion_matrix"] = {"labels": report["labels"],
                                       "matrix": report["confusion_matrix"]}
    meta = sklearn_meta(estimator, X_train, y_train, feature_names=names, metrics=metrics,
                        lineage=lineage)
    meta["dataset"] = _fingerprint(X, y)
    meta["params"] = {**meta["params"], **task.params}
    meta["description"] = f"{task.estimator} trained on {task.dataset}"
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, out / "model.joblib")
    (out / "version.json").write_text(json.dumps(meta, default=_plain))
    (out / "evaluation.json").write_text(json.dumps(report, default=_plain, indent=1))
    return report


def _fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    from leptonic.models.sklearn import fingerprint

    return fingerprint(X, y)


def evaluate_stored(task: TrainTask, folder: Path, out: Path) -> dict[str, Any]:
    import joblib

    model = joblib.load(folder / "model.joblib")
    X, y, _ = load(task.dataset_ref(), folder)
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and X.shape[1] != expected:
        raise ValueError(f"the data set has {X.shape[1]} features; the model takes "
                         f"{expected}")
    if task.test_size:
        from sklearn.base import is_classifier

        _, X, _, y = _split(task, X, y, is_classifier(model))
    report = evaluate(model, X, y)
    report.update(dataset=task.dataset, model=task.model, version=task.version,
                  test_size=task.test_size, seed=task.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, default=_plain, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leptonic.models.train")
    parser.add_argument("task", type=Path, help="the task.json the control plane wrote")
    args = parser.parse_args(argv)
    task = TrainTask.model_validate_json(args.task.read_text())
    folder = args.task.resolve().parent
    out = Path(os.environ.get("LEPTONIC_OUTPUT_DIR") or folder / "output")
    try:
        report = (train if task.kind == "train" else evaluate_stored)(task, folder, out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(report["metrics"].items()))
    print(f"{task.kind} {task.estimator or task.model} on {task.dataset} "
          f"({report['rows']} held-out rows): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
