"""Live model monitoring statistics: input drift against a reference profile, live quality.

This module owns the numbers only. A model version carries a :class:`Reference` -- a
compact profile of the features it was trained or validated on, stored as a plain dict --
and :func:`feature_drift` compares a window of live inputs with it, feature by feature;
:func:`dataset_drift` rolls the features up. :func:`classification_quality` and
:func:`regression_quality` score predictions against the labels that come back as feedback.
Gathering the windows, storing profiles and raising alerts are the callers' job.

The conventions are Evidently's data-drift preset, so the numbers read the same as its
reports: for a numeric feature the two-sample Kolmogorov-Smirnov test (drift at p < 0.05)
up to 1,000 current rows and the Wasserstein distance normed by the reference standard
deviation above (drift when > 0.1), for a categorical one the chi-squared test; the dataset
drifts when at least half of its features do. Alongside each test goes the Population
Stability Index over the reference's deciles, with the reading of credit-scoring practice
(0.1 moderate, 0.25 major shift; Siddiqi, *Credit Risk Scorecards*), and a major PSI counts
as drift too: a test on a small window can miss a shift that the binned shares make plain.
As NannyML does with its chunks, a window of fewer than :data:`MIN_ROWS` values is not
judged at all rather than judged noisily, and live quality is NannyML's *realised
performance*: the usual metrics over whichever rows have their labels back.

Pure: numpy and the standard library only (no scipy: the KS, chi-squared and Wasserstein
computations are written out here and checked against scipy in the tests), no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

PSI_MODERATE = 0.1           # PSI from which a shift is worth a look
PSI_MAJOR = 0.25             # PSI from which a shift counts as drift whatever the test says
P_VALUE = 0.05               # KS / chi-squared: drift below this p-value
WASSERSTEIN_THRESHOLD = 0.1  # normed Wasserstein distance above which a feature drifts
KS_MAX_ROWS = 1000           # up to this many current rows KS, above Wasserstein (Evidently)
MIN_ROWS = 30                # fewer current values: the feature is not judged
DATASET_DRIFT_SHARE = 0.5    # share of drifted features from which the dataset drifts
PSI_EPS = 1e-4               # shares are clipped here so an empty bin does not give inf
N_BINS = 10                  # PSI bins: the reference's deciles
SAMPLE_SIZE = 1000           # reference values kept for KS / Wasserstein

_FORMAT_VERSION = 1
_WASSERSTEIN_MIN_STD = 1e-3  # Evidently's floor on the norm, so a constant feature is finite
_ITMAX = 10_000
_GAMMA_EPS = 3e-16
_FPMIN = 1e-300

FloatArray = npt.NDArray[np.float64]
Test = Literal["ks", "wasserstein", "chi2"]
Kind = Literal["numeric", "categorical"]


# -- the reference profile ------------------------------------------------------------------


@dataclass(frozen=True)
class NumericProfile:
    """A numeric feature of the reference.

    ``edges`` are the inner bin edges (the deciles, deduplicated, ascending); the bins are
    ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``, so ``shares`` has one more entry than
    ``edges``. Open outer bins mean a live value outside the reference range still lands in
    a bin, and keeping only the inner edges keeps the profile valid JSON (no infinities).
    ``sample`` is a bounded, sorted sample of the reference (evenly spaced order
    statistics, so the same data gives the same sample) for the distance tests.
    """

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    sample: tuple[float, ...]
    kind: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical feature of the reference: its categories (as ``str``) and their shares.

    Categories are compared by their string form, so a profile read back from JSON matches
    live values of the type they were given in.
    """

    name: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]
    kind: Literal["categorical"] = "categorical"


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Reference:
    """The reference profile of a model version, compact enough to store with it.

    Build it with :meth:`build` from the reference features; store :meth:`to_dict` and read
    it back with :meth:`from_dict`. ``class_balance`` (label -> share of the reference
    labels) is there when labels were given, for :func:`prediction_drift`.
    """

    features: tuple[FeatureProfile, ...]
    rows: int
    class_balance: dict[str, float] | None = field(default=None, hash=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names, in column order."""
        return tuple(f.name for f in self.features)

    @classmethod
    def build(
        cls,
        data: npt.ArrayLike,
        names: Sequence[str],
        *,
        categorical: Sequence[str] = (),
        labels: npt.ArrayLike | None = None,
        sample_size: int = SAMPLE_SIZE,
    ) -> Reference:
        """Profile ``data`` (rows x features, columns named by ``names``).

        ``categorical`` names the categorical columns; the others must be numeric (NaNs
        are dropped: a missing value has no bin). Pass mixed columns as an object array.
        """
        arr = np.asarray(data)
        if arr.ndim != 2:
            raise ValueError(f"reference data must be 2-D (rows x features), given "
                             f"{arr.ndim}-D")
        if arr.shape[0] == 0:
            raise ValueError("reference data is empty: expected at least one row, given 0")
        if arr.shape[1] == 0:
            raise ValueError("reference data has no columns: expected at least one feature, "
                             "given 0")
        if len(names) != arr.shape[1]:
            raise ValueError(f"expected {len(names)} columns (one per name), given "
                             f"{arr.shape[1]}")
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique, given {list(names)}")
        unknown = sorted(set(categorical) - set(names))
        if unknown:
            raise ValueError(f"categorical names {unknown} are not among the feature names "
                             f"{list(names)}")
        if sample_size < 2:
            raise ValueError(f"sample_size must be at least 2, given {sample_size}")
        cats = set(categorical)
        features: list[FeatureProfile] = []
        for j, name in enumerate(names):
            if name in cats:
                features.append(_categorical_profile(name, arr[:, j]))
            else:
                features.append(_numeric_profile(name, arr[:, j], sample_size))
        balance = None
        if labels is not None:
            lab = np.asarray(labels)
            if lab.ndim != 1 or lab.shape[0] == 0:
                raise ValueError(f"labels must be a non-empty 1-D array, given shape "
                                 f"{lab.shape}")
            cats_, counts = np.unique(lab.astype(str), return_counts=True)
            balance = {str(c): float(n) / lab.shape[0]
                       for c, n in zip(cats_.tolist(), counts.tolist(), strict=True)}
        return cls(features=tuple(features), rows=int(arr.shape[0]), class_balance=balance)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (only str, int, float, list, dict, None)."""
        feats: list[dict[str, Any]] = []
        for f in self.features:
            if isinstance(f, NumericProfile):
                feats.append({"name": f.name, "kind": f.kind, "edges": list(f.edges),
                              "shares": list(f.shares), "sample": list(f.sample)})
            else:
                feats.append({"name": f.name, "kind": f.kind,
                              "categories": list(f.categories), "shares": list(f.shares)})
        return {"version": _FORMAT_VERSION, "rows": self.rows, "features": feats,
                "class_balance": None if self.class_balance is None
                else dict(self.class_balance)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Read back what :meth:`to_dict` wrote; a malformed dict raises ValueError."""
        try:
            version = data["version"]
            if version != _FORMAT_VERSION:
                raise ValueError(f"expected reference format version {_FORMAT_VERSION}, "
                                 f"given {version!r}")
            features: list[FeatureProfile] = []
            for f in data["features"]:
                kind = f["kind"]
                if kind == "numeric":
                    features.append(_numeric_from_dict(f))
                elif kind == "categorical":
                    features.append(_categorical_from_dict(f))
                else:
                    raise ValueError(f"expected kind 'numeric' or 'categorical', "
                                     f"given {kind!r}")
            if not features:
                raise ValueError("expected at least one feature in the profile, given 0")
            balance = data.get("class_balance")
            return cls(features=tuple(features), rows=int(data["rows"]),
                       class_balance=None if balance is None
                       else {str(k): float(v) for k, v in balance.items()})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed reference profile: {exc!r}") from exc


def _numeric_from_dict(f: Mapping[str, Any]) -> NumericProfile:
    prof = NumericProfile(name=str(f["name"]), edges=tuple(float(x) for x in f["edges"]),
                          shares=tuple(float(x) for x in f["shares"]),
                          sample=tuple(float(x) for x in f["sample"]))
    if len(prof.shares) != len(prof.edges) + 1 or not prof.sample:
        raise ValueError(f"feature {prof.name!r}: expected {len(prof.edges) + 1} shares for "
                         f"{len(prof.edges)} edges and a non-empty sample, given "
                         f"{len(prof.shares)} shares and {len(prof.sample)} sample values")
    return prof


def _categorical_from_dict(f: Mapping[str, Any]) -> CategoricalProfile:
    prof = CategoricalProfile(name=str(f["name"]),
                              categories=tuple(str(x) for x in f["categories"]),
                              shares=tuple(float(x) for x in f["shares"]))
    if not prof.categories or len(prof.shares) != len(prof.categories):
        raise ValueError(f"feature {prof.name!r}: expected one share per category "
                         f"({len(prof.categories)}, at least one), given {len(prof.shares)}")
    return prof


def _numeric_profile(name: str, column: npt.NDArray[Any], sample_size: int) -> NumericProfile:
    try:
        values = column.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {name!r} is not numeric; name it in categorical=") from exc
    values = np.sort(values[~np.isnan(values)])
    if values.size == 0:
        raise ValueError(f"feature {name!r} has no values: expected at least one non-NaN "
                         f"value, given 0")
    edges = np.unique(np.quantile(values, np.arange(1, N_BINS) / N_BINS))
    shares = _bin_shares(edges, values)
    if values.size > sample_size:
        # Evenly spaced order statistics: deterministic, and the sample's CDF stays within
        # 1/sample_size of the reference's, which is all KS and Wasserstein look at.
        idx = np.round(np.linspace(0, values.size - 1, sample_size)).astype(np.intp)
        sample = values[idx]
    else:
        sample = values
    return NumericProfile(name=name, edges=tuple(edges.tolist()),
                          shares=tuple(shares.tolist()), sample=tuple(sample.tolist()))


def _categorical_profile(name: str, column: npt.NDArray[Any]) -> CategoricalProfile:
    cats, counts = np.unique(column.astype(str), return_counts=True)
    return CategoricalProfile(name=name, categories=tuple(str(c) for c in cats.tolist()),
                              shares=tuple((counts / column.shape[0]).tolist()))


def _bin_shares(edges: FloatArray, values: FloatArray) -> FloatArray:
    """Shares of ``values`` in the bins ``(-inf, e0], ..., (e_last, inf)``."""
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, minlength=edges.size + 1)
    return counts / max(values.size, 1)


# -- the statistics -------------------------------------------------------------------------


def psi(expected_shares: npt.ArrayLike, actual_shares: npt.ArrayLike,
        eps: float = PSI_EPS) -> float:
    """Population Stability Index: ``sum((a - e) * ln(a / e))`` over the bins.

    Shares are clipped at ``eps`` so a bin empty on one side adds a large but finite term
    instead of infinity. Symmetric, 0 for identical shares.
    """
    e = np.clip(np.asarray(expected_shares, dtype=np.float64), eps, None)
    a = np.clip(np.asarray(actual_shares, dtype=np.float64), eps, None)
    if e.shape != a.shape:
        raise ValueError(f"expected and actual shares differ in length: expected "
                         f"{e.shape}, given {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def kolmogorov_sf(lam: float) -> float:
    """``Q(lam) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lam^2)``, the Kolmogorov survival.

    The alternating series converges in a few terms for ``lam`` above about 1; below, it
    is computed as ``1 - K(lam)`` from the Jacobi-theta form of the CDF, which converges
    fast there, and it is 1 for tiny ``lam`` where the CDF underflows.
    """
    if lam <= 0.0:
        return 1.0
    if lam < 1.18:
        terms = sum(math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8.0 * lam * lam))
                    for k in range(1, 12))
        q = 1.0 - math.sqrt(2.0 * math.pi) / lam * terms
    else:
        q = 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
                      for k in range(1, 101))
    return min(1.0, max(0.0, q))


def ks_2samp(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: ``(D, p-value)``, two-sided.

    ``D`` is exact: both empirical CDFs evaluated at every pooled value by binary search.
    The p-value is the asymptotic Kolmogorov distribution with Stephens' small-sample
    correction (Numerical Recipes ``probks``), ``lam = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) D``
    with ``ne = n m / (n + m)``; within about 0.01 of scipy's ``method="asymp"`` at sizes
    in the hundreds, closer at small p-values, where the decision is made.
    """
    x = np.sort(np.asarray(a, dtype=np.float64).ravel())
    y = np.sort(np.asarray(b, dtype=np.float64).ravel())
    n, m = x.size, y.size
    if n == 0 or m == 0:
        raise ValueError(f"ks_2samp needs two non-empty samples, given sizes {n} and {m}")
    pooled = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, pooled, side="right") / n
    cdf_y = np.searchsorted(y, pooled, side="right") / m
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    return d, kolmogorov_sf(lam)


