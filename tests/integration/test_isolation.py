"""User-code isolation with real processes: what a prepared process can and cannot do,
how uids are handed out and kept, and the settings refused with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leptonic.errors import InvalidInput
from leptonic.runtime.isolation import UID_RANGE, Isolation
from leptonic.store.store import Store

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="uid switching needs root")

PROBE = """
import json, os, sys
out = {"uid": os.getuid(), "cwd": os.getcwd(), "env": sorted(os.environ)}
for name, path in [("secret", sys.argv[1]), ("other", sys.argv[2])]:
    try:
        open(path).read(); out[name] = "READ"
    except OSError as exc:
        out[name] = type(exc).__name__
for name, path in [("home", os.path.join(os.environ["HOME"], "x")), ("bundle", "app.py")]:
    try:
        open(path, "a").write("x"); out["write_" + name] = "WROTE"
    except OSError as exc:
        out["write_" + name] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "admin-token").write_text("lep_topsecret\n")
    os.chmod(data / "admin-token", 0o600)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "app.py").write_text("print('hi')\n")
    return data, tmp_path / "work", bundle


def _run(iso: Isolation, key: str, owner: str, bundle: Path, other: Path,
         env: dict[str, str] | None = None) -> dict[str, object]:
    secret = str(iso.data_dir / "admin-token")
    prep = iso.prepare(key, owner, [sys.executable, "-c", PROBE, secret, str(other)],
                       env or {}, bundle)
    res = subprocess.run(prep.argv, cwd=prep.cwd, env=prep.env, user=prep.user,
                         group=prep.group, extra_groups=[] if prep.user is not None else None,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


@root_only
def test_each_deployment_runs_apart_from_the_data_dir_and_each_other(
        layout: tuple[Path, Path, Path]) -> None:
    data, work, bundle = layout
    uids = {"a": UID_RANGE[0] + 7, "b": UID_RANGE[0] + 8}
    iso = Isolation(data, work_root=work, allocate_uid=uids.__getitem__)
    first = _run(iso, "a-1", "a", bundle, work / "none", {"MINE": "1"})
    other_home = work / "a-1" / "home" / "x"
    assert other_home.exists()               # a's write landed in a's own home
    second = _run(iso, "b-1", "b", bundle, other_home)
    assert (first["uid"], second["uid"]) == (uids["a"], uids["b"])
    for seen in (first, second):
        assert seen["secret"] in ("PermissionError", "FileNotFoundError")
        assert seen["write_home"] == "WROTE"
        assert seen["write_bundle"] in ("PermissionError", "OSError")
        assert not any(k.startswith("LEPTONIC_") for k in seen["env"])  # type: ignore[union-attr]
    assert second["other"] in ("PermissionError", "FileNotFoundError")
    assert "MINE" in first["env"]            # type: ignore[operator]
    # work dirs: the replica's group may read its bundle, nobody else; released on stop
    assert (work / "a-1").stat().st_mode & 0o007 == 0
    iso.release("a-1")
    assert not (work / "a-1").exists()


@root_only
def test_run_as_puts_all_user_code_under_one_user(layout: tuple[Path, Path, Path]) -> None:
    data, work, bundle = layout
    iso = Isolation(data, work_root=work, run_as="nobody")
    assert "as user 'nobody'" in iso.describe()
    seen = _run(iso, "x-1", "x", bundle, work / "none")
    assert seen["uid"] == 65534
    assert seen["secret"] in ("PermissionError", "FileNotFoundError")


def test_isolation_none_is_said_out_loud(layout: tuple[Path, Path, Path]) -> None:
    data, work, _ = layout
    iso = Isolation(data, mode="none", work_root=work)
    assert "NONE" in iso.describe()
    assert iso.warning is not None
    assert "admin token" in iso.warning


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "chroot"}, "unknown isolation 'chroot'"),
    ({"run_as": "no-such-user-here"}, "no such user"),
    ({"run_as": "root"}, "unprivileged user"),
])
def test_bad_isolation_settings_are_refused(layout: tuple[Path, Path, Path],
                                            kwargs: dict[str, str], message: str) -> None:
    data, work, _ = layout
    if "run_as" in kwargs and os.geteuid() != 0:
        pytest.skip("--run-as is for a platform running as root")
    with pytest.raises(InvalidInput, match=message):
        Isolation(data, work_root=work, **kwargs)


def test_a_work_dir_inside_the_data_dir_is_refused(layout: tuple[Path, Path, Path]) -> None:
    data, _, _ = layout
    with pytest.raises(InvalidInput, match="must not contain each other"):
        Isolation(data, work_root=data / "work")


def test_uids_are_one_per_deployment_kept_and_freed(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    low, high = 61184, 61186
    a, b = store.run_uid("a", low, high), store.run_uid("b", low, high)
    assert (a, b) == (low, low + 1)
    assert store.run_uid("a", low, high) == a          # kept
    store.run_uid("c", low, high)
    from leptonic.errors import Conflict
    with pytest.raises(Conflict, match="uids for user code are in use"):
        store.run_uid("d", low, high)
    store.remove_deployment("a")                        # freed with the deployment
    assert store.run_uid("d", low, high) == low
