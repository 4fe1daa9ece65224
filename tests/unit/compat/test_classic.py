"""Classic leptonai photons, written as their authors write them, served in-process."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leptonic.compat import unsupported_entry
from leptonic.errors import PhotonDefinitionError
from leptonic.photon import alias
from leptonic.photon.loader import load_photon_class
from leptonic.photon.runner import build_app

CLASSIC = Path(__file__).resolve().parents[3] / "examples" / "classic"


@pytest.fixture(autouse=True)
def _clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loading installs the alias and adds modules and sys.path entries; undo all three."""
    modules, path = set(sys.modules), list(sys.path)
    monkeypatch.delenv("COUNTER_START", raising=False)
    yield
    alias.uninstall()
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def write(tmp: Path, name: str, source: str) -> Path:
    (tmp / name).write_text(textwrap.dedent(source))
    return tmp


async def serve(cls: type, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(cls(), **kw)
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                     base_url="http://photon") as client:
            yield client
    finally:
        await app.shutdown()


@pytest.fixture
async def counter() -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(load_photon_class("counter.py:Counter", CLASSIC)):
        yield client


async def test_counter_keeps_state_and_answers_bare_json(counter: httpx.AsyncClient) -> None:
    assert (await counter.post("/add", json={"x": 3})).json() == 3
    r = await counter.post("/add", json={"x": 4})
    assert r.status_code == 200
    assert r.text == "7"
    assert (await counter.get("/value")).json() == 7
    reset = await counter.post("/reset")
    assert reset.status_code == 204
    assert reset.content == b""
    assert (await counter.get("/value")).json() == 0


async def test_tuple_return_and_get_query_parameters(counter: httpx.AsyncClient) -> None:
    r = await counter.get("/divmod", params={"a": 7, "b": 2})
    assert r.status_code == 200
    assert r.json() == [3, 1]
    bad = await counter.get("/divmod", params={"a": "x", "b": 2})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "a"]


async def test_errors_in_the_classic_shape(counter: httpx.AsyncClient) -> None:
    r = await counter.post("/sub", json={"x": -1})
    assert r.status_code == 400
    assert r.json() == {"error": "x must not be negative"}
    boom = await counter.get("/divmod", params={"a": 1, "b": 0})
    assert boom.status_code == 500
    assert "ZeroDivisionError" in boom.json()["error"]
    invalid = await counter.post("/add", json={"x": "three"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "x"]
    assert (await counter.get("/add")).status_code == 405
    assert (await counter.get("/nowhere")).status_code == 404


async def test_openapi_lists_get_and_post_handlers(counter: httpx.AsyncClient) -> None:
    doc = (await counter.get("/openapi.json")).json()
    assert "post" in doc["paths"]["/add"]
    assert "get" in doc["paths"]["/divmod"]
    names = [p["name"] for p in doc["paths"]["/divmod"]["get"]["parameters"]]
    assert names == ["a", "b"]
    assert (await counter.get("/readyz")).status_code == 200
    assert (await counter.get("/healthz")).status_code == 200


async def test_deployment_template_sets_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTER_START", "40")
    async for client in serve(load_photon_class("counter.py:Counter", CLASSIC)):
        assert (await client.post("/add", json={"x": 2})).json() == 42


async def test_extra_files_sibling_module_imports() -> None:
    cls = load_photon_class("greeter.py:Greeter", CLASSIC)
    async for client in serve(cls):
        assert (await client.post("/hello", json={"name": "Ada"})).json() == "Hello, Ada!"
        assert (await client.post("/hello", json={})).json() == "Hello, world!"


async def test_batched_handler_gets_lists() -> None:
    cls = load_photon_class("batched.py:Doubler", CLASSIC)
    async for client in serve(cls):
        rs = await asyncio.gather(*(client.post("/double", json={"x": i}) for i in range(6)))
        assert [r.json() for r in rs] == [0, 2, 4, 6, 8, 10]
        assert (await client.get("/largest_batch")).json() > 1
    manifest = cls.describe()
    assert manifest.handlers[0].batch == 8
    assert manifest.handlers[0].max_wait_ms == 50


SLOW = """
    import threading, time
    from leptonai.photon import Photon

    class Slow(Photon):
        handler_timeout = 0.3

        def init(self):
            self.active = 0
            self.peak = 0
            self.lock = threading.Lock()

        @Photon.handler
        def work(self, s: float) -> int:
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            time.sleep(s)
            with self.lock:
                self.active -= 1
            return self.peak
"""


async def test_sync_handlers_serialised_and_timeout_is_504(tmp_path: Path) -> None:
    cls = load_photon_class("slow.py:Slow", write(tmp_path, "slow.py", SLOW))
    async for client in serve(cls):
        rs = await asyncio.gather(*(client.post("/work", json={"s": 0.02}) for _ in range(4)))
        assert [r.status_code for r in rs] == [200] * 4
        assert max(r.json() for r in rs) == 1     # handler_max_concurrency = 1
        late = await client.post("/work", json={"s": 1})
        assert late.status_code == 504
        assert late.json() == {"error": "handler timeout after 0.3 seconds"}


def test_handler_called_directly_runs_init_first() -> None:
    cls = load_photon_class("counter.py:Counter", CLASSIC)
    photon = cls()
    assert photon.add(x=5) == 5
    assert photon.value() == 5


def test_mounting_an_app_is_refused_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "ui.py", """
        from leptonai.photon import Photon

        class UI(Photon):
            @Photon.handler(mount=True)
            def ui(self):
                import gradio as gr
                return gr.Blocks()
    """)
    cls = load_photon_class("ui.py:UI", tmp_path)
    with pytest.raises(PhotonDefinitionError, match=r"mount=True\): Gradio, Flask"):
        cls.describe()