def chi2_sf(x: float, dof: float) -> float:
    """Survival function of the chi-squared distribution: ``Q(dof/2, x/2)``.

    The regularised upper incomplete gamma function as Numerical Recipes' ``gammq``: the
    series for ``x < a + 1``, Lentz's continued fraction otherwise (each converges fast on
    its side, and the continued fraction keeps tiny tails accurate).
    """
    if dof <= 0:
        raise ValueError(f"chi2_sf needs dof > 0, given {dof}")
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    a, z = dof / 2.0, x / 2.0
    log_front = -z + a * math.log(z) - math.lgamma(a)
    if z < a + 1.0:
        ap, term = a, 1.0 / a
        total = term
        for _ in range(_ITMAX):
            ap += 1.0
            term *= z / ap
            total += term
            if abs(term) < abs(total) * _GAMMA_EPS:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_front)))
    b = z + 1.0 - a
    c = 1.0 / _FPMIN
    d = 1.0 / b
    h = d
    for i in range(1, _ITMAX + 1):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _FPMIN:
            d = _FPMIN
        c = b + an / c
        if abs(c) < _FPMIN:
            c = _FPMIN
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _GAMMA_EPS:
            break
    return min(1.0, max(0.0, math.exp(log_front) * h))


def chi2_test(expected_shares: npt.ArrayLike, actual_counts: npt.ArrayLike
              ) -> tuple[float, float]:
    """Pearson's chi-squared goodness of fit: ``(statistic, p-value)``.

    The expected counts are the shares (normalised to sum to 1) times the observed total;
    ``dof`` is the number of categories less one. A category with no expected share but
    observed counts gives an infinite statistic (p = 0): callers that want that finite give
    unseen categories a small share, as :func:`feature_drift` does.
    """
    e = np.asarray(expected_shares, dtype=np.float64)
    o = np.asarray(actual_counts, dtype=np.float64)
    if e.shape != o.shape or e.ndim != 1:
        raise ValueError(f"expected shares and actual counts must be 1-D of one length, "
                         f"expected {e.shape}, given {o.shape}")
    if e.sum() <= 0 or np.any(e < 0) or np.any(o < 0):
        raise ValueError("shares and counts must be non-negative with shares summing > 0")
    total = o.sum()
    if total <= 0:
        raise ValueError("chi2_test needs at least one observation, given 0")
    keep = (e > 0) | (o > 0)
    e, o = e[keep], o[keep]
    if np.any((e == 0) & (o > 0)):
        return math.inf, 0.0
    expected = e / e.sum() * total
    stat = float(np.sum((o - expected) ** 2 / expected))
    dof = e.size - 1
    if dof < 1:
        return stat, 1.0
    return stat, chi2_sf(stat, dof)


