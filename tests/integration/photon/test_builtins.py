"""The ready-made model photons with real models, driven in-process through the runner:
``builtin:sentence-embedding`` (the bundled MiniLM), ``builtin:sklearn`` (a model fitted
on the bundled iris data), ``builtin:torch`` (TorchScript and torch.export files)."""

from __future__ import annotations

import asyncio
import math
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from leptonic.errors import PhotonDefinitionError
from leptonic.photon.builtin.sentence_embedding import SentenceEmbedding, load_model
from leptonic.photon.builtin.sklearn_model import SklearnModel
from leptonic.photon.builtin.torch_model import TorchModel
from leptonic.photon.loader import load_photon_class
from leptonic.photon.photon import Photon
from leptonic.photon.runner import build_app

PROBLEM = "application/problem+json"


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """``await serve(photon)`` -> an httpx client on the runner app (init() already run)."""
    apps, clients = [], []

    async def start(photon: Photon) -> httpx.AsyncClient:
        app = build_app(photon, ready=True)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://p")
        apps.append(app)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()
    for app in apps:
        await app.shutdown()


def test_builtins_resolve_by_name() -> None:
    assert load_photon_class("builtin:sentence-embedding") is SentenceEmbedding
    assert load_photon_class("builtin:sklearn") is SklearnModel
    assert load_photon_class("builtin:torch") is TorchModel
    for cls in (SentenceEmbedding, SklearnModel, TorchModel):
        assert cls.describe().handlers


# -- sentence-embedding --------------------------------------------------------------------

SENTENCES = ["The cat sits on the mat.", "A dog runs in the park.",
             "Stock markets fell sharply today.", "Un chat est assis sur le tapis.", ""]


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceEmbedding]:
    photon = SentenceEmbedding()
    photon.init()
    yield photon
    photon.shutdown()


async def test_embed_equals_the_models_own_output(embedder: SentenceEmbedding,
                                                  serve: Any) -> None:
    client = await serve(embedder)
    rs = await asyncio.gather(*(client.post("/embed", json={"text": s}) for s in SENTENCES))
    assert all(r.status_code == 200 for r in rs)
    reference = load_model().encode(SENTENCES, batch_size=1)
    for r, expected in zip(rs, reference, strict=True):
        got = np.array(r.json())
        assert got.shape == (384,)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    metrics = (await client.get("/metrics")).text
    # five concurrent requests, fewer model calls: they were batched
    count = next(line for line in metrics.splitlines()
                 if line.startswith('leptonic_photon_batch_size_count{handler="embed"}'))
    assert float(count.split()[-1]) < len(SENTENCES)


async def test_similarity_is_cosine(embedder: SentenceEmbedding, serve: Any) -> None:
    client = await serve(embedder)
    same, near, far = await asyncio.gather(
        client.post("/similarity", json={"a": SENTENCES[0], "b": SENTENCES[0]}),
        client.post("/similarity", json={"a": SENTENCES[0], "b": "A cat is sitting on a rug."}),
        client.post("/similarity", json={"a": SENTENCES[0], "b": SENTENCES[2]}))
    assert same.json() == pytest.approx(1.0, abs=1e-5)
    assert near.json() > far.json()
    a, b = load_model().encode([SENTENCES[0], SENTENCES[2]])
    assert far.json() == pytest.approx(
        float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-5)


async def test_embedding_info_and_offline_hub(embedder: SentenceEmbedding,
                                              serve: Any) -> None:
    client = await serve(embedder)
    info = (await client.post("/info", json={})).json()
    assert info["dimensions"] == 384
    assert info["max_seq_length"] > 0
    assert info["device"] == "cpu"
    assert "MiniLM" in info["model"]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    r = await client.post("/embed", json={"text": ["a", "list"]})
    assert r.status_code == 422                 # one text per request


