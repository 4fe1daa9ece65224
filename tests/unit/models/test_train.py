"""The training program's parts: data set references, CSV reading, the held-out report
against scikit-learn's own functions on fixed predictions, cross-validation and the
stratified split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leptonic.core.registry import DatasetRef, TrainTask, parse_dataset
from leptonic.errors import InvalidInput

sklearn = pytest.importorskip("sklearn")


class Fixed:
    """A "model" whose predictions are given: the report must be what sklearn says."""

    _estimator_type = "classifier"

    def __init__(self, pred: list[Any], proba: list[list[float]] | None = None,
                 classes: list[Any] | None = None) -> None:
        self.pred = np.asarray(pred)
        self.proba = None if proba is None else np.asarray(proba)
        self.classes_ = np.asarray(classes if classes is not None else sorted(set(pred)))
        if proba is not None:
            self.predict_proba = lambda X: self.proba

    def predict(self, X: Any) -> Any:
        return self.pred

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags
        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())


class FixedRegressor(Fixed):
    _estimator_type = "regressor"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import RegressorTags, Tags, TargetTags
        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags())


@pytest.mark.parametrize(("text", "ref"), [
    ("sklearn:iris", DatasetRef("sklearn", "iris")),
    ("sklearn:breast_cancer", DatasetRef("sklearn", "breast_cancer")),
    ("csv:data/x.csv", DatasetRef("csv", "data/x.csv")),
    ("csv:x.csv:target=label", DatasetRef("csv", "x.csv", "label")),
    ("csv:/abs/a:b.csv:target=y", DatasetRef("csv", "/abs/a:b.csv", "y")),
])
def test_data_set_references(text: str, ref: DatasetRef) -> None:
    assert parse_dataset(text) == ref
    assert str(parse_dataset(str(ref))) == str(ref)


@pytest.mark.parametrize(("text", "says"), [
    ("sklearn:mnist", "scikit-learn ships sklearn:breast_cancer"),
    ("sklearn:", "unknown data set"),
    ("csv:", "use sklearn:NAME"),
    ("csv::target=y", "use sklearn:NAME"),
    ("hdfs:x", "use sklearn:NAME"),
])
def test_bad_data_set_references_say_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_dataset(text)


def test_the_classification_report_is_scikit_learns() -> None:
    from sklearn import metrics as m

    from leptonic.models.train import evaluate

    y = np.array([0, 0, 1, 1, 2, 2, 2, 1, 0, 2])
    pred = [0, 1, 1, 1, 2, 0, 2, 2, 0, 2]
    rng = np.random.default_rng(3)
    proba = rng.dirichlet([1, 1, 1], size=10).tolist()
    rep = evaluate(Fixed(pred, proba, [0, 1, 2]), np.zeros((10, 2)), y)
    got = rep["metrics"]
    assert got["accuracy"] == pytest.approx(m.accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        assert got[f"f1_{avg}"] == pytest.approx(m.f1_score(y, pred, average=avg))
        assert got[f"precision_{avg}"] == pytest.approx(m.precision_score(y, pred,
                                                                          average=avg))
        assert got[f"recall_{avg}"] == pytest.approx(m.recall_score(y, pred, average=avg))
    assert got["roc_auc"] == pytest.approx(m.roc_auc_score(y, proba, multi_class="ovr"))
    assert rep["confusion_matrix"] == m.confusion_matrix(y, pred).tolist()
    assert rep["labels"] == [0, 1, 2]
    assert rep["rows"] == 10


def test_binary_roc_auc_uses_the_positive_class_and_strings_label_the_matrix() -> None:
    from sklearn import metrics as m

    from leptonic.models.train import evaluate

    y = np.array(["no", "yes", "yes", "no", "yes", "no"])
    pred = ["no", "yes", "no", "no", "yes", "yes"]
    proba = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9], [0.4, 0.6]]
    rep = evaluate(Fixed(pred, proba, ["no", "yes"]), np.zeros((6, 1)), y)
    assert rep["metrics"]["roc_auc"] == pytest.approx(
        m.roc_auc_score(y == "yes", [p[1] for p in proba]))
    assert rep["labels"] == ["no", "yes"]
    assert rep["confusion_matrix"] == [[2, 1], [1, 2]]


def test_a_model_without_probabilities_has_no_roc_auc() -> None:
    from leptonic.models.train import evaluate

    rep = evaluate(Fixed([0, 1, 1]), np.zeros((3, 1)), np.array([0, 1, 0]))
    assert "roc_auc" not in rep["metrics"]
    assert rep["metrics"]["accuracy"] == pytest.approx(2 / 3)


def test_the_regression_report_is_mae_rmse_and_r2() -> None:
    from sklearn import metrics as m

    from leptonic.models.train import evaluate

    y = np.array([3.0, -0.5, 2.0, 7.0])
    pred = [2.5, 0.0, 2.0, 8.0]
    rep = evaluate(FixedRegressor(pred), np.zeros((4, 1)), y)
    assert rep["task"] == "regression"
    assert rep["metrics"] == pytest.approx({
        "mae": m.mean_absolute_error(y, pred), "r2": m.r2_score(y, pred),
        "rmse": m.mean_squared_error(y, pred) ** 0.5})


def test_cross_validation_reports_mean_and_spread_per_metric() -> None:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    from leptonic.models.train import cross_validate

    X, y = load_iris(return_X_y=True)
    got = cross_validate(DecisionTreeClassifier(random_state=0), X, y, 4, seed=1)
    assert set(got) == {"cv_accuracy_mean", "cv_accuracy_std", "cv_f1_macro_mean",
                        "cv_f1_macro_std"}
    want = cross_val_score(DecisionTreeClassifier(random_state=0), X, y,
                           cv=StratifiedKFold(4, shuffle=True, random_state=1))
    assert got["cv_accuracy_mean"] == pytest.approx(want.mean())
    assert got["cv_accuracy_std"] == pytest.approx(want.std())


def test_a_regressors_cross_validation_reports_positive_mae() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from leptonic.models.train import cross_validate

    X, y = load_diabetes(return_X_y=True)
    got = cross_validate(Ridge(), X, y, 3, seed=0)
    assert got["cv_mae_mean"] > 0
    assert 0 < got["cv_r2_mean"] < 1


def test_training_splits_stratified_and_seeded_and_writes_the_version(tmp_path: Path
                                                                      ) -> None:
    import json

    from leptonic.models.train import train

    task = TrainTask(model="iris", dataset="sklearn:iris",
                     estimator="sklearn.linear_model.LogisticRegression",
                     params={"max_iter": 1000}, test_size=0.2, seed=5)
    report = train(task, tmp_path, tmp_path / "out")
    assert report["rows"] == 30
    assert report["train_rows"] == 120
    # stratified: each of iris's three classes is a third of the held-out part
    assert [sum(row) for row in report["confusion_matrix"]] == [10, 10, 10]
    meta = json.loads((tmp_path / "out" / "version.json").read_text())
    assert meta["metrics"] == report["metrics"]
    assert meta["params"]["max_iter"] == 1000
    assert meta["signature"]["n_features"] == 4
    assert meta["reference"]["features"][0]["name"] == "sepal length (cm)"
    assert meta["reference"]["rows"] == 120
    assert (tmp_path / "out" / "model.joblib").stat().st_size > 0
    again = train(task, tmp_path, tmp_path / "again")
    assert again["metrics"] == report["metrics"]          # seeded


def test_csv_labels_keep_their_type(tmp_path: Path) -> None:
    from leptonic.models.train import read_csv

    p = tmp_path / "d.csv"
    p.write_text("x,y,kind\n1,2,a\n3,4,b\n")
    X, y, names = read_csv(p, "kind")
    assert names == ["x", "y"]
    assert X.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert y.tolist() == ["a", "b"]
    p.write_text("x,t\n1,0\n2,1.0\n")
    assert read_csv(p, None)[1].tolist() == [0, 1]
    p.write_text("x,t\n1,0.5\n2,1.25\n")
    assert read_csv(p, None)[1].tolist() == [0.5, 1.25]


@pytest.mark.parametrize(("text", "says"), [
    ("x,t\n1\n", "line 2 has 1 values"),
    ("x,t\nabc,1\n", "line 2: a feature is not a number"),
    ("", "is empty"),
])
def test_bad_csv_rows_are_named(tmp_path: Path, text: str, says: str) -> None:
    from leptonic.models.train import read_csv

    p = tmp_path / "d.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=says):
        read_csv(p, None)


def test_evaluating_a_model_on_the_wrong_features_says_so(tmp_path: Path) -> None:
    import joblib
    from sklearn.tree import DecisionTreeClassifier

    from leptonic.models.train import evaluate_stored

    joblib.dump(DecisionTreeClassifier().fit([[0, 1], [1, 0]], [0, 1]),
                tmp_path / "model.joblib")
    task = TrainTask(kind="evaluate", model="m", version=1, dataset="sklearn:iris",
                     test_size=0.0)
    with pytest.raises(ValueError, match="the data set has 4 features; the model takes 2"):
        evaluate_stored(task, tmp_path, tmp_path / "out")


def test_the_program_exits_2_with_one_line_for_bad_params(tmp_path: Path,
                                                          capsys: Any) -> None:
    from leptonic.models.train import main

    task = TrainTask(model="m", dataset="sklearn:iris", estimator="sklearn.svm.SVC",
                     params={"C": -1})
    (tmp_path / "task.json").write_text(task.model_dump_json())
    assert main([str(tmp_path / "task.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert "'C' parameter of SVC" in err[-1]


def test_training_on_digits_reports_ten_classes(tmp_path: Path) -> None:
    from leptonic.models.train import train

    task = TrainTask(model="digits", dataset="sklearn:digits",
                     estimator="sklearn.tree.DecisionTreeClassifier",
                     params={"random_state": 0, "max_depth": 8}, cv=2)
    report = train(task, tmp_path, tmp_path / "out")
    assert report["labels"] == list(range(10))
    assert len(report["confusion_matrix"]) == 10
    assert report["rows"] == 450                      # a quarter of 1,797, rounded up
    assert 0.6 < report["metrics"]["accuracy"] <= 1.0
    assert "roc_auc" in report["metrics"]