def test_unsupported_modules_and_entries_say_what_to_do(tmp_path: Path) -> None:
    write(tmp_path, "hf.py", "from leptonai.photon.hf import HuggingfacePhoton\n")
    with pytest.raises(PhotonDefinitionError, match=r"init\(\)"):
        load_photon_class("hf.py:X", tmp_path)
    write(tmp_path, "kv.py", "from leptonai import KV\n")
    with pytest.raises(PhotonDefinitionError, match="hosted cloud"):
        load_photon_class("kv.py:X", tmp_path)
    assert "not supported" in (unsupported_entry("hf:gpt2") or "")
    assert "vLLM" in (unsupported_entry("vllm:meta-llama/Llama-3-8B") or "")
    assert unsupported_entry("app.py:Echo") is None


def test_extra_file_outside_the_bundle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "app.py", """
        from leptonai.photon import Photon

        class App(Photon):
            extra_files = ["missing.txt"]

            @Photon.handler
            def run(self) -> str:
                return "ok"
    """)
    with pytest.raises(PhotonDefinitionError, match=r"'missing\.txt' is not in the bundle"):
        load_photon_class("app.py:App", tmp_path).describe()


def test_requirement_dependency_becomes_requirements(tmp_path: Path) -> None:
    write(tmp_path, "app.py", """
        from leptonai import Photon

        class Base(Photon):
            requirement_dependency = ["numpy"]

        class App(Base):
            requirement_dependency = ["pandas>=2"]

            @Photon.handler("")
            def run(self) -> str:
                return "root"
    """)
    manifest = load_photon_class("app.py:App", tmp_path).describe()
    assert manifest.requirements == ["numpy", "pandas>=2"]
    assert manifest.handlers[0].path == "/"


def test_alias_only_where_installed_and_never_over_a_real_leptonai(tmp_path: Path) -> None:
    assert not alias.installed()
    with pytest.raises(ModuleNotFoundError):
        __import__("leptonai")
    alias.install()
    import leptonai.photon  # type: ignore[import-not-found]

    from leptonic.compat.photon import Photon

    assert leptonai.photon.Photon is Photon
    assert leptonai.Photon is Photon
    alias.uninstall()
    real = tmp_path / "site" / "leptonai"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    sys.path.insert(0, str(tmp_path / "site"))
    alias.install()
    import leptonai

    assert getattr(leptonai, "REAL", False) is True


def test_launch_serves_with_leptonic(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.append(self.config.app))
    cls = load_photon_class("counter.py:Counter", CLASSIC)
    cls().launch(port=0)
    assert type(served[0]).__name__ == "ClassicApp"


async def test_async_handler_and_kwargs(tmp_path: Path) -> None:
    write(tmp_path, "app.py", """
        from leptonai.photon import Photon

        class App(Photon):
            @Photon.handler
            async def run(self, a: int, **extra) -> dict:
                return {"a": a, **extra}
    """)
    async for client in serve(load_photon_class("app.py:App", tmp_path)):
        r = await client.post("/run", json={"a": 1, "b": "two"})
        assert r.json() == {"a": 1, "b": "two"}