def test_embedding_model_path_must_be_a_local_folder(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDDING_MODEL_PATH", str(tmp_path / "nope"))
    with pytest.raises(PhotonDefinitionError, match="EMBEDDING_MODEL_PATH"):
        SentenceEmbedding().init()


# -- sklearn -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    path = tmp_path_factory.mktemp("sk") / "iris.joblib"
    joblib.dump(model, path)
    return path, model, x


@pytest.fixture
def sklearn_photon(iris_model: tuple[Path, Any, Any],
                   monkeypatch: pytest.MonkeyPatch) -> SklearnModel:
    monkeypatch.setenv("SKLEARN_MODEL_PATH", str(iris_model[0]))
    photon = SklearnModel()
    photon.init()
    return photon


async def test_sklearn_predict_and_proba_match_the_estimator(
        sklearn_photon: SklearnModel, iris_model: tuple[Path, Any, Any], serve: Any) -> None:
    _, model, x = iris_model
    client = await serve(sklearn_photon)
    rows = x[::15].tolist()
    preds = await asyncio.gather(*(client.post("/predict", json={"features": r})
                                   for r in rows))
    assert [p.json() for p in preds] == model.predict(x[::15]).tolist()
    probas = await asyncio.gather(*(client.post("/predict_proba", json={"features": r})
                                    for r in rows))
    np.testing.assert_allclose([p.json() for p in probas], model.predict_proba(x[::15]),
                               atol=1e-9)
    info = (await client.post("/info", json={})).json()
    assert info == {"estimator": "LogisticRegression", "n_features": 4, "classes": [0, 1, 2]}


async def test_sklearn_bad_row_is_422_and_its_batch_mates_are_served(
        sklearn_photon: SklearnModel, serve: Any) -> None:
    client = await serve(sklearn_photon)
    good, short, nan, good2 = await asyncio.gather(
        client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}),
        client.post("/predict", json={"features": [5.1, 3.5, 1.4]}),
        client.post("/predict", content=b'{"features": [NaN, 3.5, 1.4, 0.2]}'),
        client.post("/predict", json={"features": [6.7, 3.0, 5.2, 2.3]}))
    assert (good.status_code, good2.status_code) == (200, 200)
    assert (good.json(), good2.json()) == (0, 2)
    assert short.status_code == 422
    assert short.headers["content-type"] == PROBLEM
    body = short.json()
    assert (body["expected"], body["got"]) == (4, 3)
    assert "n_features_in_" in body["detail"]
    assert nan.status_code == 422
    assert "NaN" in nan.json()["detail"]


async def test_sklearn_regressor_has_no_proba(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              serve: Any) -> None:
    import joblib
    from sklearn.linear_model import LinearRegression

    path = tmp_path / "line.joblib"
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [1.0, 3.0]), path)
    monkeypatch.setenv("SKLEARN_MODEL_PATH", str(path))
    photon = SklearnModel()
    photon.init()
    client = await serve(photon)
    assert (await client.post("/predict", json={"features": [2.0]})).json() == pytest.approx(5)
    r = await client.post("/predict_proba", json={"features": [2.0]})
    assert r.status_code == 422
    assert "no predict_proba" in r.json()["detail"]


