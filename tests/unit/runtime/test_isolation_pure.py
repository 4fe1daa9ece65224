"""The pure parts of user-code isolation: the environment a replica gets, which folders
need a tmpfs-and-bind in the sandbox, and the template hash of the new spec fields."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from leptonic.cli.rollout import memory_mb
from leptonic.core.models import DeploymentSpec, LimitsSpec
from leptonic.core.transitions import template_hash
from leptonic.runtime.isolation import _blocked_ancestors, clean_env, others_can_use


def test_clean_env_keeps_only_harmless_variables_and_the_replicas_own() -> None:
    base = {"PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "HF_HUB_OFFLINE": "1",
            "LEPTONIC_TOKEN": "lep_x", "LEPTONIC_DATA_DIR": "/data", "AWS_SECRET": "s",
            "HOME": "/root", "PYTHONPATH": "/evil"}
    env = clean_env({"MY_VAR": "1", "PATH": "/mine"}, base)
    assert env == {"PATH": "/mine", "LANG": "C.UTF-8", "LC_ALL": "C",
                   "HF_HUB_OFFLINE": "1", "MY_VAR": "1"}


def test_clean_env_gives_a_path_even_without_one() -> None:
    assert "PATH" in clean_env({}, {})


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder every user can enter (pytest's own tmp_path is under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="leptonic-iso-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_blocked_ancestors_find_the_topmost_folder_others_cannot_enter(
        open_tmp: Path) -> None:
    tmp_path = open_tmp
    locked = tmp_path / "home"
    (locked / "py" / "lib").mkdir(parents=True)
    (locked / "venv").mkdir()
    open_dir = tmp_path / "open" / "pkg"
    open_dir.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "open", 0o755)
    os.chmod(open_dir, 0o755)
    os.chmod(locked, 0o700)
    paths = [locked / "py", locked / "py" / "lib", locked / "venv", open_dir]
    blocked = _blocked_ancestors(paths)
    # /root-like folder: one tmpfs for it, the two trees bound back; the open one untouched
    assert list(blocked) == [locked]
    assert sorted(blocked[locked]) == [locked / "py", locked / "venv"]
    assert not others_can_use(locked / "venv")
    assert others_can_use(open_dir)


def test_the_new_spec_fields_keep_old_template_hashes_and_change_new_ones() -> None:
    plain = DeploymentSpec(photon="builtin:echo")
    assert template_hash(plain) == template_hash(DeploymentSpec(
        photon="builtin:echo", limits=LimitsSpec(), handler_timeout_s=60.0))
    for changed in (DeploymentSpec(photon="builtin:echo", limits=LimitsSpec(memory_mb=512)),
                    DeploymentSpec(photon="builtin:echo", handler_timeout_s=5),
                    DeploymentSpec(photon="builtin:echo", max_concurrency=8),
                    DeploymentSpec(photon="builtin:echo", debug_errors=True)):
        assert template_hash(changed) != template_hash(plain)


@pytest.mark.parametrize(("text", "mb"), [("512Mi", 512), ("2Gi", 2048), ("1.5G", 1536),
                                          ("300", 300), ("1Ti", 1024 * 1024)])
def test_memory_sizes(text: str, mb: int) -> None:
    assert memory_mb(text) == mb


@pytest.mark.parametrize("text", ["lots", "12Pb", "-1Gi", ""])
def test_bad_memory_sizes_say_what_to_write(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="512Mi"):
        memory_mb(text)
