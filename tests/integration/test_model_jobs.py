"""Training and evaluation as jobs, and deployments of registered models, through the API,
the client and the CLI on SQLite and PostgreSQL (fake runtime).

The fake runtime runs no process, so each test plays the job's part by running the real
training program (``leptonic.models.train``) on the job's own code folder and handing its
output back as the attempt's; the control plane then registers it. Bad input is a 4xx
naming what was wrong and stores no job, artifact or version."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leptonic.core.registry import TrainTask
from leptonic.platform import Platform
from tests.integration.clitools import ok_json, one_line_error

sklearn = pytest.importorskip("sklearn")


def wait_for(fn: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def post_task(api: TestClient, path: str, task: dict[str, Any],
              data: bytes | None = None) -> Any:
    files = {"data": ("data.csv", data, "text/csv")} if data is not None else \
        {"_": ("", b"", "application/octet-stream")}
    return api.post(f"/api/v1/models/{path}", data={"task": json.dumps(task)}, files=files)


def run_attempt(api: TestClient, platform: Platform, job: str, tmp_path: Path,
                drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Play the job's attempt: the real program on the job's code folder, its output back."""
    from leptonic.models.train import evaluate_stored, train

    backend: Any = platform.backend
    [attempt] = wait_for(lambda: [a for a in api.get(f"/api/v1/jobs/{job}/attempts").json()
                                  if a["state"] == "running"])
    spec = api.get(f"/api/v1/jobs/{job}").json()["spec"]
    assert spec["command"] == "python -m leptonic.models.train task.json"
    folder = platform.artifacts.path(spec["code"])
    task = TrainTask.model_validate_json((folder / "task.json").read_text())
    out = tmp_path / f"out-{job}"
    report = (train if task.kind == "train" else evaluate_stored)(task, folder, out)
    backend.outputs[attempt["id"]] = {p.name: p.read_bytes() for p in out.iterdir()
                                      if p.name not in drop}
    backend.finish(attempt["id"], 0)
    return report


def finished(api: TestClient, job: str) -> dict[str, Any]:
    return dict(wait_for(lambda: (j := api.get(f"/api/v1/jobs/{job}").json())["status"]
                         ["phase"] in ("Succeeded", "Failed") and j))


def events(api: TestClient, obj: str) -> list[dict[str, Any]]:
    return list(api.get("/api/v1/events", params={"object": obj}).json())


