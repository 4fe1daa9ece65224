"""Every shell and Python example of the documentation runs, so a page cannot go stale.

The convention (docs/index.md): the ```bash / ```python blocks of a page run in order,
each in a fresh ``bash -euo pipefail`` or interpreter, in one scratch folder per page. An
HTML comment on the line before a block says how: none (on its own), ``<!-- docs:
platform -->`` (against a real ``leptonic up`` started for the page), ``<!-- docs:
background -->`` (a server, stopped when the page is done), ``<!-- docs: file NAME -->``
(written to NAME in the folder, for the next blocks), ``<!-- docs: ray -->`` (like
platform, but the page's ``leptonic up --runtime ray`` joins a local Ray cluster made for
the page: a head labelled ``tier=datacenter`` and a node ``edge-1`` labelled ``tier=edge,
zone=a``, all on 127.0.0.1), ``<!-- docs: skip REASON -->``.

The pages talk to the platform a reader starts with ``make up``: ``localhost:8080`` (or
``127.0.0.1:8080``) with its data dir in ``~/.leptonic``. For a page's platform, ``HOME``
is a scratch folder whose ``.leptonic`` is that platform's data dir, and in platform blocks
those two addresses name the page's platform.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOCS = REPO / "docs"
_FENCE = re.compile(r"^```(\w+)?\s*$")
_MARK = re.compile(r"^<!--\s*docs:\s*(\w+)\s*(.*?)\s*-->$")
LANGS = {"bash", "sh", "python"}
_DEFAULT_ADDRESS = re.compile(r"\b(localhost|127\.0\.0\.1):8080\b")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    mode: str           # run | platform | ray | background | file | skip
    reason: str
    code: str


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        lang, start = (m.group(1) or ""), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        mark = _MARK.match(prev.strip())
        if lang in LANGS:
            out.append(Block(str(path.relative_to(REPO)), start + 1, lang,
                             mark.group(1) if mark else "run",
                             mark.group(2) if mark else "", "\n".join(lines[i + 1:j])))
        i = j + 1
    return out


def pages() -> list[Path]:
    return sorted([REPO / "README.md", *DOCS.rglob("*.md")])


def test_every_block_is_run_or_skipped_with_a_reason() -> None:
    for page in pages():
        for b in blocks(page):
            assert b.mode in ("run", "platform", "ray", "background", "file", "skip"), b
            if b.mode == "file":
                assert b.reason, f"{b.page}:{b.line}: docs: file needs the file's name"
            if b.mode == "skip":
                assert b.reason, f"{b.page}:{b.line}: a skipped block needs a reason"


RUN_PAGES = [p for p in pages() if any(b.mode != "skip" for b in blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    page_blocks = [b for b in blocks(page) if b.mode != "skip"]
    # not under /tmp, which replicas do not see (they get a private one): the README has a
    # replica read a model file from the folder the reader is in, as their own would be
    work = Path(tempfile.mkdtemp(prefix="leptonic-docs-",
                                 dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    work.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTONIC_")}
    env.update(REPO=str(REPO), PYTHONPATH=str(REPO), HOME=str(home),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["HF_TOKEN"] = "hf_docs_example"    # what the README has a reader export
    address = ""
    background: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    platform_cm = None
    cluster = None
    try:
        on_ray = any(b.mode == "ray" for b in page_blocks)
        assert not (on_ray and any(b.mode == "platform" for b in page_blocks)), \
            f"{page}: platform and ray blocks on one page"
        if on_ray:
            cluster, ray_env = _ray_cluster()
            env.update(ray_env)
            platform_cm = running_platform(home / ".leptonic", ray_env, [
                "--runtime", "ray", "--ray-address", cluster.address])
            p = platform_cm.__enter__()
            _wait_for_nodes(p, 2)
            env.update(LEPTONIC_URL=p.url, LEPTONIC_TOKEN=p.token, TOKEN=p.token)
            address = p.url.split("://", 1)[1].rstrip("/")
        elif any(b.mode == "platform" for b in page_blocks):
            platform_cm = running_platform(home / ".leptonic")
            p = platform_cm.__enter__()
            env.update(LEPTONIC_URL=p.url, LEPTONIC_TOKEN=p.token, TOKEN=p.token)
            address = p.url.split("://", 1)[1].rstrip("/")
        for b in page_blocks:
            code = _DEFAULT_ADDRESS.sub(address, b.code) if b.mode in ("platform", "ray") \
                else b.code
            argv = ([sys.executable, "-c", code] if b.lang == "python"
                    else ["bash", "-euo", "pipefail", "-c", code])
            if b.mode == "file":
                (work / b.reason).write_text(code + "\n")
                continue
            if b.mode == "background":
                log = (tmp_path / f"bg-{b.line}.log").open("wb")
                logs.append(log)
                background.append(subprocess.Popen(argv, cwd=work, env=env, stdout=log,
                                                   stderr=subprocess.STDOUT))
                continue
            res = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                 timeout=300, check=False)
            assert res.returncode == 0, (f"{b.page}:{b.line} failed ({res.returncode}):\n"
                                         f"{b.code}\n--- stdout\n{res.stdout[-2000:]}\n"
                                         f"--- stderr\n{res.stderr[-3000:]}")
    finally:
        for proc in background:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
        if platform_cm is not None:
            platform_cm.__exit__(None, None, None)
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)


RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def _ray_cluster() -> tuple[Any, dict[str, str]]:
    """A local Ray cluster for a page: head ``tier=datacenter``, node ``edge-1``."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    del ray
    os.environ.update(RAY_ENV)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "labels": {"tier": "datacenter", "name": "dc-1"},
        "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=2, labels={"tier": "edge", "zone": "a", "name": "edge-1"},
                     node_ip_address="127.0.0.1")
    return cluster, dict(RAY_ENV)


def _wait_for_nodes(p: Any, want: int, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [n for n in p.api("GET", "/nodes").json() if n["status"] == "Ready"]
        if len(ready) >= want:
            assert {n["address"] for n in ready} == {"127.0.0.1"}, ready
            return
        time.sleep(0.2)
    raise AssertionError(f"not {want} ready nodes: {p.api('GET', '/nodes').text}")
