"""The model registry's nouns and its promotion gate, pure.

A *model* has numbered *versions* (1, 2, ...); each holds an artifact (a file the store
keeps), its framework, signature, metrics, params, the fingerprint of its data set, a
reference profile for drift and its lineage. *Aliases* (``champion``, ``challenger``, any
slug) point at one version each, as MLflow's aliases do in place of its deprecated stages;
every move is kept (who, when, from, to), so "which version was in production on the 3rd"
has an answer.

The promotion gate decides whether an alias may move to a version: requirements on its own
metrics (``f1>=0.9``) and, with ``better_than``, on the version the named alias holds now.
It returns what failed, with the figures, so a refusal says why.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from leptonic.errors import InvalidInput

ALIAS_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
#: the metric ``--better-than`` compares when none is named: the first of these present
KEY_METRICS = ("f1_macro", "f1", "accuracy", "r2", "roc_auc")
#: metrics where lower is better (errors); every other metric is better higher
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse", "log_loss", "mape"})


class Framework(StrEnum):
    SKLEARN = "sklearn"
    TORCH = "torch"


#: artifact file suffixes -> (framework, format)
FORMATS: dict[str, tuple[Framework, str]] = {
    ".joblib": (Framework.SKLEARN, "joblib"), ".pkl": (Framework.SKLEARN, "joblib"),
    ".skops": (Framework.SKLEARN, "skops"), ".pt": (Framework.TORCH, "torchscript"),
    ".ts": (Framework.TORCH, "torchscript"), ".pt2": (Framework.TORCH, "pt2"),
}


class Signature(BaseModel):
    """What the model takes and gives: feature names and count, classes (classifiers)."""

    model_config = ConfigDict(extra="forbid")
    features: list[str] = Field(default_factory=list, max_length=10_000)
    n_features: int | None = Field(default=None, ge=1)
    classes: list[Any] | None = Field(default=None, max_length=100_000)
    task: str | None = Field(default=None, pattern="^(classification|regression)$")

    def expected_features(self) -> int | None:
        return self.n_features or (len(self.features) or None)


class VersionMeta(BaseModel):
    """What a client sends with an artifact (the server never unpickles it)."""

    model_config = ConfigDict(extra="forbid")
    framework: Framework | None = None
    signature: Signature = Field(default_factory=Signature)
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(default=None, max_length=200,
                                description="fingerprint of the data set it learnt from")
    reference: dict[str, Any] | None = Field(
        default=None, description="reference profile for drift (core.drift.Reference)")
    lineage: dict[str, Any] = Field(default_factory=dict,
                                    description="e.g. {'job': NAME} that trained it")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = Field(default="", max_length=2_000)


class ModelVersion(BaseModel):
    """One registered version."""

    model: str
    version: int
    framework: Framework
    format: str
    artifact: str                   # the file's name, as uploaded
    sha256: str
    size_bytes: int
    signature: Signature
    metrics: dict[str, float]
    params: dict[str, Any]
    dataset: str | None = None
    has_reference: bool = False
    lineage: dict[str, Any]
    tags: dict[str, str]
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    created_at: float
    created_by: str | None = None


class AliasMove(BaseModel):
    """One move of an alias: from which version to which (None: set first, or removed)."""

    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: float
    by: str | None = None


class RegisteredModel(BaseModel):
    """A model with its versions (newest last) and aliases."""

    name: str
    created_at: float
    latest: int | None
    aliases: dict[str, int]
    versions: list[ModelVersion]


def check_alias(alias: str) -> str:
    if not ALIAS_RE.match(alias) or alias == "latest":
        raise InvalidInput(f"invalid alias {alias!r}: use a lowercase slug of letters, digits "
                           "and '-' starting with a letter, at most 40 characters (e.g. "
                           "champion, challenger); 'latest' is reserved")
    return alias


def framework_of(filename: str, given: Framework | None) -> tuple[Framework, str]:
    """The framework and format of an artifact from its file name (and what the client
    said); InvalidInput naming the accepted suffixes when neither tells."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    found = FORMATS.get(suffix)
    if found is None:
        raise InvalidInput(f"cannot tell the format of {filename!r}: use one of "
                           f"{', '.join(sorted(FORMATS))} (joblib or skops for scikit-learn, "
                           "TorchScript or .pt2 for torch)")
    if given is not None and given is not found[0]:
        raise InvalidInput(f"{filename!r} is a {found[0].value} artifact ({found[1]}), not "
                           f"{given.value}")
    return found


