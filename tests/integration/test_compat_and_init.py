"""Classic leptonai photons at ``photon create`` (inspected for real, out of process),
``photon create -m PATH/FILE.py:Class`` bundling the file's folder, and ``leptonic init``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from leptonic.cli.init import Template
from tests.integration.clitools import ok_json, one_line_error

REPO = Path(__file__).resolve().parents[2]
CLASSIC = REPO / "examples" / "classic"

MOUNT = """
from leptonai.photon import Photon

class UI(Photon):
    @Photon.handler(mount=True)
    def ui(self):
        import gradio as gr
        return gr.Blocks()
"""


def test_classic_photon_created_from_an_absolute_entry(cli: Any) -> None:
    made = ok_json(cli("photon", "create", "--name", "counter", "-m",
                       f"{CLASSIC}/counter.py:Counter", "-o", "json"))
    assert made["entry"] == "counter.py:Counter"
    assert [h["name"] for h in made["handlers"]] == ["add", "sub", "value", "divmod", "reset"]
    batched = ok_json(cli("photon", "create", "--name", "doubler", "-m",
                          f"{CLASSIC}/batched.py:Doubler", "-o", "json"))
    assert batched["handlers"][0]["batch"] == 8


def test_unsupported_classic_features_are_refused_saying_what_instead(
        cli: Any, tmp_path: Path) -> None:
    code = tmp_path / "code"            # tmp_path also holds the platform's data dir
    code.mkdir()
    (code / "ui.py").write_text(MOUNT)
    one_line_error(cli("photon", "create", "--name", "ui", "-m", "ui.py:UI",
                       "--path", str(code)), "mount=True", "own service")
    one_line_error(cli("photon", "create", "--name", "gpt", "-m", "hf:gpt2",
                       "--path", str(code)), "Hugging Face", "init()")


def test_relative_entry_path_bundles_that_folder_and_says_what(
        cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "sub"
    (sub / ".git").mkdir(parents=True)
    (sub / ".git" / "HEAD").write_text("ref\n")
    (sub / "__pycache__").mkdir()
    (sub / "__pycache__" / "app.pyc").write_bytes(b"\0")
    (sub / "app.py").write_text((REPO / "examples" / "echo" / "app.py").read_text())
    (sub / "big.bin").write_bytes(b"\0" * 10)
    (sub / ".gitignore").write_text("big.bin\n")
    (tmp_path / "other.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    plan = ok_json(cli("photon", "create", "--name", "echo", "-m", "sub/app.py:Echo",
                       "--dry-run", "-o", "json"))
    assert sorted(f["path"] for f in plan["files"]) == [".gitignore", "app.py"]
    made = cli("photon", "create", "--name", "echo", "-m", "sub/app.py:Echo")
    assert made.exit_code == 0, made.output
    assert "bundled 2 files" in made.stderr
    outside = cli("photon", "create", "--name", "echo", "-m", f"{sub}/app.py:Echo",
                  "--path", str(tmp_path / "elsewhere"))
    assert outside.exit_code != 0


def test_init_refuses_a_non_empty_folder_unless_forced(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "hello"
    made = ok_json(cli("init", "hello", "--dir", str(folder), "-o", "json"))
    assert made["files"] == [".leptonicignore", "README.md", "app.py", "requirements.txt",
                             "test_app.py"]
    one_line_error(cli("init", "hello", "--dir", str(folder)), "not empty", "--force")
    (folder / "notes.txt").write_text("mine\n")
    ok_json(cli("init", "hello", "--dir", str(folder), "--force", "-o", "json"))
    assert (folder / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("template", [t.value for t in Template if t is not Template.job])
def test_every_template_is_created_as_is(cli: Any, tmp_path: Path, template: str) -> None:
    folder = tmp_path / template
    made = ok_json(cli("init", f"my-{template}", "--template", template, "--dir", str(folder),
                       "-o", "json"))
    photon = ok_json(cli("photon", "create", "--name", f"my-{template}", "-m",
                         f"{folder}/{made['entry']}", "-o", "json"))
    assert photon["handlers"]
    readme = (folder / "README.md").read_text()
    assert f"-m {made['entry']}" in readme


def test_the_job_template_is_a_job_as_is(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "words"
    made = ok_json(cli("init", "words", "--template", "job", "--dir", str(folder),
                       "-o", "json"))
    assert {"job.py", "input.txt", "test_job.py", "README.md"} <= set(made["files"])
    readme = (folder / "README.md").read_text()
    assert "leptonic job create --name words --path . --command \"python job.py\"" in readme
    job = ok_json(cli("job", "create", "--name", "words", "--path", str(folder), "--command",
                      "python job.py", "--completions", "2", "-o", "json"))
    assert job["spec"]["completions"] == 2


@pytest.mark.parametrize("template", ["echo", "sklearn", "torch", "job"])
def test_template_tests_pass(tmp_path: Path, template: str) -> None:
    from leptonic.cli.init import write_project

    folder = tmp_path / template
    write_project(folder, template, Template(template))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=folder, capture_output=True, text=True,
                         timeout=240, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


GPU_PHOTON = """
from leptonai.photon import Photon