def test_a_train_job_registers_a_version_with_its_figures_once(
        api: TestClient, platform: Platform, tmp_path: Path) -> None:
    r = post_task(api, "iris/train", {
        "dataset": "sklearn:iris", "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 20, "random_state": 0}, "cv": 3, "job": "train-1"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["spec"]["model_task"] == {"kind": "train", "model": "iris", "version": None,
                                         "by": "token:admin"}
    report = run_attempt(api, platform, "train-1", tmp_path)
    assert finished(api, "train-1")["status"]["phase"] == "Succeeded"

    v = api.get("/api/v1/models/iris/versions/latest").json()
    assert (v["version"], v["framework"], v["format"]) == (1, "sklearn", "joblib")
    assert v["lineage"]["job"] == "train-1"
    assert v["lineage"]["logs"] == "/api/v1/jobs/train-1/logs"
    assert v["lineage"]["split"] == {"test_size": 0.25, "seed": 0, "cv": 3}
    assert sum(map(sum, v["lineage"]["confusion_matrix"]["matrix"])) == 38
    assert v["metrics"] == pytest.approx(report["metrics"])
    assert 0.85 <= v["metrics"]["accuracy"] <= 1.0
    assert {"f1_macro", "f1_weighted", "precision_macro", "recall_weighted", "roc_auc",
            "cv_accuracy_mean", "cv_accuracy_std", "cv_f1_macro_mean"} <= set(v["metrics"])
    assert v["signature"]["n_features"] == 4
    assert v["signature"]["classes"] == [0, 1, 2]
    assert v["signature"]["features"][0] == "sepal length (cm)"
    assert v["params"]["n_estimators"] == 20
    assert v["has_reference"]
    assert v["created_by"] == "token:admin"
    [registered] = [e for e in events(api, "model/iris") if e["reason"] == "Registered"]
    assert "by job train-1" in registered["message"]

    # a control plane that restarts before it marked the job finds the version, not a
    # second one
    from leptonic.controller.model_tasks import finish_train
    j = platform.store.get_job("train-1")
    again = finish_train(platform.ctx, j, platform.store.list_attempts("train-1"))
    assert again.version == 1
    assert platform.store.get_model("iris").latest == 1

    # the CLI finds the report in the job's output
    from leptonic.client import Client
    from tests.integration.clitools import _TestClientTransport
    client = Client(url="http://testserver", token=api.headers["Authorization"][7:],
                    transport=_TestClientTransport(api))
    assert client.model_job_report("train-1")["metrics"] == pytest.approx(report["metrics"])


def test_an_evaluate_job_reports_scikit_learns_figures_on_the_version(
        api: TestClient, platform: Platform, tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    assert post_task(api, "cancer/train", {
        "dataset": "sklearn:breast_cancer", "job": "t",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 5000}}).status_code == 201
    run_attempt(api, platform, "t", tmp_path)
    assert finished(api, "t")["status"]["phase"] == "Succeeded"
    assert api.put("/api/v1/models/cancer/aliases/champion",
                   json={"version": 1}).status_code == 200

    r = post_task(api, "cancer/versions/champion/evaluate",
                  {"dataset": "sklearn:breast_cancer", "test_size": 0.3, "seed": 7,
                   "job": "e"})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["model_task"]["version"] == 1
    folder = platform.artifacts.path(r.json()["spec"]["code"])
    assert (folder / "model.joblib").is_file()
    report = run_attempt(api, platform, "e", tmp_path)
    assert finished(api, "e")["status"]["phase"] == "Succeeded"

    import joblib
    model = joblib.load(folder / "model.joblib")
    X, y = load_breast_cancer(return_X_y=True)
    _, X_te, _, y_te = train_test_split(X, y, test_size=0.3, random_state=7, stratify=y)
    pred = model.predict(X_te)
    assert report["rows"] == len(y_te)
    assert report["metrics"]["accuracy"] == pytest.approx(accuracy_score(y_te, pred))
    assert report["metrics"]["f1_macro"] == pytest.approx(f1_score(y_te, pred,
                                                                   average="macro"))
    assert report["metrics"]["roc_auc"] == pytest.approx(
        roc_auc_score(y_te, model.predict_proba(X_te)[:, 1]))
    [ev] = [e for e in events(api, "model/cancer") if e["reason"] == "Evaluated"]
    assert ev["message"].startswith(f"version 1 on sklearn:breast_cancer ({len(y_te)} rows) "
                                    "by job e: accuracy ")


def test_a_csv_data_set_travels_with_the_job(api: TestClient, platform: Platform,
                                             tmp_path: Path) -> None:
    rows = ["a,b,label"] + [f"{i},{i % 7},{'big' if i > 20 else 'small'}" for i in range(40)]
    data = ("\n".join(rows) + "\n").encode()
    r = post_task(api, "sizes/train", {"dataset": "csv:sizes.csv:target=label",
                                       "estimator": "sklearn.tree.DecisionTreeClassifier",
                                       "job": "c"}, data)
    assert r.status_code == 201, r.text
    assert (platform.artifacts.path(r.json()["spec"]["code"]) / "data.csv").read_bytes() \
        == data
    run_attempt(api, platform, "c", tmp_path)
    assert finished(api, "c")["status"]["phase"] == "Succeeded"
    v = api.get("/api/v1/models/sizes/versions/1").json()
    assert v["signature"]["features"] == ["a", "b"]
    assert v["signature"]["classes"] == ["big", "small"]
    assert v["metrics"]["accuracy"] >= 0.8


def test_a_train_job_whose_output_lacks_the_model_fails_and_registers_nothing(
        api: TestClient, platform: Platform, tmp_path: Path) -> None:
    assert post_task(api, "iris/train", {"dataset": "sklearn:iris", "job": "t",
                                         "estimator": "sklearn.svm.SVC"}).status_code == 201
    run_attempt(api, platform, "t", tmp_path, drop=("model.joblib",))
    st = finished(api, "t")["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "RegisterFailed")
    assert "no model.joblib" in st["message"]
    assert api.get("/api/v1/models/iris").status_code == 404


@pytest.mark.parametrize(("path", "task", "data", "code", "says"), [
    ("iris/train", {"dataset": "sklearn:iris", "estimator": "sklearn.svm.SVX"}, None, 422,
     "unknown estimator 'sklearn.svm.SVX'"),
    ("iris/train", {"dataset": "sklearn:iris", "estimator": "os.system"}, None, 422,
     "training jobs take estimators from sklearn"),
    ("iris/train", {"dataset": "sklearn:iris", "estimator": "sklearn.svm"}, None, 422,
     "unknown estimator"),
    ("iris/train", {"dataset": "sklearn:iris", "estimator": "sklearn.svm.SVC",
                    "params": {"bogus": 1}}, None, 422, "unexpected keyword argument 'bogus'"),
    ("iris/train", {"dataset": "sklearn:nope", "estimator": "sklearn.svm.SVC"}, None, 422,
     "unknown data set 'sklearn:nope'"),
    ("iris/train", {"dataset": "parquet:x", "estimator": "sklearn.svm.SVC"}, None, 422,
     "use sklearn:NAME"),
    ("iris/train", {"dataset": "csv:x.csv", "estimator": "sklearn.svm.SVC"}, None, 422,
     "send the CSV file"),
    ("iris/train", {"dataset": "csv:x.csv:target=y", "estimator": "sklearn.svm.SVC"},
     b"a,b\n1,2\n3,4\n", 422, "has no column 'y'"),
    ("iris/train", {"dataset": "sklearn:iris", "estimator": "sklearn.svm.SVC",
                    "test_size": 1.5}, None, 422, "test_size"),
    ("Bad Name/train", {"dataset": "sklearn:iris", "estimator": "sklearn.svm.SVC"}, None,
     422, "model name"),
    ("iris/versions/3/evaluate", {"dataset": "sklearn:iris"}, None, 404, "no version 3"),
    ("iris/versions/champion/evaluate", {"dataset": "sklearn:iris"}, None, 404,
     "no alias 'champion'"),
])
def test_bad_training_input_is_refused_and_stores_nothing(
        api: TestClient, platform: Platform, path: str, task: dict[str, Any],
        data: bytes | None, code: int, says: str) -> None:
    import io

    import joblib
    from sklearn.dummy import DummyClassifier

    from tests.integration.test_models import _post
    buf = io.BytesIO()
    joblib.dump(DummyClassifier().fit([[0.0]], [0]), buf)
    assert _post(api, "iris", buf.getvalue()).status_code == 201
    before = sorted(p.name for p in platform.artifacts.root.iterdir())
    r = post_task(api, path, task, data)
    assert r.status_code == code, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.json()["detail"]
    assert api.get("/api/v1/jobs").json() == []
    assert sorted(p.name for p in platform.artifacts.root.iterdir()) == before
    assert platform.store.get_model("iris").latest == 1


def _register_two(api: TestClient) -> None:
    import io

    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from tests.integration.test_models import _post
    X, y = load_iris(return_X_y=True)
    for model, acc in ((LogisticRegression(max_iter=500), 0.97),
                       (DecisionTreeClassifier(max_depth=2), 0.95)):
        buf = io.BytesIO()
        joblib.dump(model.fit(X, y), buf)
        assert _post(api, "iris", buf.getvalue(), "iris.joblib",
                     {"metrics": {"accuracy": acc}}).status_code == 201


def test_a_deployment_serves_a_model_and_follows_its_alias(
        api: TestClient, platform: Platform, cli: Any) -> None:
    _register_two(api)
    assert api.put("/api/v1/models/iris/aliases/champion",
                   json={"version": 1}).status_code == 200
    dep = ok_json(cli("deployment", "create", "--name", "svc", "--model", "iris@champion",
                      "--no-wait", "-o", "json"))
    m = dep["spec"]["model"]
    assert (dep["spec"]["photon"], m["model"], m["version"], m["alias"]) == \
        ("builtin:sklearn", "iris", 1, "champion")
    backend: Any = platform.backend
    launch = wait_for(lambda: [x for x in backend.started if x.deployment == "svc"])[0]
    assert launch.entry == "builtin:sklearn"
    assert launch.env["SKLEARN_MODEL_PATH"] == "iris.joblib"
    assert launch.env["LEPTONIC_MODEL"] == "iris@1"
    served = Path(launch.bundle_dir) / "iris.joblib"
    stored = Path(platform.layout.models) / "iris" / "1" / "iris.joblib"
    assert served.read_bytes() == stored.read_bytes()
    shown = cli("deployment", "get", "svc")
    assert "iris@1 (champion)" in shown.stdout

    # moving the alias rolls the deployment out to the new version
    assert api.put("/api/v1/models/iris/aliases/champion",
                   json={"version": 2}).status_code == 200
    d = api.get("/api/v1/deployments/svc").json()
    assert (d["generation"], d["spec"]["model"]["version"]) == (2, 2)
    [upd] = [e for e in events(api, "deployment/svc") if e["reason"] == "Updated"]
    assert "model iris@champion moved from version 1 to 2" in upd["message"]
    wait_for(lambda: [x for x in backend.started
                      if x.deployment == "svc" and x.env.get("LEPTONIC_MODEL") == "iris@2"])

    # pinned to a version: an alias move leaves it alone; an update moves it
    ok_json(cli("deployment", "create", "--name", "pinned", "--model", "iris@1",
                "--no-wait", "-o", "json"))
    assert api.put("/api/v1/models/iris/aliases/champion",
                   json={"version": 1}).status_code == 200
    assert api.get("/api/v1/deployments/pinned").json()["generation"] == 1
    assert api.get("/api/v1/deployments/svc").json()["spec"]["model"]["version"] == 1
    up = api.patch("/api/v1/deployments/pinned", json={"model": "iris@2"})
    assert up.status_code == 200, up.text
    assert (up.json()["generation"], up.json()["spec"]["model"]["version"]) == (2, 2)


@pytest.mark.parametrize(("body", "code", "says"), [
    ({"model": "iris@nope"}, 404, "no alias 'nope'"),
    ({"model": "iris@7"}, 404, "no version 7"),
    ({"model": "ghost@1"}, 404, "ghost"),
    ({"model": "iris"}, 422, "name a version or an alias"),
    ({"model": "iris@1", "photon": "builtin:echo"}, 422, "one of them"),
    ({}, 422, "one of them"),
])
def test_a_bad_model_reference_creates_no_deployment(api: TestClient, body: dict[str, Any],
                                                     code: int, says: str) -> None:
    _register_two(api)
    r = api.post("/api/v1/deployments", json={"name": "svc", **body})
    assert r.status_code == code, r.text
    assert says in r.json()["detail"]
    assert api.get("/api/v1/deployments").json() == []


def test_the_cli_refuses_a_deployment_without_photon_or_model(cli: Any) -> None:
    one_line_error(cli("deployment", "create", "--name", "svc"), "one of them")


def test_feedback_and_model_metrics_refuse_bad_input(api: TestClient, cli: Any) -> None:
    _register_two(api)
    ok_json(cli("deployment", "create", "--name", "svc", "--model", "iris@1", "--no-wait",
                "-o", "json"))
    ok_json(cli("deployment", "create", "--name", "echo", "--photon", "builtin:echo",
                "--no-wait", "-o", "json"))
    # nothing sampled yet (fake replicas): every id is unknown, counted, not a failure
    r = api.post("/api/v1/deployments/svc/feedback",
                 json={"items": [{"request_id": "a", "truth": 1},
                                 {"request_id": "b", "truth": "setosa"}]})
    assert r.status_code == 200, r.text
    assert (r.json()["matched"], r.json()["unknown"]) == (0, 2)
    figures = api.get("/api/v1/deployments/svc/model-metrics").json()
    assert (figures["model"], figures["version"], figures["labelled"]) == ("iris", 1, 0)
    assert figures["accuracy"] is None
    assert figures["feedback"]["unknown"] == 2
    for path, body, code, says in [
        ("echo/feedback", {"items": []}, 422, "not a registered model"),
        ("ghost/feedback", {"items": []}, 404, "ghost"),
        ("svc/feedback", {"items": [{"request_id": "", "truth": 1}]}, 422, "request_id"),
        ("svc/feedback", {"items": [{"truth": 1}]}, 422, "request_id"),
        ("svc/feedback", {"items": [{"request_id": "a", "truth": [1]}]}, 422, "truth"),
    ]:
        r = api.post(f"/api/v1/deployments/{path}", json=body)
        assert r.status_code == code, (path, r.text)
        assert says in r.text
    for window, says in (("a week", "invalid window"), ("0s", "between 1s and 30d")):
        r = api.get("/api/v1/deployments/svc/model-metrics", params={"window": window})
        assert r.status_code == 422
        assert says in r.json()["detail"]


def test_the_dashboard_shows_models_versions_aliases_and_live_figures(
        api: TestClient, platform: Platform, cli: Any) -> None:
    _register_two(api)
    assert api.put("/api/v1/models/iris/aliases/champion",
                   json={"version": 1}).status_code == 200
    ok_json(cli("deployment", "create", "--name", "svc", "--model", "iris@champion",
                "--no-wait", "-o", "json"))
    web = TestClient(platform, base_url="http://testserver", follow_redirects=False)
    assert web.get("/ui/models").status_code == 303              # a session first
    token = api.headers["Authorization"].split()[1]
    assert web.post("/login", data={"token": token, "next": "/"}).status_code == 303
    listing = web.get("/ui/models").text
    assert 'href="/ui/models/iris"' in listing
    assert "champion=v1" in listing
    assert 'href="/ui/deployments/svc"' in listing
    page = web.get("/ui/models/iris")
    assert page.status_code == 200
    assert 'data-version="2"' in page.text
    assert "accuracy 0.97" in page.text
    assert "svc</a> serves v1" in page.text
    live = web.get("/ui/fragments/models/iris/live").text
    assert 'data-live="svc"' in live
    assert web.get("/ui/models/ghost").status_code == 404
    assert web.get("/ui/fragments/models/ghost/live").status_code == 404


def test_the_cli_shows_live_figures_and_sends_feedback(api: TestClient, cli: Any,
                                                       tmp_path: Path) -> None:
    _register_two(api)
    ok_json(cli("deployment", "create", "--name", "svc", "--model", "iris@1", "--no-wait",
                "-o", "json"))
    shown = cli("model", "metrics", "svc")
    assert shown.exit_code == 0, shown.output
    assert "svc serves iris@1" in shown.stdout
    assert ok_json(cli("model", "metrics", "svc", "--window", "30m", "-o",
                       "json"))["window_s"] == 1800
    truth = tmp_path / "truth.jsonl"
    truth.write_text('{"request_id": "r1", "truth": 0}\n\n{"request_id": "r2", "truth": 2}\n')
    sent = ok_json(cli("model", "feedback", "svc", "--file", str(truth), "-o", "json"))
    assert (sent["items"], sent["unknown"]) == (2, 2)
    truth.write_text('{"request_id": "r1"}\n')
    one_line_error(cli("model", "feedback", "svc", "--file", str(truth)),
                   "line 1 needs request_id and truth")
    one_line_error(cli("model", "metrics", "svc", "--window", "soon"), "invalid window")


def test_moving_the_alias_starts_a_canary_between_the_model_versions(
        api: TestClient, platform: Platform) -> None:
    from tests.integration.test_rollouts import wait
    _register_two(api)
    assert api.put("/api/v1/models/iris/aliases/champion",
                   json={"version": 1}).status_code == 200
    r = api.post("/api/v1/deployments", json={
        "name": "svc", "model": "iris@champion", "replicas": 2,
        "strategy": {"type": "canary", "steps": [50], "step_interval_s": 3600,
                     "analysis": {"min_success_rate": 0.99}}})
    assert r.status_code == 201, r.text
    wait(api, "svc", lambda ro: ro["status"]["id"] == 0)
    assert api.put("/api/v1/models/iris/aliases/champion",
                   json={"version": 2}).status_code == 200
    ro = wait(api, "svc", lambda ro: ro["status"]["id"] == 1 and ro["status"]["step"] == 0)
    st = ro["status"]
    assert st["strategy"]["type"] == "canary"
    assert st["target"]["spec"]["model"]["version"] == 2
    assert st["stable"]["spec"]["model"]["version"] == 1
    # both versions serve, each from its own bundle
    backend: Any = platform.backend
    wait_for(lambda: {x.env.get("LEPTONIC_MODEL") for x in backend.started
                      if x.deployment == "svc"} == {"iris@1", "iris@2"})
