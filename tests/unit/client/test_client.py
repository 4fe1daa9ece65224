"""The client's pure rules: where URL and token come from, bundles, errors, SSE, readiness.

HTTP is an ``httpx.MockTransport`` here: only the mapping of responses to values and errors
is under test, not a server.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from leptonic.client import (
    AsyncClient,
    Client,
    DeploymentFailed,
    WaitTimeout,
    make_bundle,
    resolve_token,
    resolve_url,
)
from leptonic.client._base import check_ready, error_from_response, parse_sse
from leptonic.core.models import Deployment, DeploymentPhase, DeploymentSpec, DeploymentStatus
from leptonic.errors import (
    PROBLEM_CONTENT_TYPE,
    BackendError,
    Conflict,
    Forbidden,
    InvalidInput,
    LeptonicError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

# -- URL and token resolution -------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "endpoint").write_text("http://127.0.0.1:9999\n")
    (root / "admin-token").write_text("file-token\n")
    return root


def test_explicit_arguments_win(data_dir: Path) -> None:
    env = {"LEPTONIC_URL": "http://env:1", "LEPTONIC_TOKEN": "env-token",
           "LEPTONIC_DATA_DIR": str(data_dir)}
    assert resolve_url("http://arg:2/", env=env) == "http://arg:2"
    assert resolve_token("arg-token", env=env) == "arg-token"


def test_environment_beats_data_dir(data_dir: Path) -> None:
    env = {"LEPTONIC_URL": "http://env:1", "LEPTONIC_TOKEN": "env-token",
           "LEPTONIC_DATA_DIR": str(data_dir)}
    assert resolve_url(env=env) == "http://env:1"
    assert resolve_token(env=env) == "env-token"


def test_data_dir_files_are_read_and_stripped(data_dir: Path) -> None:
    env = {"LEPTONIC_DATA_DIR": str(data_dir)}
    assert resolve_url(env=env) == "http://127.0.0.1:9999"
    assert resolve_token(env=env) == "file-token"


def test_defaults_without_any_source(tmp_path: Path) -> None:
    env = {"LEPTONIC_DATA_DIR": str(tmp_path / "missing")}
    assert resolve_url(env=env) == "http://127.0.0.1:8080"
    assert resolve_token(env=env) is None


def test_client_reads_process_environment(monkeypatch: pytest.MonkeyPatch,
                                          data_dir: Path) -> None:
    monkeypatch.delenv("LEPTONIC_URL", raising=False)
    monkeypatch.delenv("LEPTONIC_TOKEN", raising=False)
    monkeypatch.setenv("LEPTONIC_DATA_DIR", str(data_dir))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"version": "0.1.0"})

    with Client(transport=httpx.MockTransport(handler)) as client:
        assert client.url == "http://127.0.0.1:9999"
        assert client.status() == {"version": "0.1.0"}
    assert str(seen[0].url) == "http://127.0.0.1:9999/api/v1/status"
    assert seen[0].headers["authorization"] == "Bearer file-token"


# -- bundles ------------------------------------------------------------------------------


def _members(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


def test_bundle_of_a_folder_has_relative_paths_and_skips_caches(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "app.py").write_text("A = 1\n")
    (src / "pkg" / "util.py").write_text("B = 2\n")
    (src / "pkg" / "util.pyc").write_bytes(b"\0")
    for skipped in ("__pycache__", ".git", ".venv", "pkg/__pycache__"):
        (src / skipped).mkdir(parents=True, exist_ok=True)
        (src / skipped / "junk.py").write_text("x\n")
    members = _members(make_bundle(src))
    assert members == {"app.py": b"A = 1\n", "pkg/util.py": b"B = 2\n"}


def test_bundle_of_one_file_is_that_file_at_the_root(tmp_path: Path) -> None:
    app = tmp_path / "deep" / "app.py"
    app.parent.mkdir()
    app.write_text("print('hi')\n")
    assert _members(make_bundle(app)) == {"app.py": b"print('hi')\n"}


def test_bundle_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("A = 1\n")
    first = make_bundle(tmp_path)
    (tmp_path / "app.py").touch()
    assert make_bundle(tmp_path) == first
    assert gzip.decompress(first)   # a real gzip stream


def test_bundle_of_a_missing_path_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file or folder"):
        make_bundle(tmp_path / "nope")


def test_create_photon_posts_multipart(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("A = 1\n")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"name": "echo", "version": 1, "entry": "app.py:Echo",
                                         "digest": "ab" * 32, "class_name": "Echo"})

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as client:
        version = client.create_photon("echo", "app.py:Echo", tmp_path)
    assert version.version == 1
    req = seen[0]
    assert req.method == "POST"
    assert req.url.path == "/api/v1/photons"
    assert req.headers["content-type"].startswith("multipart/form-data")
    body = req.content
    assert b'name="name"\r\n\r\necho' in body
    assert b'name="entry"\r\n\r\napp.py:Echo' in body
    assert b'name="file"; filename="bundle.tar.gz"' in body


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "cls"), [
    (400, InvalidInput), (401, Unauthorized), (403, Forbidden), (404, NotFound),
    (409, Conflict), (413, PayloadTooLarge), (422, InvalidInput), (429, TooManyRequests),
    (500, BackendError), (502, Unavailable), (503, Unavailable), (418, InvalidInput),
    (599, LeptonicError),
])
def test_problem_json_maps_to_error_class(status: int, cls: type[LeptonicError]) -> None:
    resp = httpx.Response(status, headers={"content-type": PROBLEM_CONTENT_TYPE},
                          content=json.dumps({"type": "about:blank", "title": "T",
                                              "status": status, "detail": "what to do",
                                              "deployment": "echo"}).encode())
    err = error_from_response(resp)
    assert type(err) is cls
    assert err.detail == "what to do"
    assert err.status == status
    assert err.extra == {"deployment": "echo"}


def test_non_problem_errors_keep_their_text() -> None:
    assert error_from_response(httpx.Response(502, text="bad gateway\n")).detail == \
        "bad gateway"
    assert error_from_response(httpx.Response(500)).detail == "500 Internal Server Error"
    listed = error_from_response(httpx.Response(422, json={"detail": [{"loc": ["text"]}]}))
    assert isinstance(listed, InvalidInput)
    assert json.loads(listed.detail) == [{"loc": ["text"]}]


def test_client_raises_mapped_error_with_server_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, headers={"content-type": PROBLEM_CONTENT_TYPE},
                              json={"status": 404, "title": "Not found",
                                    "detail": "deployment 'nope' not found"})

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(NotFound, match="deployment 'nope' not found"):
        client.get_deployment("nope")


def test_connection_refused_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with Client("http://127.0.0.1:1", "t", transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(Unavailable, match=r"no leptonic platform at http://127.0.0.1:1; "
                                             r"start one with `leptonic up`"):
        client.list_deployments()


# -- server-sent events -----------------------------------------------------------------


def test_sse_decodes_json_and_text_items() -> None:
    lines = [": keep-alive", "event: token", "data: {\"a\": 1}", "", "data: hello", "",
             "id: 3", "data: line one", "data: line two", "", "data: 7"]
    assert list(parse_sse(lines)) == [{"a": 1}, "hello", "line one\nline two", 7]


def test_sse_without_space_and_crlf() -> None:
    assert list(parse_sse(["data:[1,2]\r", "\r", "data:x"])) == [[1, 2], "x"]


def _sse_handler(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/run/echo/stream"
    assert json.loads(request.content) == {"n": 2}
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=b"data: 1\n\ndata: {\"done\": true}\n\n")


def test_handle_returns_iterator_for_event_stream() -> None:
    with Client("http://x", "t", transport=httpx.MockTransport(_sse_handler)) as client:
        assert list(client.deployment("echo").stream(n=2)) == [1, {"done": True}]


def test_handle_returns_json_for_plain_answers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"text": json.loads(request.content)["text"]})

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as client:
        assert client.deployment("echo").echo(text="hi") == {"text": "hi"}


async def test_async_handle_returns_async_iterator() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return _sse_handler(request)

    async with AsyncClient("http://x", "t", transport=httpx.MockTransport(handler)) as client:
        items = [item async for item in await client.deployment("echo").stream(n=2)]
    assert items == [1, {"done": True}]


# -- readiness -----------------------------------------------------------------------------


def _dep(phase: DeploymentPhase, *, ready: int = 0, desired: int = 2, observed: int = 1,
         generation: int = 1, last_error: str | None = None) -> Deployment:
    return Deployment(name="echo", spec=DeploymentSpec(photon="echo", replicas=desired),
                      generation=generation,
                      status=DeploymentStatus(phase=phase, ready_replicas=ready,
                                              replicas=ready, observed_generation=observed,
                                              last_error=last_error))


def test_ready_only_when_current_generation_is_ready() -> None:
    assert check_ready(_dep(DeploymentPhase.READY, ready=2))
    assert not check_ready(_dep(DeploymentPhase.DEGRADED, ready=1))
    assert not check_ready(_dep(DeploymentPhase.READY, ready=2, generation=2, observed=1))
    assert check_ready(_dep(DeploymentPhase.STOPPED, desired=0))


def test_crash_loop_raises_with_last_error() -> None:
    with pytest.raises(DeploymentFailed,
                       match="deployment echo is crash-looping: RuntimeError: boom"):
        check_ready(_dep(DeploymentPhase.CRASH_LOOP, last_error="RuntimeError: boom\n"))
    # a crash loop of an older generation is not this rollout's verdict
    assert not check_ready(_dep(DeploymentPhase.CRASH_LOOP, generation=2, observed=1))


def test_wait_ready_times_out_with_progress() -> None:
    body = _dep(DeploymentPhase.PENDING).model_dump(mode="json")
    polls: list[Deployment] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(WaitTimeout, match=r"not ready after 0s \(0/2 replicas ready"):
        client.wait_ready("echo", timeout=0, on_progress=polls.append)
    assert len(polls) == 1
    assert issubclass(WaitTimeout, TimeoutError)


async def test_async_wait_ready_returns_the_ready_deployment() -> None:
    answers = [_dep(DeploymentPhase.PENDING), _dep(DeploymentPhase.DEGRADED, ready=1),
               _dep(DeploymentPhase.READY, ready=2)]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers.pop(0).model_dump(mode="json"))

    seen: list[int] = []
    async with AsyncClient("http://x", "t", transport=httpx.MockTransport(handler)) as client:
        dep = await client.wait_ready("echo", timeout=5, interval=0,
                                      on_progress=lambda d: seen.append(d.status.ready_replicas))
    assert dep.status.phase is DeploymentPhase.READY
    assert seen == [0, 1, 2]


def test_logs_and_follow_logs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/deployments/echo/logs"
        follow = request.url.params.get("follow") == "true"
        assert request.url.params["tail"] == "5"
        return httpx.Response(200, text="[r1] a\n[r2] b\n" + ("[r1] c\n" if follow else ""))

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as client:
        assert client.logs("echo", tail=5) == "[r1] a\n[r2] b\n"
        assert list(client.follow_logs("echo", tail=5)) == ["[r1] a", "[r2] b", "[r1] c"]