def wasserstein_normed(ref_sample: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Wasserstein-1 distance of the two empirical distributions over the reference std.

    Evidently's normed Wasserstein: dividing by the reference spread makes one threshold
    (0.1: a tenth of a standard deviation of mass moved) fit every feature's scale. The
    norm is floored at 1e-3, as Evidently does, so a constant reference stays finite.
    """
    u = np.sort(np.asarray(ref_sample, dtype=np.float64).ravel())
    v = np.sort(np.asarray(actual, dtype=np.float64).ravel())
    if u.size == 0 or v.size == 0:
        raise ValueError(f"wasserstein_normed needs two non-empty samples, given sizes "
                         f"{u.size} and {v.size}")
    pooled = np.sort(np.concatenate([u, v]))
    deltas = np.diff(pooled)
    cdf_u = np.searchsorted(u, pooled[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, pooled[:-1], side="right") / v.size
    distance = float(np.sum(np.abs(cdf_u - cdf_v) * deltas))
    return distance / max(float(np.std(u)), _WASSERSTEIN_MIN_STD)


# -- drift ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one feature.

    ``test`` is the test used, with its ``statistic`` and ``pvalue`` (None for
    Wasserstein, which is a distance); ``drifted`` is the test's verdict or a major PSI.
    A feature with too few current values is not judged: ``drifted`` False, ``psi`` and
    ``test`` None, and ``reason`` says why.
    """

    name: str
    kind: Kind
    rows: int
    drifted: bool
    psi: float | None = None
    test: Test | None = None
    statistic: float | None = None
    pvalue: float | None = None
    reason: str | None = None

    @property
    def judged(self) -> bool:
        """Whether there were enough values to test this feature."""
        return self.test is not None


@dataclass(frozen=True)
class DatasetDrift:
    """The features rolled up: share of the judged features that drifted."""

    features: int
    judged: int
    drifted: int
    drift_share: float
    dataset_drifted: bool


def feature_drift(reference: Reference, actual: npt.ArrayLike,
                  min_rows: int = MIN_ROWS) -> list[FeatureDrift]:
    """Compare each column of ``actual`` (rows x features, reference order) with the profile.

    Numeric: PSI over the reference's decile bins, and KS against the reference sample up
    to :data:`KS_MAX_ROWS` current values (KS is needlessly sensitive on large windows,
    hence Wasserstein above). Categorical: PSI and chi-squared over the reference's
    categories, live categories the reference never saw pooled into one extra bucket.
    """
    arr = np.asarray(actual)
    n_features = len(reference.features)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        given = f"{arr.shape[1]} columns" if arr.ndim == 2 else f"a {arr.ndim}-D array"
        raise ValueError(f"expected {n_features} feature columns "
                         f"({', '.join(reference.names)}), given {given}")
    results: list[FeatureDrift] = []
    for j, prof in enumerate(reference.features):
        if isinstance(prof, NumericProfile):
            results.append(_numeric_drift(prof, arr[:, j], min_rows))
        else:
            results.append(_categorical_drift(prof.name, prof.categories, prof.shares,
                                              arr[:, j], min_rows))
    return results


def prediction_drift(reference: Reference, predicted: npt.ArrayLike,
                     min_rows: int = MIN_ROWS) -> FeatureDrift:
    """Drift of the predicted labels against the reference class balance (chi-squared).

    Prediction drift shows up before feedback labels do, so it is the early signal of a
    quality drop on a classifier.
    """
    if reference.class_balance is None:
        raise ValueError("the reference has no class balance: build it with labels=")
    pred = np.asarray(predicted)
    if pred.ndim != 1:
        raise ValueError(f"predicted labels must be 1-D, given {pred.ndim}-D")
    cats = tuple(reference.class_balance)
    return _categorical_drift("prediction", cats,
                              tuple(reference.class_balance[c] for c in cats), pred, min_rows)


def dataset_drift(results: Sequence[FeatureDrift],
                  share: float = DATASET_DRIFT_SHARE) -> DatasetDrift:
    """Roll the features up: the dataset drifts when ``share`` of the judged ones do.

    Features not judged are left out of the share: too few values is no evidence either way.
    """
    judged = [r for r in results if r.judged]
    drifted = sum(r.drifted for r in judged)
    drift_share = drifted / len(judged) if judged else 0.0
    return DatasetDrift(features=len(results), judged=len(judged), drifted=drifted,
                        drift_share=drift_share,
                        dataset_drifted=bool(judged) and drift_share >= share)


def _not_judged(name: str, kind: Kind, rows: int, min_rows: int) -> FeatureDrift:
    return FeatureDrift(name=name, kind=kind, rows=rows, drifted=False,
                        reason=f"{rows} current values, fewer than the {min_rows} needed")


def _numeric_drift(prof: NumericProfile, column: npt.NDArray[Any],
                   min_rows: int) -> FeatureDrift:
    try:
        values = column.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {prof.name!r}: expected numeric values, given "
                         f"{column.dtype}") from exc
    values = values[~np.isnan(values)]
    rows = int(values.size)
    if rows < min_rows:
        return _not_judged(prof.name, "numeric", rows, min_rows)
    score = psi(prof.shares, _bin_shares(np.asarray(prof.edges, dtype=np.float64), values))
    if rows <= KS_MAX_ROWS:
        stat, p = ks_2samp(prof.sample, values)
        return FeatureDrift(name=prof.name, kind="numeric", rows=rows, psi=score, test="ks",
                            statistic=stat, pvalue=p,
                            drifted=p < P_VALUE or score >= PSI_MAJOR)
    dist = wasserstein_normed(prof.sample, values)
    return FeatureDrift(name=prof.name, kind="numeric", rows=rows, psi=score,
                        test="wasserstein", statistic=dist,
                        drifted=dist > WASSERSTEIN_THRESHOLD or score >= PSI_MAJOR)