class Big(Photon):
    deployment_template = {"resource_shape": "gpu.a10"}

    @Photon.handler
    def run(self) -> str:
        return "ok"

class Huge(Big):
    deployment_template = {"resource_shape": "gpu.8xh100-sxm"}
"""


def test_resource_shape_is_the_default_of_deployments_that_give_none(
        cli: Any, api: Any, platform: Any, tmp_path: Path) -> None:
    from leptonic.core.models import Node

    gpu_node = Node(name="gpu-1", id="e5f6071829304152", tier="datacenter",
                    address="10.0.0.5", capacity={"cpu": 32.0, "memory_mb": 131072.0,
                                                  "gpu": 1.0},
                    gpu_model="A10G", heartbeat_at=time.time())
    platform.backend.cluster = [gpu_node]
    platform.store.upsert_node(gpu_node)
    code = tmp_path / "code"
    code.mkdir()
    (code / "big.py").write_text(GPU_PHOTON)
    made = ok_json(cli("photon", "create", "--name", "counter", "-m",
                       f"{CLASSIC}/counter.py:Counter", "-o", "json"))
    assert made["resources"] == {"cpu": 1.0, "memory_mb": 4096, "gpu": 0.0}
    for name in ("Big", "Huge"):
        ok_json(cli("photon", "create", "--name", name.lower(), "-m", f"big.py:{name}",
                    "--path", str(code), "-o", "json"))

    def create(name: str, photon: str, **extra: Any) -> Any:
        return api.post("/api/v1/deployments",
                        json={"name": name, "photon": photon, "replicas": 0, **extra})

    spec = create("counter", "counter").json()["spec"]
    assert spec["resources"] == {"cpu": 1.0, "memory_mb": 4096, "gpu": 0.0}
    assert spec["placement"]["gpu_models"] == []
    spec = create("big", "big", placement={"tier": "datacenter"}).json()["spec"]
    assert spec["resources"] == {"cpu": 4.0, "memory_mb": 16384, "gpu": 1.0}
    assert spec["placement"]["gpu_models"] == ["A10", "A10G"]
    assert spec["placement"]["tier"] == "datacenter"
    # what the user gives wins: resources, and GPU models of their own
    spec = create("mine", "big", resources={"cpu": 0.5}).json()["spec"]
    assert spec["resources"] == {"cpu": 0.5, "memory_mb": 0, "gpu": 0.0}
    assert spec["placement"]["gpu_models"] == []
    spec = create("l4", "big", placement={"gpu_models": ["L4"]}).json()["spec"]
    assert spec["placement"]["gpu_models"] == ["L4"]
    # a shape no node can hold is refused, naming the shape and the way out
    r = create("huge", "huge")
    assert r.status_code == 422, r.text
    for word in ("huge@1", "resource_shape", "8 GPU", "--cpu/--memory/--gpu"):
        assert word in r.json()["detail"], r.json()["detail"]