@pytest.mark.parametrize(("value", "needle"), [
    (None, "needs SKLEARN_MODEL_PATH"),
    ("/nonexistent/model.joblib", "is not a file"),
    ("NOT_A_MODEL", "cannot load"),
])
def test_sklearn_model_path_errors_say_what_to_set(
        value: str | None, needle: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    if value is None:
        monkeypatch.delenv("SKLEARN_MODEL_PATH", raising=False)
    elif value == "NOT_A_MODEL":
        junk = tmp_path / "junk.joblib"
        junk.write_bytes(b"not a pickle")
        monkeypatch.setenv("SKLEARN_MODEL_PATH", str(junk))
    else:
        monkeypatch.setenv("SKLEARN_MODEL_PATH", value)
    with pytest.raises(PhotonDefinitionError, match=needle):
        SklearnModel().init()


# -- torch ---------------------------------------------------------------------------------


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).softmax(-1)


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def torchscript(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():      # TorchScript is deprecated upstream; still served
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def torch_photon(monkeypatch: pytest.MonkeyPatch, path: Path, **env: str) -> TorchModel:
    monkeypatch.setenv("TORCH_MODEL_PATH", str(path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    photon = TorchModel()
    photon.init()
    return photon


async def test_torchscript_batched_rows_match_the_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Any) -> None:
    module = Classifier().eval()
    photon = torch_photon(monkeypatch, torchscript(module, tmp_path / "clf.pt"),
                          TORCH_INPUT_SHAPE="4")
    client = await serve(photon)
    samples = [[0.1 * i, 0.2, -0.3 * i, 1.0] for i in range(6)]
    rs = await asyncio.gather(*(client.post("/predict", json={"input": s}) for s in samples))
    with torch.inference_mode():
        expected = module(torch.tensor(samples)).tolist()
    for r, row in zip(rs, expected, strict=True):
        assert r.json() == pytest.approx(row, abs=1e-6)
    bad = await client.post("/predict", json={"input": [1.0, 2.0]})
    assert bad.status_code == 422
    assert (bad.json()["expected"], bad.json()["got"]) == ([4], [2])
    ragged = await client.post("/predict", json={"input": [[1.0], [1.0, 2.0]]})
    assert ragged.status_code == 422
    info = (await client.post("/info", json={})).json()
    assert info == {"format": "torchscript", "input_shape": [4], "dtype": "float32",
                    "device": "cpu"}


async def test_torch_without_declared_shape_groups_samples_by_shape(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Any) -> None:
    photon = torch_photon(monkeypatch, torchscript(Doubler(), tmp_path / "double.pt"))
    client = await serve(photon)
    a, b, c = await asyncio.gather(client.post("/predict", json={"input": [1, 2]}),
                                   client.post("/predict", json={"input": [1, 2, 3]}),
                                   client.post("/predict", json={"input": [[1], [2]]}))
    assert (a.json(), b.json(), c.json()) == ([2, 4], [2, 4, 6], [[2], [4]])


async def test_torch_export_program_knows_its_sample_shape(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Any) -> None:
    module = Classifier().eval()
    program = torch.export.export(module, (torch.zeros(2, 4),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    path = tmp_path / "clf.pt2"
    torch.export.save(program, str(path))
    photon = torch_photon(monkeypatch, path)
    client = await serve(photon)
    info = (await client.post("/info", json={})).json()
    assert (info["format"], info["input_shape"]) == ("export", [4])
    r = await client.post("/predict", json={"input": [1.0, 0.0, 0.0, 0.0]})
    with torch.inference_mode():
        expected = module(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))[0].tolist()
    assert r.json() == pytest.approx(expected, abs=1e-6)
    assert math.isclose(sum(r.json()), 1.0, abs_tol=1e-6)
    assert (await client.post("/predict", json={"input": [1.0]})).status_code == 422


@pytest.mark.parametrize(("env", "needle"), [
    ({}, "needs TORCH_MODEL_PATH"),
    ({"TORCH_MODEL_PATH": "JUNK"}, "cannot load TORCH_MODEL_PATH"),
    ({"TORCH_MODEL_PATH": "OK", "TORCH_INPUT_SHAPE": "3,x"}, "TORCH_INPUT_SHAPE"),
    ({"TORCH_MODEL_PATH": "OK", "TORCH_DTYPE": "floaty"}, "TORCH_DTYPE"),
    ({"TORCH_MODEL_PATH": "OK", "TORCH_NUM_THREADS": "0"}, "TORCH_NUM_THREADS"),
])
def test_torch_configuration_errors_name_the_variable(
        env: dict[str, str], needle: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("TORCH_MODEL_PATH", "TORCH_INPUT_SHAPE", "TORCH_DTYPE", "TORCH_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    files = {"JUNK": str(junk), "OK": str(torchscript(Doubler(), tmp_path / "ok.pt"))}
    for key, value in env.items():
        monkeypatch.setenv(key, files.get(value, value))
    with pytest.raises(PhotonDefinitionError, match=needle):
        TorchModel().init()