def _categorical_drift(name: str, categories: tuple[str, ...], shares: tuple[float, ...],
                       column: npt.NDArray[Any], min_rows: int) -> FeatureDrift:
    values = column.astype(str)
    rows = int(values.size)
    if rows < min_rows:
        return _not_judged(name, "categorical", rows, min_rows)
    cats = np.asarray(categories, dtype=str)
    order = np.argsort(cats)
    sorted_cats = cats[order]
    pos = np.searchsorted(sorted_cats, values)
    seen = sorted_cats[np.minimum(pos, cats.size - 1)] == values
    counts = np.zeros(cats.size + 1)
    counts[order] = np.bincount(pos[seen], minlength=cats.size)
    counts[cats.size] = rows - int(seen.sum())
    # Unseen categories get the PSI floor as their expected share: a new category is drift
    # in proportion to how much of the window it takes, not infinitely so.
    expected = np.append(np.asarray(shares, dtype=np.float64), 0.0)
    expected = np.clip(expected, PSI_EPS, None)
    score = psi(expected, counts / rows)
    if counts[cats.size] == 0:
        expected, counts = expected[:-1], counts[:-1]
    stat, p = chi2_test(expected, counts)
    return FeatureDrift(name=name, kind="categorical", rows=rows, psi=score, test="chi2",
                        statistic=stat, pvalue=p, drifted=p < P_VALUE or score >= PSI_MAJOR)


