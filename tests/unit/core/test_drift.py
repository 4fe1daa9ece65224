"""Drift and live-quality statistics: checked against scipy and sklearn, and on known shifts."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from leptonic.core.drift import (
    KS_MAX_ROWS,
    MIN_ROWS,
    PSI_MAJOR,
    PSI_MODERATE,
    WASSERSTEIN_THRESHOLD,
    CategoricalProfile,
    NumericProfile,
    Reference,
    chi2_sf,
    chi2_test,
    classification_quality,
    dataset_drift,
    feature_drift,
    kolmogorov_sf,
    ks_2samp,
    prediction_drift,
    psi,
    regression_quality,
    wasserstein_normed,
)

NAMES = [f"f{i}" for i in range(10)]


def normal_reference(seed: int = 0, rows: int = 5000) -> tuple[Reference, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return Reference.build(rng.normal(size=(rows, len(NAMES))), NAMES), rng


def mixed(rng: np.random.Generator, rows: int, cats: list[str], p: list[float],
          shift: float = 0.0) -> np.ndarray:
    data = np.empty((rows, 2), dtype=object)
    data[:, 0] = rng.normal(shift, size=rows)
    data[:, 1] = rng.choice(cats, size=rows, p=p)
    return data


# -- the statistics against scipy -----------------------------------------------------------


@pytest.mark.parametrize(("n", "m", "shift"), [
    (100, 100, 0.0), (200, 300, 0.1), (300, 400, 0.25), (500, 800, 0.15),
    (150, 999, 0.2), (1000, 1000, 0.1),
])
def test_ks_matches_scipy(n: int, m: int, shift: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(shift, size=m)
    d, p = ks_2samp(a, b)
    want = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(want.statistic, abs=1e-12)
    # Stephens' correction approximates scipy's exact one-sample law at round(ne): close
    # where the decision is made, within about 0.015 where p is large and nothing drifts.
    assert p == pytest.approx(want.pvalue, abs=1e-3 if want.pvalue < 0.2 else 2e-2)
    assert (p < 0.05) == (want.pvalue < 0.05)


def test_ks_statistic_with_ties_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, size=300), rng.integers(0, 6, size=200)
    assert ks_2samp(a, b)[0] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("lam", [0.05, 0.3, 0.5, 0.8, 1.0, 1.17, 1.19, 1.5, 2.0, 3.0])
def test_kolmogorov_sf_matches_scipy(lam: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert kolmogorov_sf(lam) == pytest.approx(stats.kstwobign.sf(lam), abs=1e-12)


def test_ks_p_value_is_one_for_identical_samples() -> None:
    x = np.arange(50.0)
    assert ks_2samp(x, x) == (0.0, 1.0)


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10, 30, 100, 400])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 1.0, 1.5, 3.0, 10.0])
def test_chi2_sf_matches_scipy(dof: int, ratio: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    x = ratio * dof
    want = stats.chi2.sf(x, dof)
    assert chi2_sf(x, dof) == pytest.approx(want, rel=1e-9, abs=1e-14)


def test_chi2_test_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    counts = np.array([260, 130, 80, 30])
    stat, p = chi2_test(shares, counts)
    want = stats.chisquare(counts, shares * counts.sum())
    assert stat == pytest.approx(want.statistic, rel=1e-12)
    assert p == pytest.approx(want.pvalue, rel=1e-9)


def test_chi2_test_edge_cases() -> None:
    assert chi2_test([1.0], [40]) == (0.0, 1.0)            # one category: nothing to test
    assert chi2_test([0.5, 0.5, 0.0], [10, 10, 1]) == (math.inf, 0.0)
    assert chi2_test([0.5, 0.5, 0.0], [10, 10, 0])[1] == 1.0   # empty both sides: dropped
    with pytest.raises(ValueError, match="expected"):
        chi2_test([0.5, 0.5], [1, 2, 3])


@pytest.mark.parametrize(("n", "m", "shift", "scale"), [
    (1000, 5000, 0.0, 1.0), (1000, 20000, 0.3, 1.0), (500, 3000, 0.0, 2.0),
])
def test_wasserstein_normed_matches_scipy(n: int, m: int, shift: float, scale: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(m)
    ref, cur = rng.normal(size=n) * 3, rng.normal(shift, scale, size=m) * 3
    want = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert wasserstein_normed(ref, cur) == pytest.approx(want, rel=1e-10)


def test_wasserstein_of_a_constant_reference_is_finite() -> None:
    assert wasserstein_normed([2.0] * 10, [2.0] * 5) == 0.0
    assert math.isfinite(wasserstein_normed([2.0] * 10, [3.0] * 5))


# -- PSI ------------------------------------------------------------------------------------


def decile_psi(shift: float, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    ref = Reference.build(rng.normal(size=(20000, 1)), ["x"])
    result = feature_drift(ref, rng.normal(shift, size=(20000, 1)))[0]
    assert result.psi is not None
    return result.psi


def test_psi_on_known_distributions() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert decile_psi(0.0) < 0.01
    assert PSI_MODERATE / 4 < decile_psi(0.2) < PSI_MODERATE    # a small shift: noticeable
    assert PSI_MODERATE < decile_psi(0.4) < PSI_MAJOR           # moderate
    assert decile_psi(1.0) > PSI_MAJOR                          # a shift of one std: major


def test_psi_clips_empty_bins_and_is_symmetric() -> None:
    value = psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    assert math.isfinite(value)
    assert value == pytest.approx(psi([0.4, 0.4, 0.2], [0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="expected"):
        psi([0.5, 0.5], [1.0])


# -- the reference --------------------------------------------------------------------------


def test_reference_bins_are_deciles_and_sample_is_bounded() -> None:
    ref, _ = normal_reference()
    prof = ref.features[0]
    assert isinstance(prof, NumericProfile)
    assert len(prof.edges) == 9
    assert len(prof.shares) == 10
    assert all(s == pytest.approx(0.1, abs=1e-3) for s in prof.shares)
    assert len(prof.sample) == 1000
    assert list(prof.sample) == sorted(prof.sample)
    again, _ = normal_reference()
    assert again == ref                                     # deterministic


def test_duplicate_edges_are_merged() -> None:
    data = np.array([[0.0]] * 80 + [[1.0]] * 10 + [[2.0]] * 10)
    prof = Reference.build(data, ["x"]).features[0]
    assert isinstance(prof, NumericProfile)
    assert list(prof.edges) == sorted(set(prof.edges))
    assert sum(prof.shares) == pytest.approx(1.0)
    assert len(prof.shares) == len(prof.edges) + 1


def test_reference_round_trips_through_json() -> None:
    rng = np.random.default_rng(2)
    data = mixed(rng, 3000, ["a", "b", "c"], [0.5, 0.3, 0.2])
    ref = Reference.build(data, ["x", "colour"], categorical=["colour"],
                          labels=rng.choice([0, 1], size=3000, p=[0.7, 0.3]))
    back = Reference.from_dict(json.loads(json.dumps(ref.to_dict(), allow_nan=False)))
    assert back == ref
    assert back.class_balance == ref.class_balance
    assert isinstance(back.features[1], CategoricalProfile)
    assert back.features[1].categories == ("a", "b", "c")
    assert ref.class_balance is not None
    assert sum(ref.class_balance.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(("data", "match"), [
    ({"version": 1, "rows": 3}, "malformed"),
    ({"version": 2, "rows": 3, "features": []}, "expected reference format version 1"),
    ({"version": 1, "rows": 3, "features": [{"name": "x", "kind": "text"}]}, "given 'text'"),
    ({"version": 1, "rows": 3, "features": [
        {"name": "x", "kind": "numeric", "edges": [0.0], "shares": [1.0], "sample": [0.0]},
    ]}, "expected 2 shares"),
    ({"version": 1, "rows": 3, "features": []}, "at least one feature"),
])
def test_a_malformed_profile_raises(data: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Reference.from_dict(data)


@pytest.mark.parametrize(("data", "names", "match"), [
    (np.zeros((0, 3)), ["a", "b", "c"], "expected at least one row, given 0"),
    (np.zeros((5, 3)), ["a", "b"], "expected 2 columns .*given 3"),
    (np.zeros(5), ["a"], "must be 2-D"),
    (np.zeros((5, 2)), ["a", "a"], "unique"),
    (np.full((5, 1), np.nan), ["a"], "expected at least one non-NaN value, given 0"),
])
def test_bad_reference_input_raises(data: np.ndarray, names: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Reference.build(data, names)


def test_unknown_categorical_name_raises() -> None:
    with pytest.raises(ValueError, match="'z'"):
        Reference.build(np.zeros((5, 1)), ["a"], categorical=["z"])


# -- feature and dataset drift --------------------------------------------------------------


@pytest.mark.parametrize("rows", [500, 5000])       # KS, then Wasserstein
def test_the_same_distribution_does_not_drift(rows: int) -> None:
    ref, rng = normal_reference(seed=0)
    results = feature_drift(ref, rng.normal(size=(rows, len(NAMES))))
    assert [r.name for r in results] == NAMES
    assert not any(r.drifted for r in results), results
    assert {r.test for r in results} == {"ks" if rows <= KS_MAX_ROWS else "wasserstein"}
    assert all(r.psi is not None and r.psi < PSI_MODERATE for r in results)
    summary = dataset_drift(results)
    assert summary.drift_share == 0.0
    assert not summary.dataset_drifted


@pytest.mark.parametrize("rows", [500, 5000])
def test_a_shifted_distribution_drifts(rows: int) -> None:
    ref, rng = normal_reference(seed=0)
    current = rng.normal(size=(rows, len(NAMES)))
    current[:, :7] += 0.5                               # seven of ten features shift
    results = feature_drift(ref, current)
    assert [r.drifted for r in results] == [True] * 7 + [False] * 3
    if rows > KS_MAX_ROWS:
        assert all(r.statistic is not None and r.statistic > WASSERSTEIN_THRESHOLD
                   and r.pvalue is None for r in results[:7])
    summary = dataset_drift(results)
    assert summary.drift_share == pytest.approx(0.7)
    assert summary.dataset_drifted
    assert (summary.features, summary.judged, summary.drifted) == (10, 10, 7)


def test_a_major_psi_drifts_even_when_the_test_does_not() -> None:
    # Every other decile filled, the others empty: the CDF never strays more than a tenth
    # from the reference's, so KS on 40 rows sees nothing, but half the bins are empty.
    ref, _ = normal_reference(seed=0)
    probs = [0.1 * k + 0.1 * u for k in (0, 2, 4, 6, 8) for u in np.linspace(0.1, 0.9, 8)]
    column = np.array([NormalDist().inv_cdf(p) for p in probs])
    result = feature_drift(ref, np.tile(column[:, None], (1, len(NAMES))))[0]
    assert result.test == "ks"
    assert result.pvalue is not None
    assert result.pvalue > 0.5
    assert result.psi is not None
    assert result.psi >= PSI_MAJOR
    assert result.drifted


def test_categorical_drift() -> None:
    rng = np.random.default_rng(4)
    cats, p = ["a", "b", "c"], [0.5, 0.3, 0.2]
    ref = Reference.build(mixed(rng, 5000, cats, p), ["x", "colour"], categorical=["colour"])
    same = feature_drift(ref, mixed(rng, 2000, cats, p))[1]
    assert (same.test, same.drifted) == ("chi2", False)
    assert same.pvalue is not None
    assert same.pvalue > 0.05
    moved = feature_drift(ref, mixed(rng, 2000, cats, [0.2, 0.3, 0.5]))[1]
    assert moved.drifted
    assert moved.pvalue is not None
    assert moved.pvalue < 1e-6
    assert moved.psi is not None
    assert moved.psi > PSI_MAJOR


def test_an_unseen_category_is_counted_not_infinite() -> None:
    rng = np.random.default_rng(5)
    ref = Reference.build(mixed(rng, 5000, ["a", "b"], [0.5, 0.5]), ["x", "colour"],
                          categorical=["colour"])
    result = feature_drift(ref, mixed(rng, 1000, ["a", "b", "new"], [0.3, 0.3, 0.4]))[1]
    assert result.drifted
    assert result.statistic is not None
    assert math.isfinite(result.statistic)


def test_categories_match_across_types_by_their_string_form() -> None:
    ref = Reference.build(np.array([[1], [2], [2], [3]] * 50), ["k"], categorical=["k"])
    back = Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    result = feature_drift(back, np.array([[1], [2], [2], [3]] * 20))[0]
    assert result.statistic == pytest.approx(0.0)
    assert not result.drifted


def test_too_few_rows_are_not_judged() -> None:
    ref, rng = normal_reference()
    current = rng.normal(5.0, size=(MIN_ROWS - 1, len(NAMES)))   # would drift if judged
    results = feature_drift(ref, current)
    assert not any(r.drifted or r.judged for r in results)
    assert all(r.reason is not None and str(MIN_ROWS) in r.reason for r in results)
    summary = dataset_drift(results)
    assert (summary.judged, summary.drift_share, summary.dataset_drifted) == (0, 0.0, False)


def test_nans_are_dropped_per_feature() -> None:
    ref, rng = normal_reference()
    current = rng.normal(size=(100, len(NAMES)))
    current[:80, 0] = np.nan
    results = feature_drift(ref, current)
    assert (results[0].rows, results[0].judged) == (20, False)
    assert (results[1].rows, results[1].judged) == (100, True)


@pytest.mark.parametrize(("current", "match"), [
    (np.zeros((50, 9)), r"expected 10 feature columns \(f0, .*\), given 9 columns"),
    (np.zeros(50), "expected 10 feature columns .*given a 1-D array"),
])
def test_mismatched_current_features_raise(current: np.ndarray, match: str) -> None:
    ref, _ = normal_reference()
    with pytest.raises(ValueError, match=match):
        feature_drift(ref, current)


def test_prediction_drift_against_the_class_balance() -> None:
    rng = np.random.default_rng(6)
    ref = Reference.build(rng.normal(size=(4000, 1)), ["x"],
                          labels=rng.choice(["cat", "dog"], size=4000, p=[0.8, 0.2]))
    assert not prediction_drift(ref, rng.choice(["cat", "dog"], 500, p=[0.8, 0.2])).drifted
    assert prediction_drift(ref, rng.choice(["cat", "dog"], 500, p=[0.5, 0.5])).drifted
    with pytest.raises(ValueError, match="labels="):
        prediction_drift(Reference.build(np.zeros((5, 1)), ["x"]), ["cat"])


# -- live quality against sklearn -----------------------------------------------------------


@pytest.mark.parametrize("labels", [
    np.array([0, 1, 2]),
    np.array(["cat", "dog", "bird", "fish"]),
])
def test_classification_quality_matches_sklearn(labels: np.ndarray) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    truth = rng.choice(labels[:-1], size=400)           # the last label is only ever predicted
    predicted = np.where(rng.random(400) < 0.7, truth, rng.choice(labels, size=400))
    q = classification_quality(truth, predicted)
    assert q.labelled == 400
    assert q.accuracy == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert q.macro_f1 == pytest.approx(
        metrics.f1_score(truth, predicted, average="macro", zero_division=0))
    assert q.weighted_f1 == pytest.approx(
        metrics.f1_score(truth, predicted, average="weighted", zero_division=0))
    precision = metrics.precision_score(truth, predicted, average=None, zero_division=0,
                                        labels=np.unique(labels))
    recall = metrics.recall_score(truth, predicted, average=None, zero_division=0,
                                  labels=np.unique(labels))
    for i, label in enumerate(np.unique(labels).tolist()):
        scores = q.per_class[str(label)]
        assert scores.precision == pytest.approx(precision[i])
        assert scores.recall == pytest.approx(recall[i])


def test_classification_labels_of_mixed_kinds_compare_as_strings() -> None:
    q = classification_quality(np.array([1, 0, 1, 1]), np.array(["1", "0", "0", "1"]))
    assert q.accuracy == 0.75
    assert set(q.per_class) == {"0", "1"}


def test_regression_quality_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    truth = rng.normal(10, 3, size=300)
    predicted = truth + rng.normal(0, 1, size=300)
    q = regression_quality(truth, predicted)
    assert q.labelled == 300
    assert q.mae == pytest.approx(metrics.mean_absolute_error(truth, predicted))
    assert q.rmse == pytest.approx(math.sqrt(metrics.mean_squared_error(truth, predicted)))
    assert q.r2 == pytest.approx(metrics.r2_score(truth, predicted))


def test_regression_r2_of_a_flat_truth_is_finite() -> None:
    assert regression_quality([2.0, 2.0], [2.0, 2.0]).r2 == 1.0
    assert regression_quality([2.0, 2.0], [1.0, 3.0]).r2 == 0.0


@pytest.mark.parametrize(("truth", "predicted", "match"), [
    ([1, 2, 3], [1, 2], r"given shapes \(3,\) and \(2,\)"),
    ([], [], "expected at least one, given 0"),
])
def test_bad_quality_input_raises(truth: list[int], predicted: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_quality(truth, predicted)
    with pytest.raises(ValueError, match=match):
        regression_quality(truth, predicted)
