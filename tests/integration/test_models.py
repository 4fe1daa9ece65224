"""The model registry through the API, the client and the CLI, on SQLite and PostgreSQL: a
real scikit-learn model trained on iris registered with its signature, metrics and drift
reference; aliases behind the promotion gate and their history; downloads checked against
their SHA-256; bad input is a 4xx naming what was wrong and leaves the store as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.core.drift import Reference
from leptonic.platform import Platform
from tests.integration.clitools import ok_json, one_line_error

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")


def _post(api: TestClient, name: str, content: bytes, filename: str = "m.joblib",
          meta: dict[str, Any] | None = None) -> Any:
    return api.post(f"/api/v1/models/{name}/versions",
                    data={"meta": json.dumps(meta or {})},
                    files={"file": (filename, content, "application/octet-stream")})


def _iris_models(tmp_path: Path) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y)
    good = LogisticRegression(max_iter=500).fit(X_tr, y_tr)
    weak = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X_tr, y_tr)
    return good, weak, (X_tr, y_tr), (X_te, y_te)


def _scores(model: Any, test: tuple[Any, Any]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = model.predict(test[0])
    return {"accuracy": float(accuracy_score(test[1], predicted)),
            "f1_macro": float(f1_score(test[1], predicted, average="macro"))}


def test_register_alias_gate_history_download_delete(api: TestClient, platform: Platform,
                                                     tmp_path: Path) -> None:
    from leptonic.client import Client
    from leptonic.models import register_sklearn
    from tests.integration.clitools import _TestClientTransport

    good, weak, train, test = _iris_models(tmp_path)
    client = Client(url="http://testserver", token=api.headers["Authorization"][7:],
                    transport=_TestClientTransport(api))
    v1 = register_sklearn(client, "iris", good, *train, metrics=_scores(good, test),
                          feature_names=["sepal_l", "sepal_w", "petal_l", "petal_w"],
                          lineage={"script": "train.py"})
    assert (v1.model, v1.version, v1.framework.value, v1.format) == ("iris", 1, "sklearn",
                                                                      "joblib")
    assert v1.signature.n_features == 4
    assert v1.signature.classes == [0, 1, 2]
    assert v1.signature.features == ["sepal_l", "sepal_w", "petal_l", "petal_w"]
    assert v1.metrics["accuracy"] > 0.9
    assert v1.has_reference
    assert v1.dataset is not None
    assert v1.dataset.startswith("sha256:")
    ref = Reference.from_dict(platform.store.model_reference("iris", 1) or {})
    assert list(ref.names) == ["sepal_l", "sepal_w", "petal_l", "petal_w"]

    v2 = register_sklearn(client, "iris", weak, *train, metrics=_scores(weak, test))
    assert v2.version == 2
    assert v2.metrics["f1_macro"] < v1.metrics["f1_macro"]

    # the artifact comes back byte for byte, and is the model that was registered
    data = client.model_artifact("iris", 1)
    assert hashlib.sha256(data).hexdigest() == v1.sha256
    path = tmp_path / "back.joblib"
    path.write_bytes(data)
    assert (joblib.load(path).predict(test[0]) == good.predict(test[0])).all()
    stored = next((platform.layout.models / "iris" / "1").iterdir())
    assert stored.stat().st_mode & 0o077 == 0

    # aliases: champion v1 (gate met); v2 refused with the figures; challenger v2 allowed
    move = client.set_model_alias("iris", "champion", 1, require=["accuracy>=0.9"])
    assert (move.from_version, move.to_version) == (None, 1)
    r = api.put("/api/v1/models/iris/aliases/champion",
                json={"version": 2, "better_than": "champion"})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    assert "f1_macro of version 2" in detail
    assert "of version 1 (champion)" in detail
    r = api.put("/api/v1/models/iris/aliases/champion",
                json={"version": 2, "require": ["f1_macro>=0.9"]})
    assert r.status_code == 409
    assert f"version 2 has f1_macro {v2.metrics['f1_macro']:.4g}" in r.json()["detail"]
    assert client.get_model("iris").aliases == {"champion": 1}       # unchanged
    client.set_model_alias("iris", "challenger", 2)
    assert client.get_model_version("iris", "champion").version == 1
    assert client.get_model_version("iris", "challenger").version == 2
    assert client.get_model_version("iris", "latest").version == 2
    assert client.get_model_version("iris", "v1").aliases == ["champion"]

    # a better version takes champion; the history says who held it when
    v3 = register_sklearn(client, "iris", good, *train,
                          metrics={**_scores(good, test),
                                   "f1_macro": v1.metrics["f1_macro"] + 0.01})
    client.set_model_alias("iris", "champion", v3.version, better_than="champion")
    moves = [(m.alias, m.from_version, m.to_version) for m in client.model_history("iris")]
    assert moves == [("champion", None, 1), ("challenger", None, 2), ("champion", 1, 3)]
    assert all(m.by == "token:admin" for m in client.model_history("iris"))

    # a version an alias holds is not deleted; one no alias holds is, with its file
    r = api.delete("/api/v1/models/iris/versions/3")
    assert r.status_code == 409
    assert "champion" in r.json()["detail"]
    assert api.delete("/api/v1/models/iris/versions/1").status_code == 204
    assert not (platform.layout.models / "iris" / "1").exists()
    assert [v.version for v in client.get_model("iris").versions] == [2, 3]
    assert api.get("/api/v1/models/iris/versions/1").status_code == 404
    kinds = [e.reason for e in client.model_events("iris")]
    assert "Registered" in kinds
    assert "AliasMoved" in kinds
    assert api.delete("/api/v1/models/iris").status_code == 204
    assert client.list_models() == []
    assert not (platform.layout.models / "iris").exists()


@pytest.mark.parametrize(("name", "filename", "meta", "status", "words"), [
    ("iris", "model.txt", {}, 422, ["cannot tell the format", ".joblib"]),
    ("iris", "model.pt", {"framework": "sklearn"}, 422, ["torch artifact"]),
    ("Bad_Name", "m.joblib", {}, 422, ["invalid model name"]),
    ("iris", "m.joblib", {"metrics": {"f1": "high"}}, 422, ["meta: metrics.f1"]),
    ("iris", "m.joblib", {"unknown": 1}, 422, ["meta: unknown"]),
    ("iris", "m.joblib", {"signature": {"n_features": 0}}, 422, ["signature.n_features"]),
])
def test_bad_registrations_are_refused_and_leave_nothing(
        api: TestClient, platform: Platform, name: str, filename: str,
        meta: dict[str, Any], status: int, words: list[str]) -> None:
    r = _post(api, name, b"not really a model", filename, meta)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    for word in words:
        assert word in r.json()["detail"], r.json()["detail"]
    assert api.get("/api/v1/models").json() == []
    leftovers = list(platform.layout.models.rglob("*")) if platform.layout.models.exists() \
        else []
    assert [p for p in leftovers if p.is_file()] == []


def test_empty_artifact_and_bad_aliases(api: TestClient) -> None:
    r = _post(api, "iris", b"")
    assert r.status_code == 422
    assert "empty" in r.json()["detail"]
    assert _post(api, "iris", b"x" * 10).status_code == 201
    for body, status, word in [
            ({"version": 9}, 404, "no version 9"),
            ({"version": 1, "require": ["f1 is good"]}, 422, "METRIC OP NUMBER"),
            ({"version": 1, "require": ["f1>=0.9"]}, 409, "has no metric 'f1'"),
            ({"version": 0}, 422, "version")]:
        r = api.put("/api/v1/models/iris/aliases/champion", json=body)
        assert r.status_code == status, r.text
        assert word in r.json()["detail"], r.json()["detail"]
    r = api.put("/api/v1/models/iris/aliases/Not%20An%20Alias", json={"version": 1})
    assert r.status_code == 422
    assert "invalid alias" in r.json()["detail"]
    assert api.get("/api/v1/models/nope").status_code == 404
    assert api.get("/api/v1/models/iris/versions/champion").status_code == 404
    assert api.get("/api/v1/models/iris").json()["aliases"] == {}
    assert api.get("/api/v1/models/iris/history").json() == []


def test_viewers_read_models_but_cannot_change_them(api: TestClient,
                                                    anon: TestClient) -> None:
    assert _post(api, "iris", b"x" * 10).status_code == 201
    token = api.post("/api/v1/tokens", json={"name": "v", "role": "viewer"}).json()["token"]
    viewer = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/v1/models").status_code == 401
    assert anon.get("/api/v1/models/iris", headers=viewer).status_code == 200
    assert anon.post("/api/v1/models/iris/versions", headers=viewer, data={"meta": "{}"},
                     files={"file": ("m.joblib", b"x", "x/y")}).status_code == 403
    assert anon.put("/api/v1/models/iris/aliases/champion", headers=viewer,
                    json={"version": 1}).status_code == 403
    assert anon.delete("/api/v1/models/iris", headers=viewer).status_code == 403


def test_cli_register_list_get_alias_history_delete(cli: Any, tmp_path: Path) -> None:
    good, weak, _train, test = _iris_models(tmp_path)
    for name, model in (("good", good), ("weak", weak)):
        joblib.dump(model, tmp_path / f"{name}.joblib")
        (tmp_path / f"{name}.json").write_text(json.dumps(_scores(model, test)))
    v = ok_json(cli("model", "register", "iris", "--file", str(tmp_path / "good.joblib"),
                    "--metrics", str(tmp_path / "good.json"), "--param", "C=1.0",
                    "--features", "4", "--output", "json"))
    assert (v["version"], v["signature"]["n_features"], v["params"]) == (1, 4, {"C": "1.0"})
    ok_json(cli("model", "register", "iris", "--file", str(tmp_path / "weak.joblib"),
                "--metrics", str(tmp_path / "weak.json"), "--output", "json"))
    out = cli("model", "list")
    assert out.exit_code == 0
    assert "iris" in out.stdout
    assert "is now champion" in cli("model", "alias", "iris@1", "champion",
                                    "--require", "accuracy>=0.9").stdout
    refused = cli("model", "alias", "iris@2", "champion", "--better-than", "champion")
    one_line_error(refused, "may not become champion", "f1_macro")
    got = ok_json(cli("model", "get", "iris@champion", "--output", "json"))
    assert got["version"] == 1
    table = cli("model", "get", "iris").stdout
    assert "champion" in table
    assert "accuracy=" in table
    history = ok_json(cli("model", "history", "iris", "--output", "json"))
    assert [(h["alias"], h["to_version"]) for h in history] == [("champion", 1)]
    one_line_error(cli("model", "delete", "iris@1"), "champion")
    one_line_error(cli("model", "alias", "iris@", "champion"), "invalid model reference")
    one_line_error(cli("model", "register", "iris", "--file", str(tmp_path / "nope.joblib")),
                   "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    one_line_error(cli("model", "register", "iris", "--file", str(tmp_path / "good.joblib"),
                       "--metrics", str(bad)), "JSON object")
    assert ok_json(cli("model", "delete", "iris@2", "--output", "json"))["deleted"]
    ok_json(cli("model", "delete", "iris", "--output", "json"))
    assert ok_json(cli("model", "list", "--output", "json")) == []
