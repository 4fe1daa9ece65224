"""The model lifecycle end to end on a real ``leptonic up`` (local runtime, sandboxed jobs and
replicas), on scikit-learn's bundled data sets: train as a job -> register -> the promotion
gate refusing a worse version -> alias -> evaluate as a job -> deploy from the alias ->
predict -> feedback, with the live accuracy equal to the offline accuracy of the same
model on the same rows -> shifted features drift -> an alert delivered to a local
webhook; then moving the alias rolls the deployment out to the other version."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import REPO, RunningPlatform, running_platform
from tests.e2e.test_observe import FAST, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ARTIFACTS = REPO / "test-artifacts"
sklearn = pytest.importorskip("sklearn")


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    with running_platform(tmp_path / "data", FAST) as p:
        yield p


def _json(res: Any) -> Any:
    return json.loads(res.stdout)


def test_train_register_gate_deploy_feedback_and_drift_alert(platform: RunningPlatform,
                                                             tmp_path: Path) -> None:
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris

    from leptonic.client import Client

    p = platform
    good = _json(p.cli("model", "train", "--name", "iris", "--dataset", "sklearn:iris",
                       "--estimator", "sklearn.ensemble.RandomForestClassifier",
                       "--param", "n_estimators=30", "--param", "random_state=0",
                       "--cv", "3", "--wait", "--timeout", "120", "-o", "json"))
    assert good["phase"] == "Succeeded"
    assert good["version"] == 1
    assert good["report"]["metrics"]["accuracy"] >= 0.9
    weak = _json(p.cli("model", "train", "--name", "iris", "--dataset", "sklearn:iris",
                       "--estimator", "sklearn.tree.DecisionTreeClassifier",
                       "--param", "max_depth=1", "--wait", "--timeout", "120", "-o", "json"))
    assert weak["version"] == 2

    assert p.cli("model", "alias", "iris@1", "champion", "--require",
                 "f1_macro>=0.9").returncode == 0
    refused = p.cli("model", "alias", "iris@2", "champion", "--better-than", "champion",
                    check=False)
    assert refused.returncode == 1
    assert "f1_macro of version 2 is" in refused.stderr
    assert p.api("GET", "/models/iris").json()["aliases"] == {"champion": 1}

    evaluated = _json(p.cli("model", "evaluate", "iris@champion", "--dataset", "sklearn:iris",
                            "--wait", "--timeout", "120", "-o", "json"))
    assert evaluated["report"]["rows"] == 150

    receiver = Receiver()
    client = Client(url=p.url, token=p.token)
    try:
        p.cli("deployment", "create", "--name", "irisd", "--model", "iris@champion",
              "--timeout", "120")
        p.cli("alert", "create", "--deployment", "irisd", "--name", "drifting",
              "--expr", "drift_share > 0.5", "--for", "0s",
              "--notify", f"webhook:{receiver.url}")
        handle = client.deployment("irisd")

        X, y = load_iris(return_X_y=True)
        answers = [handle.traced("predict", features=x.tolist()) for x in X]
        assert all(a.request_id for a in answers)
        fb = handle.feedback([(a.request_id, int(t)) for a, t in zip(answers, y,
                                                                     strict=True)]
                             + [("no-such-request", 1)])
        assert (fb["matched"], fb["unknown"]) == (150, 1)

        # the offline accuracy of the very artifact served, on the same rows
        path = tmp_path / "champion.joblib"
        path.write_bytes(client.model_artifact("iris", "champion"))
        offline = float(np.mean(joblib.load(path).predict(X) == y))
        live = handle.model_metrics()
        assert live["labelled"] == 150
        assert live["accuracy"] == pytest.approx(offline)
        assert live["drift"]["share"] == 0.0

        _model_page_in_a_browser(p, live["accuracy"])

        # shifted inputs: every feature moves by three of its standard deviations
        shifted = X + 3 * X.std(axis=0)
        for x in shifted[:120]:
            handle.predict(features=x.tolist())
        msg = receiver.wait_for("firing", timeout=60)
        assert msg["rule"] == "drifting"
        drift = handle.model_metrics(window="1m")["drift"]
        assert drift["share"] > 0.5
        assert all(f["psi"] > 0.25 for f in drift["features"].values())
        text = httpx.get(f"{p.url}/metrics", headers=p.headers, timeout=30).text
        assert 'leptonic_model_accuracy{deployment="irisd",model="iris",version="1"}' in text
    finally:
        receiver.close()
        client.close()

    # moving the alias rolls the deployment out to the new version: in the end every
    # ready replica serves iris@2 (each says which version it samples for)
    p.cli("model", "alias", "iris@2", "champion")
    deadline = time.monotonic() + 90
    while True:
        ready = [r for r in p.replicas("irisd") if r["state"] == "ready" and r["url"]]
        served = {httpx.get(f"{r['url']}/_leptonic/sample", params={"after": 10**9},
                            timeout=10).json()["model"] for r in ready}
        if served == {"iris@2"}:
            break
        assert time.monotonic() < deadline, (served, p.api("GET", "/deployments/irisd").text)
        time.sleep(0.3)
    assert p.api("GET", "/deployments/irisd").json()["spec"]["model"]["version"] == 2
    with Client(url=p.url, token=p.token) as again:
        assert again.deployment("irisd").predict(features=X[0].tolist()) in (0, 1, 2)


def _model_page_in_a_browser(p: RunningPlatform, accuracy: float) -> None:
    """The model's dashboard page in headless Chromium shows the live accuracy."""
    from tests.e2e.sysdeps import dashboard_page

    with dashboard_page(p.url, p.token, "/ui/models") as page:
        page.click("a[href='/ui/models/iris']")
        page.wait_for_url("**/ui/models/iris")
        shown = page.locator("[data-live=irisd] dd[data-metric=accuracy]")
        shown.wait_for()
        assert shown.inner_text().strip() == f"{accuracy * 100:.2f}%"
        assert page.locator("tr[data-version='2']").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-model.png"), full_page=True)