def test_resource_shape_becomes_the_deployments_default_resources(tmp_path: Path) -> None:
    manifest = load_photon_class("counter.py:Counter", CLASSIC).describe()
    assert manifest.resources is not None
    assert manifest.resources.model_dump() == {"cpu": 1.0, "memory_mb": 4096, "gpu": 0.0}
    assert manifest.gpu_models == []
    write(tmp_path, "gpu.py", """
        from leptonai.photon import Photon

        class Big(Photon):
            deployment_template = {"resource_shape": "gpu.4xa100-80gb"}

            @Photon.handler
            def run(self) -> str:
                return "ok"

        class Plain(Photon):
            @Photon.handler
            def run(self) -> str:
                return "ok"
    """)
    big = load_photon_class("gpu.py:Big", tmp_path).describe()
    assert big.resources is not None
    assert big.resources.gpu == 4
    assert big.gpu_models == ["A100-80G", "A100"]
    plain = load_photon_class("gpu.py:Plain", tmp_path).describe()
    assert plain.resources is None
    assert plain.gpu_models == []


def test_every_shape_of_leptonai_is_known_and_others_are_refused(tmp_path: Path) -> None:
    from leptonic.compat.shapes import SHAPES, shape

    # leptonai 0.27.3 leptonai/config.py VALID_SHAPES, in its order
    assert list(SHAPES) == [
        "cpu.small", "cpu.medium", "cpu.large", "gpu.a10", "gpu.a10.6xlarge",
        "gpu.a100-40gb", "gpu.2xa100-40gb", "gpu.4xa100-40gb", "gpu.8xa100-40gb",
        "gpu.a100-80gb", "gpu.2xa100-80gb", "gpu.4xa100-80gb", "gpu.8xa100-80gb",
        "gpu.h100-sxm", "gpu.2xh100-sxm", "gpu.4xh100-sxm", "gpu.8xh100-sxm"]
    for name, s in SHAPES.items():
        r = s.resources()
        assert (r.gpu > 0) == name.startswith("gpu.") == bool(s.gpu_models), name
        assert r.cpu >= 1
        assert r.memory_mb >= 4096
    assert shape("GPU.A10").gpu_models == ("A10", "A10G")
    assert shape("gpu.8xh100-sxm").resources().gpu == 8
    write(tmp_path, "odd.py", """
        from leptonai.photon import Photon

        class Odd(Photon):
            deployment_template = {"resource_shape": "gpu.t4"}

            @Photon.handler
            def run(self) -> str:
                return "ok"
    """)
    with pytest.raises(PhotonDefinitionError, match=r"unknown resource_shape 'gpu.t4'.*"
                                                    r"cpu.small.*--cpu/--memory/--gpu"):
        load_photon_class("odd.py:Odd", tmp_path).describe()


FILES = """
    from leptonai.photon import File, FileParam, Photon

    class Files(Photon):
        @Photon.handler
        def size(self, f: File) -> int:
            return len(f.get_content())

        @Photon.handler
        def upper(self, f: FileParam) -> str:
            return f.file.read().decode().upper()

        @Photon.handler
        def temp(self, f: File) -> str:
            with f.get_temp_file() as tmp:
                return tmp.read().decode() + "|" + f.get_bytesio().read().decode()
"""


async def test_file_and_file_param_inputs(tmp_path: Path) -> None:
    from leptonic.compat.types import File, FileParam

    cls = load_photon_class("files.py:Files", write(tmp_path, "files.py", FILES))
    async for client in serve(cls):
        # as leptonai's client sends them: the models' JSON ({"content": ...})
        sent = File(b"\x00hello").model_dump()
        assert sent["content"].startswith("data:application/octet-stream;base64,")
        assert (await client.post("/size", json={"f": sent})).json() == 6
        assert (await client.post("/size", json={"f": {"content": "encoded:aGk="}})).json() \
            == 2
        assert (await client.post("/temp", json={"f": File(b"ab").model_dump()})).json() \
            == "ab|ab"
        assert (await client.post("/upper", json={"f": FileParam(b"abc").model_dump()})
                ).json() == "ABC"
        assert (await client.post("/upper", json={"f": {"content": "plain"}})).json() \
            == "PLAIN"
        # not a file: refused before the handler runs, as leptonai does (422)
        for bad in ("data:,x", {"content": "not a file"}):
            r = await client.post("/size", json={"f": bad})
            assert r.status_code == 422, r.text


def test_file_round_trips_and_reads_streams() -> None:
    import io

    from leptonic.compat.types import File, FileParam

    f = File(io.BytesIO(b"stream"))
    assert f.content == b"stream"
    again = File.model_validate(f.model_dump())
    assert again.get_content() == b"stream"
    assert File(again).content == again.content
    assert File("https://example.com/x.png").content == "https://example.com/x.png"
    with pytest.raises(ValueError, match="data: URL or an http"):
        File("nope")
    p = FileParam(io.BytesIO(b"x"))
    assert FileParam.model_validate(p.model_dump()).content == b"x"
    assert FileParam(content="encoded:eHk=").content == b"xy"
