"""The registry's pure half: references, requirements, formats and the promotion gate."""

from __future__ import annotations

from typing import Any

import pytest

from leptonic.core.registry import (
    Framework,
    ModelRef,
    ModelVersion,
    Requirement,
    Signature,
    check_alias,
    framework_of,
    gate,
    key_metric,
    parse_ref,
    parse_requirement,
)
from leptonic.errors import InvalidInput


def version(n: int, **metrics: float) -> ModelVersion:
    return ModelVersion(model="m", version=n, framework=Framework.SKLEARN, format="joblib",
                        artifact="m.joblib", sha256="0" * 64, size_bytes=1,
                        signature=Signature(), metrics=metrics, params={}, lineage={},
                        tags={}, created_at=0.0)


@pytest.mark.parametrize(("text", "want"), [
    ("iris", ModelRef("iris")), ("iris@latest", ModelRef("iris")),
    ("iris@3", ModelRef("iris", version=3)), ("iris@v3", ModelRef("iris", version=3)),
    ("iris@champion", ModelRef("iris", alias="champion")),
    ("iris@v-next", ModelRef("iris", alias="v-next")),
])
def test_references(text: str, want: ModelRef) -> None:
    assert parse_ref(text) == want


@pytest.mark.parametrize(("text", "word"), [
    ("", "invalid model reference"), ("@3", "invalid model reference"),
    ("iris@", "invalid model reference"), ("iris@0", "count from 1"),
    ("iris@Champion", "invalid alias"), ("iris@a b", "invalid alias"),
])
def test_bad_references_say_the_forms(text: str, word: str) -> None:
    with pytest.raises(InvalidInput, match=word):
        parse_ref(text)


def test_latest_is_not_an_alias() -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        check_alias("latest")


@pytest.mark.parametrize(("text", "want"), [
    ("f1>=0.9", Requirement("f1", ">=", 0.9)), (" rmse < 3.5 ", Requirement("rmse", "<", 3.5)),
    ("accuracy==1", Requirement("accuracy", "==", 1.0)),
    ("r2>-1e-3", Requirement("r2", ">", -0.001)),
])
def test_requirements(text: str, want: Requirement) -> None:
    assert parse_requirement(text) == want


@pytest.mark.parametrize("text", ["f1", "f1 >= high", ">=0.9", "f1=>0.9", "f1>=0.9;drop"])
def test_bad_requirements_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidInput, match="METRIC OP NUMBER"):
        parse_requirement(text)


@pytest.mark.parametrize(("name", "given", "want"), [
    ("m.joblib", None, (Framework.SKLEARN, "joblib")),
    ("M.PKL", None, (Framework.SKLEARN, "joblib")),
    ("m.skops", Framework.SKLEARN, (Framework.SKLEARN, "skops")),
    ("m.pt", None, (Framework.TORCH, "torchscript")),
    ("m.pt2", Framework.TORCH, (Framework.TORCH, "pt2")),
])
def test_formats(name: str, given: Framework | None, want: tuple[Framework, str]) -> None:
    assert framework_of(name, given) == want


@pytest.mark.parametrize(("name", "given", "word"), [
    ("model", None, "cannot tell the format"), ("m.onnx", None, ".joblib"),
    ("m.pt", Framework.SKLEARN, "is a torch artifact"),
])
def test_bad_formats(name: str, given: Framework | None, word: str) -> None:
    with pytest.raises(InvalidInput, match=word):
        framework_of(name, given)


def test_key_metric_prefers_f1_then_accuracy_then_any_shared() -> None:
    assert key_metric({"accuracy": 1, "f1_macro": 1}, {"f1_macro": 1, "accuracy": 1}) == \
        "f1_macro"
    assert key_metric({"accuracy": 1, "loss": 1}, {"accuracy": 1}) == "accuracy"
    assert key_metric({"b": 1, "a": 1}, {"a": 1, "b": 1}) == "a"
    assert key_metric({"a": 1}, {"b": 1}) is None


GATES: list[tuple[Any, ...]] = [
    # candidate, requires, incumbent, metric -> failures containing
    (version(2, f1=0.95), ["f1>=0.9"], None, None, []),
    (version(2, f1=0.85), ["f1>=0.9"], None, None, ["f1>=0.9: version 2 has f1 0.85"]),
    (version(2, acc=0.9), ["f1>=0.9"], None, None, ["has no metric 'f1' (it has: acc)"]),
    (version(2, f1=0.95), [], version(1, f1=0.9), None, []),
    (version(2, f1=0.9), [], version(1, f1=0.9), None, ["f1 of version 2 is 0.9"]),
    (version(2, f1=0.8), [], version(1, f1=0.9), None, ["(higher is better)"]),
    (version(2, rmse=1.0), [], version(1, rmse=2.0), None, []),
    (version(2, rmse=3.0), [], version(1, rmse=2.0), None, ["(lower is better)"]),
    (version(2, f1=0.8, acc=0.99), [], version(1, f1=0.9, acc=0.9), "acc", []),
    (version(2, a=1.0), [], version(1, b=1.0), None, ["share no metric"]),
    (version(1, f1=0.5), [], version(1, f1=0.5), None, []),      # already it: nothing to beat
    (version(2, f1=0.5), ["f1>=0.9", "acc>0"], version(1, f1=0.9), None,
     ["f1>=0.9", "has no metric 'acc'", "better than champion"]),
]


@pytest.mark.parametrize(("cand", "requires", "incumbent", "metric", "want"), GATES)
def test_the_gate(cand: ModelVersion, requires: list[str], incumbent: ModelVersion | None,
                  metric: str | None, want: list[str]) -> None:
    failures = gate(cand, [parse_requirement(r) for r in requires], incumbent,
                    better_than="champion", metric=metric)
    assert len(failures) == len(want), failures
    for failure, word in zip(failures, want, strict=True):
        assert word in failure