# -- references ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRef:
    """``NAME``, ``NAME@3``, ``NAME@v3`` or ``NAME@champion``."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_ref(text: str) -> ModelRef:
    name, at, tail = text.strip().partition("@")
    if not name or (at and not tail):
        raise InvalidInput(f"invalid model reference {text!r}: use NAME, NAME@VERSION or "
                           "NAME@ALIAS (e.g. iris@champion)")
    if not tail or tail == "latest":
        return ModelRef(name)
    digits = tail[1:] if tail[:1] == "v" and tail[1:].isdigit() else tail
    if digits.isdigit():
        if int(digits) < 1:
            raise InvalidInput(f"invalid model reference {text!r}: versions count from 1")
        return ModelRef(name, version=int(digits))
    return ModelRef(name, alias=check_alias(tail))


# -- the promotion gate ----------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq}
_REQ_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*"
                     r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Requirement:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def holds(self, metrics: Mapping[str, float]) -> bool:
        got = metrics.get(self.metric)
        return got is not None and _OPS[self.op](got, self.value)


def parse_requirement(text: str) -> Requirement:
    m = _REQ_RE.match(text)
    if m is None:
        raise InvalidInput(f"invalid requirement {text!r}: write METRIC OP NUMBER, e.g. "
                           "'f1>=0.9' or 'rmse<3.5' (OP is one of >=, <=, >, <, ==)")
    return Requirement(m.group(1), m.group(2), float(m.group(3)))


def key_metric(*metrics: Mapping[str, float]) -> str | None:
    """The metric to compare on: the first of ``KEY_METRICS`` every side has, else the
    first metric they share (in name order)."""
    shared = set(metrics[0]).intersection(*metrics[1:]) if metrics else set()
    for name in KEY_METRICS:
        if name in shared:
            return name
    return min(shared) if shared else None


def gate(candidate: ModelVersion, requires: Sequence[Requirement],
         incumbent: ModelVersion | None = None, *, better_than: str | None = None,
         metric: str | None = None) -> list[str]:
    """What stops ``candidate`` from taking an alias, each with its figures (empty: it
    passes). ``incumbent``: the version the ``better_than`` alias holds now (None when
    that alias is unset: nothing to beat); compared on ``metric`` (default
    :func:`key_metric`), strictly better by its direction."""
    failures = []
    for req in requires:
        got = candidate.metrics.get(req.metric)
        if got is None:
            have = ", ".join(sorted(candidate.metrics)) or "none"
            failures.append(f"{req}: version {candidate.version} has no metric "
                            f"{req.metric!r} (it has: {have})")
        elif not req.holds(candidate.metrics):
            failures.append(f"{req}: version {candidate.version} has {req.metric} "
                            f"{got:.4g}")
    if better_than and incumbent is not None and incumbent.version != candidate.version:
        name = metric or key_metric(candidate.metrics, incumbent.metrics)
        if name is None:
            failures.append(f"better than {better_than}: versions {candidate.version} and "
                            f"{incumbent.version} share no metric to compare")
        else:
            mine, theirs = candidate.metrics.get(name), incumbent.metrics.get(name)
            lower = name in LOWER_IS_BETTER
            if mine is None or theirs is None or math.isnan(mine) or \
                    (mine >= theirs if lower else mine <= theirs):
                failures.append(
                    f"better than {better_than}: {name} of version {candidate.version} is "
                    f"{_fmt(mine)}, of version {incumbent.version} ({better_than}) "
                    f"{_fmt(theirs)} ({'lower' if lower else 'higher'} is better)")
    return failures


def _fmt(x: float | None) -> str:
    return "missing" if x is None else f"{x:.4g}"


# -- training and evaluation tasks -----------------------------------------------------------

#: the data sets scikit-learn ships (``sklearn:NAME``) -> their loader; none downloads
SKLEARN_DATASETS = {"iris": "load_iris", "digits": "load_digits", "wine": "load_wine",
                    "breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}
_TARGET_RE = re.compile(r"^(.*?):target=([^:]+)$")


@dataclass(frozen=True)
class DatasetRef:
    """``sklearn:NAME`` or ``csv:PATH[:target=COLUMN]`` (the target: the last column
    unless named)."""

    kind: str                       # sklearn | csv
    name: str                       # the data set's name, or the CSV's path
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" + (f":target={self.target}" if self.target else "")


def parse_dataset(text: str) -> DatasetRef:
    kind, _, rest = text.strip().partition(":")
    if kind == "sklearn" and rest in SKLEARN_DATASETS:
        return DatasetRef("sklearn", rest)
    if kind == "sklearn":
        raise InvalidInput(f"unknown data set {text!r}: scikit-learn ships "
                           + ", ".join(f"sklearn:{n}" for n in sorted(SKLEARN_DATASETS)))
    if kind == "csv" and rest:
        m = _TARGET_RE.match(rest)
        path, target = (m.group(1), m.group(2)) if m else (rest, None)
        if path:
            return DatasetRef("csv", path, target)
    raise InvalidInput(f"invalid data set {text!r}: use sklearn:NAME (e.g. sklearn:iris) or "
                       "csv:PATH[:target=COLUMN]")


class TrainTask(BaseModel):
    """What a ``model train`` / ``model evaluate`` job does (its ``task.json``)."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(default="train", pattern="^(train|evaluate)$")
    model: str
    version: int | None = Field(default=None, ge=1)      # evaluate: the version
    dataset: str = Field(max_length=4_096)
    estimator: str | None = Field(default=None, max_length=300)   # train
    params: dict[str, Any] = Field(default_factory=dict)
    cv: int | None = Field(default=None, ge=2, le=50)
    test_size: float = Field(default=0.25, ge=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    def dataset_ref(self) -> DatasetRef:
        return parse_dataset(self.dataset)