# -- live quality ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class (0 where undefined, as sklearn's
    ``zero_division=0``), and its support (true rows of that class)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationQuality:
    """Live quality of a classifier over the rows that have feedback labels."""

    labelled: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, ClassScores] = field(hash=False)


@dataclass(frozen=True)
class RegressionQuality:
    """Live quality of a regressor over the rows that have feedback labels."""

    labelled: int
    mae: float
    rmse: float
    r2: float


def _pair(truth: npt.ArrayLike, predicted: npt.ArrayLike
          ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    t, p = np.asarray(truth), np.asarray(predicted)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"truth and predicted must be 1-D of one length, given shapes "
                         f"{t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("no labelled rows: expected at least one, given 0")
    return t, p


def classification_quality(truth: npt.ArrayLike,
                           predicted: npt.ArrayLike) -> ClassificationQuality:
    """Accuracy, macro and weighted F1, and per-class scores, from one confusion matrix.

    The classes are those in either array (as sklearn does), so a class only ever
    predicted drags macro F1 down. Labels may be ints or strings; if either array holds
    strings both are compared as strings (feedback often arrives as text).
    """
    t, p = _pair(truth, predicted)
    if t.dtype.kind in "OSU" or p.dtype.kind in "OSU":
        t, p = t.astype(str), p.astype(str)
    classes, inverse = np.unique(np.concatenate([t, p]), return_inverse=True)
    k, n = classes.size, t.size
    ti, pi = inverse[:n], inverse[n:]
    confusion = np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    true_count = confusion.sum(axis=1).astype(np.float64)
    pred_count = confusion.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_count > 0, tp / pred_count, 0.0)
        recall = np.where(true_count > 0, tp / true_count, 0.0)
        denom = true_count + pred_count
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    per_class = {str(c): ClassScores(precision=float(precision[i]), recall=float(recall[i]),
                                     f1=float(f1[i]), support=int(true_count[i]))
                 for i, c in enumerate(classes.tolist())}
    return ClassificationQuality(labelled=n, accuracy=float(tp.sum() / n),
                                 macro_f1=float(f1.mean()),
                                 weighted_f1=float(np.sum(f1 * true_count) / n),
                                 per_class=per_class)


def regression_quality(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> RegressionQuality:
    """MAE, RMSE and R^2. R^2 of a constant truth is 1 if predicted exactly, else 0
    (sklearn's ``force_finite``), so a flat window does not report infinity."""
    t, p = _pair(truth, predicted)
    tf, pf = t.astype(np.float64), p.astype(np.float64)
    err = tf - pf
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((tf - tf.mean()) ** 2))
    flat = 1.0 if ss_res == 0 else 0.0
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else flat
    return RegressionQuality(labelled=int(t.size), mae=float(np.mean(np.abs(err))),
                             rmse=math.sqrt(ss_res / t.size), r2=r2)
