"""What a photon bundle holds: ignore files, the defaults, ``include=``, and what is refused.

Each test builds a real folder and reads the real ``.tar.gz`` back; the assertion is the
exact set of member names, so a file that slips in (or out) fails it.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from leptonic.client import BundlePlan, Client, make_bundle, plan_bundle
from leptonic.client._base import human_size
from leptonic.errors import InvalidInput


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _tar(bundle: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _names(bundle: bytes) -> set[str]:
    return set(_tar(bundle))


def _read(bundle: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file next to the project, not in it."""
    path = tmp_path / "outside.txt"
    path.write_text("not yours to ship\n")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with one of every case a bundle must get right."""
    root = tmp_path / "proj"
    _write(root, {
        "app.py": "A = 1\n",
        "pkg/util.py": "B = 2\n",
        ".env": "API_KEY=secret\n",
        ".env.local": "API_KEY=local\n",
        "venv/lib/site.py": "x\n",
        ".venv/bin/python": "x\n",
        "node_modules/left-pad/index.js": "x\n",
        "__pycache__/app.cpython-311.pyc": "x\n",
        "pkg/__pycache__/util.cpython-311.pyc": "x\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        ".gitignore": "data/\n*.log\n!keep.log\n",
        "data/big.bin": "weights\n",
        "run.log": "noise\n",
        "keep.log": "wanted\n",
        "sub/.gitignore": "local.txt\n",
        "sub/local.txt": "ignored below sub/ only\n",
        "sub/code.py": "C = 3\n",
        "local.txt": "not ignored at the root\n",
        ".leptonicignore": "notebooks/\n",
        "notebooks/scratch.ipynb": "{}\n",
        "model/config.json": "{}\n",
    })
    (root / "alias.py").symlink_to("app.py")                  # inside: bundled as a file
    (root / "model-link").symlink_to("model", target_is_directory=True)
    return root


EXPECTED = {
    "app.py", "pkg/util.py", ".gitignore", "keep.log", "sub/.gitignore", "sub/code.py",
    "local.txt", ".leptonicignore", "model/config.json", "alias.py",
    "model-link/config.json",
}


def test_bundle_holds_exactly_what_the_user_meant(project: Path) -> None:
    bundle = make_bundle(project)
    assert _names(bundle) == EXPECTED
    assert _read(bundle, "alias.py") == b"A = 1\n"
    # tar members are regular files only: the server refuses links
    assert all(m.isfile() for m in _tar(bundle).values())


def test_plan_lists_the_same_files_sorted_with_sizes(project: Path) -> None:
    plan = plan_bundle(project)
    assert [f.path for f in plan.files] == sorted(EXPECTED)
    assert plan.size == sum((project / f.path).stat().st_size for f in plan.files)
    sizes = [f.size for f in plan.largest(len(EXPECTED))]
    assert sizes == sorted((f.size for f in plan.files), reverse=True)
    assert plan.largest(1)[0].path == "local.txt"             # the longest text bundled
    assert plan.to_json()["count"] == len(EXPECTED)
    assert _names(make_bundle(plan)) == EXPECTED


def test_include_brings_back_default_excluded_items(project: Path) -> None:
    assert _names(make_bundle(project, include=[".env"])) == EXPECTED | {".env"}
    with_venv = _names(make_bundle(project, include=[".env.*", "venv"]))
    assert with_venv == EXPECTED | {".env.local", "venv/lib/site.py"}
    # and things an ignore file leaves out
    assert _names(make_bundle(project, include=["*.log"])) == EXPECTED | {"run.log"}


def test_create_photon_passes_include_to_the_bundle(project: Path) -> None:
    import httpx

    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(201, json={"name": "p", "version": 1, "entry": "app.py:A",
                                         "digest": "ab" * 32, "class_name": "A"})

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as client:
        client.create_photon("p", "app.py:A", project, include=[".env"])
        client.create_photon("p", "app.py:A", project)
    bundles = [body[body.index(b"\x1f\x8b"):body.rindex(b"\r\n--")] for body in sent]
    assert _names(bundles[0]) == EXPECTED | {".env"}
    assert _names(bundles[1]) == EXPECTED


def test_leptonicignore_negation_beats_the_defaults_and_gitignore_does_not(
        tmp_path: Path) -> None:
    _write(tmp_path / "a", {"app.py": "", ".env.example": "KEY=\n",
                            ".leptonicignore": "!.env.example\n"})
    assert _names(make_bundle(tmp_path / "a")) == {"app.py", ".env.example",
                                                   ".leptonicignore"}
    # an allow-list .gitignore must not drag .git or a venv back in
    _write(tmp_path / "b", {"app.py": "", ".git/HEAD": "x", "venv/x.py": "",
                            ".gitignore": "*\n!*/\n!*.py\n!.gitignore\n"})
    assert _names(make_bundle(tmp_path / "b")) == {"app.py", ".gitignore"}


def test_a_nested_gitignore_negation_overrides_its_parent(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "", ".gitignore": "*.txt\n", "sub/.gitignore": "!ok.txt\n",
                      "sub/ok.txt": "", "sub/no.txt": "", "top.txt": ""})
    assert _names(make_bundle(tmp_path)) == {"app.py", ".gitignore", "sub/.gitignore",
                                             "sub/ok.txt"}


def test_a_symlink_leading_outside_is_refused_naming_link_and_target(
        project: Path, outside: Path) -> None:
    (project / "creds.txt").symlink_to(outside)
    with pytest.raises(InvalidInput, match="symlink") as err:
        make_bundle(project)
    assert "creds.txt" in err.value.detail
    assert str(outside) in err.value.detail


def test_a_folder_symlink_leading_outside_is_refused(project: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (project / "shared").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InvalidInput, match="shared"):
        plan_bundle(project)


def test_an_ignored_outside_symlink_is_left_out_not_refused(project: Path,
                                                            outside: Path) -> None:
    (project / "data" / "link").symlink_to(outside)          # data/ is gitignored
    (project / "venv" / "python").symlink_to(outside)        # venv/ is a default
    assert _names(make_bundle(project)) == EXPECTED


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": ""})
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "again").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InvalidInput, match="loop"):
        plan_bundle(tmp_path)


def test_a_dangling_symlink_is_skipped(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": ""})
    (tmp_path / ".#app.py").symlink_to("user@host.1234")     # an editor's lock file
    assert _names(make_bundle(tmp_path)) == {"app.py"}


def _fake_data_dir(root: Path) -> None:
    for name in ("admin-token", "secret-key", "leptonic.db"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    (root / "artifacts").mkdir()
    (root / "logs").mkdir()


def test_a_nested_data_dir_is_refused(project: Path) -> None:
    _fake_data_dir(project / "state")
    with pytest.raises(InvalidInput, match="data dir") as err:
        make_bundle(project)
    assert "state/" in err.value.detail
    assert "--data-dir" in err.value.detail


def test_a_data_dir_is_refused_even_with_its_files_ignored(project: Path) -> None:
    """Its artifacts and logs are still there; only leaving the whole folder out is safe."""
    _fake_data_dir(project / "state")
    (project / ".leptonicignore").write_text("admin-token\nsecret-key\nleptonic.db\n")
    with pytest.raises(InvalidInput, match="state/"):
        plan_bundle(project)


def test_a_database_with_artifacts_is_a_data_dir(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "", "state/leptonic.db": "", "state/artifacts/x": ""})
    (tmp_path / ".leptonicignore").write_text("*.db\n")
    with pytest.raises(InvalidInput, match=r"state/.*leptonic\.db"):
        plan_bundle(tmp_path)


def test_a_data_dir_left_out_whole_is_fine(project: Path) -> None:
    _fake_data_dir(project / "state")
    (project / ".leptonicignore").write_text("notebooks/\nstate/\n")
    assert _names(make_bundle(project)) == EXPECTED


@pytest.mark.parametrize("name", ["admin-token", "secret-key", "leptonic.db"])
def test_a_lone_data_dir_file_is_refused_by_name(tmp_path: Path, name: str) -> None:
    _write(tmp_path, {"app.py": "", f"conf/{name}": "x"})
    with pytest.raises(InvalidInput, match=f"conf/{name}"):
        make_bundle(tmp_path)


def test_a_link_to_a_data_dir_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": ""})
    _fake_data_dir(tmp_path / "state")
    (tmp_path / ".gitignore").write_text("state/\n")
    (tmp_path / "token").symlink_to(tmp_path / "state" / "admin-token")
    with pytest.raises(InvalidInput, match=r"refusing to bundle state/.* data dir"):
        make_bundle(tmp_path)


def test_the_data_dir_itself_is_refused(tmp_path: Path) -> None:
    _fake_data_dir(tmp_path)
    with pytest.raises(InvalidInput, match="data dir"):
        make_bundle(tmp_path)


def test_the_platforms_own_data_dir_is_refused_inside_or_as_the_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Known from LEPTONIC_DATA_DIR even before it holds a token (a fresh platform)."""
    _write(tmp_path, {"app.py": "", "state/endpoint": "http://127.0.0.1:8080\n"})
    monkeypatch.setenv("LEPTONIC_DATA_DIR", str(tmp_path / "state"))
    with pytest.raises(InvalidInput, match="data dir of the platform"):
        make_bundle(tmp_path)
    with pytest.raises(InvalidInput, match="data dir of the platform"):
        make_bundle(tmp_path / "state")
    with pytest.raises(InvalidInput, match="data dir"):
        make_bundle(tmp_path / "state" / "endpoint")
    monkeypatch.setenv("LEPTONIC_DATA_DIR", str(tmp_path / "elsewhere"))
    assert _names(make_bundle(tmp_path)) == {"app.py", "state/endpoint"}
    # an explicit data_dir wins over the environment
    with pytest.raises(InvalidInput, match="data dir of the platform"):
        plan_bundle(tmp_path, data_dir=tmp_path / "state")


def test_one_file_is_bundled_as_itself_and_a_link_as_its_target(tmp_path: Path) -> None:
    _write(tmp_path, {"real/app.py": "A = 1\n"})
    (tmp_path / "app-link.py").symlink_to(tmp_path / "real" / "app.py")
    bundle = make_bundle(tmp_path / "app-link.py")
    assert _names(bundle) == {"app-link.py"}
    assert _read(bundle, "app-link.py") == b"A = 1\n"


def test_executable_bit_is_kept(tmp_path: Path) -> None:
    _write(tmp_path, {"run.sh": "#!/bin/sh\n", "app.py": ""})
    os.chmod(tmp_path / "run.sh", 0o755)
    members = _tar(make_bundle(tmp_path))
    assert members["run.sh"].mode == 0o755
    assert members["app.py"].mode == 0o644


def test_summary_and_sizes() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(20 * 1024 * 1024) == "20.0 MiB"
    plan = BundlePlan(Path("/p"), ())
    assert plan.summary() == "bundled 0 files, 0 B"
    assert plan.largest() == []
