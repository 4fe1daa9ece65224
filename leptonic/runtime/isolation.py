"""Isolation of user code: every process that runs uploaded code goes through here.

Inspection at ``photon create``, replicas (and later job attempts) run uploaded code. None of
them may reach the platform's data dir (admin token, secret key, database), the control
plane's environment, or another deployment's bundle and env. What is used, strongest first:

* **uid** (the platform runs as root): each deployment runs under a uid of its own from
  ``UID_RANGE`` (allocated in the store, like systemd's DynamicUser), inspection under the
  ``leptonic-run`` system user that ``leptonic up`` creates; ``--run-as USER`` puts all user
  code under one user instead. File modes then keep it out of the data dir (0700) and out
  of other deployments' work dirs (0700/0750 by uid), and /proc of other uids.
* **sandbox** (Debian's ``bubblewrap``, when installed): a mount namespace where the data
  dir and every other work dir are empty tmpfs, the bundle is read-only, and a pid
  namespace so no other process (nor its ``/proc/PID/environ``) is visible.

As root both apply; not as root only the sandbox can, and without bubblewrap ``leptonic up``
refuses to start unless ``--isolation none`` says so; the mode in force is logged.

Each process gets a work dir outside the data dir: ``WORK/<key>/bundle`` (a copy of the
bundle, read-only to it, its cwd) and ``WORK/<key>/home`` (HOME and TMPDIR, writable by it
alone), and an environment of its own env and secrets plus a few harmless variables.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import leptonic
from leptonic.errors import BackendError, InvalidInput

log = logging.getLogger(__name__)

RUN_USER = "leptonic-run"
UID_RANGE = (61184, 65519)      # systemd's DynamicUser range: no /etc/passwd entry needed
MODES = ("auto", "none")

# Variables a replica may inherit from the platform's environment: locale, time zone,
# thread counts and offline switches. Nothing else (no LEPTONIC_*, no credentials).
_PASS_ENV = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE", "TORCH_NUM_THREADS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
})


@dataclass(frozen=True)
class Prepared:
    """How to start one isolated process: hand these to ``subprocess.Popen``."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    user: int | None            # for Popen (None: the sandbox switches, or no switch)
    group: int | None
    workdir: Path
    run_uid: int | None = None  # the uid the user code ends up as


def clean_env(env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process's own ``env`` over the harmless part of ``base`` (default: ours)."""
    base = os.environ if base is None else base
    out = {k: v for k, v in base.items() if k in _PASS_ENV or k.startswith("LC_")}
    out.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    out.update(env)
    return out


def package_root() -> str:
    """The folder leptonic imports from (a source checkout needs it on PYTHONPATH)."""
    return str(Path(leptonic.__file__).resolve().parent.parent)


def others_can_use(path: Path) -> bool:
    """Can a user that is neither owner nor in the group reach (and read) ``path``?"""
    path = path.resolve()
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    mode = os.stat(path).st_mode
    need = stat.S_IXOTH | stat.S_IROTH if path.is_dir() else stat.S_IROTH
    return mode & need == need


def ensure_system_user(name: str = RUN_USER) -> tuple[int, int]:
    """The (uid, gid) of system user ``name``, created (no home, no shell) if missing."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            subprocess.run([useradd, "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            name], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackendError(f"cannot create the system user {name!r} that runs user code "
                               f"({exc}); create it yourself or pass --run-as USER") from exc
        pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def apply_limits(open_files: int | None, processes: int | None) -> None:
    """Set this process's rlimits (soft = hard, so user code cannot raise them again);
    no core dumps. Called by the runner before it imports user code."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if open_files:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    if processes and os.getuid() != 0:        # root ignores RLIMIT_NPROC anyway
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


class Isolation:
    """Decides, once at start, how user code is isolated, and prepares each process."""

    def __init__(self, data_dir: Path, *, mode: str = "auto", work_root: Path | None = None,
                 run_as: str | None = None,
                 allocate_uid: Callable[[str], int] | None = None,
                 bwrap: str | bool | None = True, inspect: bool = True) -> None:
        if mode not in MODES:
            raise InvalidInput(f"unknown isolation {mode!r}; use one of {', '.join(MODES)}")
        self.data_dir = Path(data_dir).resolve()
        self.mode = mode
        self.is_root = os.geteuid() == 0
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        self.owner_mark = digest          # on every command line: finds our orphans
        self.work_root = Path(work_root) if work_root else _default_work_root(digest)
        self.work_root = self.work_root.resolve()
        if self.work_root.is_relative_to(self.data_dir) or \
                self.data_dir.is_relative_to(self.work_root):
            raise InvalidInput(f"the work dir {self.work_root} and the data dir "
                               f"{self.data_dir} must not contain each other")
        self._allocate = allocate_uid
        self.fixed: tuple[int, int, str] | None = None     # --run-as
        self.inspect_ids: tuple[int, int] | None = None
        self.uids = False
        self.sandbox: str | None = None
        self.warning: str | None = None
        if mode == "none":
            self.warning = ("user code runs with no isolation (--isolation none): photons "
                            "can read the data dir, the admin token and the secret key")
            return
        found = shutil.which("bwrap") if bwrap is True else (bwrap or None)
        self.sandbox = found if found and _bwrap_works(found) else None
        self.setpriv = shutil.which("setpriv")
        if self.is_root:
            if run_as:
                try:
                    pw = pwd.getpwnam(run_as)
                except KeyError as exc:
                    raise InvalidInput(f"--run-as {run_as!r}: no such user") from exc
                if pw.pw_uid == 0:
                    raise InvalidInput("--run-as must name an unprivileged user, not root")
                self.fixed = (pw.pw_uid, pw.pw_gid, run_as)
                self.inspect_ids = (pw.pw_uid, pw.pw_gid)
            elif inspect:           # a Ray node runs no inspection: no system user there
                self.inspect_ids = ensure_system_user()
            self.uids = True
            if self.sandbox and not self.setpriv:
                self.sandbox = None
            unreadable = [p for p in _needed_paths() if not others_can_use(p)]
            if unreadable and self.sandbox is None:
                raise BackendError(
                    f"user code runs as an unprivileged user, which cannot read "
                    f"{unreadable[0]}; install bubblewrap (apt-get install bubblewrap: the "
                    "sandbox makes the Python environment visible), or install leptonic "
                    "where other users can read it (not under /root)")
        elif self.sandbox is None:
            raise BackendError(
                "cannot isolate user code: not running as root and bubblewrap (bwrap) is not "
                "installed; install it (apt-get install bubblewrap) or start with "
                "--isolation none to run photons with the platform's own rights")
        # the platform's umask (077) would make missing parents (e.g. /var/lib/leptonic)
        # closed to the uids user code runs as: each one created here gets the mode too
        dir_mode = 0o711 if self.uids else 0o700
        for path in reversed([self.work_root, *self.work_root.parents]):
            if not path.exists():
                path.mkdir(exist_ok=True)
                os.chmod(path, dir_mode)
        os.chmod(self.work_root, dir_mode)

    def node_spec(self, owner: str) -> dict[str, object]:
        """What a Ray actor needs to isolate ``owner``'s process on its node the same way
        (:func:`on_node`): the mode, the data dir to hide, the uid or ``--run-as`` user."""
        uid = None
        if self.uids and not self.fixed:
            ids = self.ids_for(owner)
            uid = ids[0] if ids else None
        return {"mode": self.mode, "data_dir": str(self.data_dir), "uid": uid,
                "run_as": self.fixed[2] if self.fixed else None}

    def describe(self) -> str:
        """One line for ``leptonic up``'s log: which isolation is active."""
        if self.mode == "none":
            return "isolation: NONE (--isolation none)"
        parts = []
        if self.uids:
            parts.append(f"as user {self.fixed[2]!r}" if self.fixed else
                         f"as a uid of its own per deployment ({UID_RANGE[0]}-{UID_RANGE[1]}),"
                         f" inspection as {RUN_USER!r}")
        if self.sandbox:
            parts.append("in a bubblewrap sandbox (data dir hidden, bundle read-only, own "
                         "pid namespace)")
        return f"isolation: user code runs {' and '.join(parts)}; work dirs in {self.work_root}"

    def ids_for(self, owner: str) -> tuple[int, int] | None:
        """(uid, gid) that ``owner`` (a deployment name, or ``None`` for inspection) runs
        as; None when uids are not switched."""
        if not self.uids:
            return None
        if self.fixed:
            return self.fixed[0], self.fixed[1]
        if owner == "":
            assert self.inspect_ids is not None
            return self.inspect_ids
        if self._allocate is None:
            raise BackendError("no uid allocator configured for per-deployment uids")
        uid = self._allocate(owner)
        return uid, uid

    def prepare(self, key: str, owner: str, argv: list[str], env: Mapping[str, str],
                bundle: Path | None, *, die_with_parent: bool = False,
                output: bool = False) -> Prepared:
        """Make ``WORK/key`` (bundle copy + home) for ``owner`` and say how to run ``argv``
        there. ``owner`` is the deployment's name, "" for an inspection. ``output`` (job
        attempts) adds ``WORK/key/output``, empty and writable by the process alone, and
        copies the bundle even with no isolation (an attempt may not touch the stored
        one)."""
        if self.mode == "none" and not output:
            cwd = str(bundle) if bundle else str(self.data_dir)
            return Prepared(argv, cwd, {**self._base_env(cwd), **env}, None, None, Path(cwd))
        ids = self.ids_for(owner) if self.mode != "none" else None
        wd = self.work_root / key
        self.release(key, force=output)
        wd.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        wd.mkdir(mode=0o700)
        home = wd / "home"
        home.mkdir(mode=0o700)
        out_dir = wd / "output"
        if output:
            out_dir.mkdir(mode=0o700)
            if ids is not None:
                os.chown(out_dir, *ids)
        target = wd / "bundle"
        if bundle is not None:
            shutil.copytree(bundle, target, symlinks=False, copy_function=shutil.copyfile)
        else:
            target.mkdir(mode=0o700)
        if ids is not None:
            uid, gid = ids
            _own(target, 0, gid, dir_mode=0o750, file_mode=0o640)
            os.chown(home, uid, gid)
            os.chown(wd, 0, gid)
            os.chmod(wd, 0o750)
        cwd = str(target)
        full_env = {**self._base_env(str(home)), **env}
        if self.mode == "none":
            return Prepared(argv, cwd, full_env, None, None, wd)
        if self.sandbox:
            # the sandbox switches the uid itself (setpriv), after its mounts are made
            argv = self._bwrap(wd, target, home, ids, die_with_parent,
                               out_dir if output else None) + argv
            return Prepared(argv, cwd, full_env, None, None, wd, ids[0] if ids else None)
        return Prepared(argv, cwd, full_env, ids[0] if ids else None,
                        ids[1] if ids else None, wd, ids[0] if ids else None)

    def release(self, key: str, *, force: bool = False) -> None:
        """Remove ``WORK/key`` (the process has stopped); ``force``: also with no
        isolation (a job attempt's work dir exists then too)."""
        if self.mode == "none" and not force:
            return
        wd = self.work_root / key
        if wd.parent == self.work_root and wd.exists():
            shutil.rmtree(wd, ignore_errors=True)

    def _base_env(self, home: str) -> dict[str, str]:
        base = clean_env({})
        base.update({"HOME": home, "TMPDIR": home, "PYTHONUNBUFFERED": "1",
                     "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": package_root(),
                     "USER": RUN_USER, "LOGNAME": RUN_USER})
        return base

    def _bwrap(self, wd: Path, bundle: Path, home: Path, ids: tuple[int, int] | None,
               die_with_parent: bool, output: Path | None = None) -> list[str]:
        assert self.sandbox is not None
        args = [self.sandbox, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        # hidden behind an empty tmpfs: a private /tmp, and folders other users cannot
        # enter (e.g. /root holding a pyenv Python); the Python environment is bound back
        # in where it lies under one of them (a venv in a checkout under /tmp, say)
        needed = _needed_paths()
        hidden = [Path("/tmp"), *_blocked_ancestors(needed)]
        for h in hidden:
            args += ["--tmpfs", str(h)]
        for p in _outermost(q for q in needed if any(q.is_relative_to(h) for h in hidden)):
            # the folders between the hidden one and the bind: enterable (bubblewrap
            # would make them 0700, which the user code's uid cannot pass)
            top = max((h for h in hidden if p.is_relative_to(h)), key=lambda h: len(h.parts))
            for parent in reversed(p.parents):
                if parent.is_relative_to(top) and parent != top:
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", str(p), str(p)]
        # on a Ray node the platform's data dir may not exist: nothing there to hide
        if self.data_dir.exists():
            args += ["--tmpfs", str(self.data_dir)]
        args += ["--tmpfs", str(self.work_root),
                 "--dir", str(wd), "--ro-bind", str(bundle), str(bundle),
                 "--bind", str(home), str(home),
                 *(["--bind", str(output), str(output)] if output is not None else []),
                 "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                 "--chdir", str(bundle)]
        # no --die-with-parent for replicas: they outlive a crashed control plane
        if die_with_parent:
            args.append("--die-with-parent")
        if ids is None:             # not root: an unprivileged user namespace
            return [*args, "--unshare-user", "--"]
        assert self.setpriv is not None
        uid, gid = ids
        return [*args, "--", self.setpriv, f"--reuid={uid}", f"--regid={gid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
                "--"]


def on_node(spec: Mapping[str, object]) -> Isolation:
    """The isolation a Ray actor applies on its node, as the control plane decided it
    (:meth:`Isolation.node_spec`): the same mode, the platform's data dir hidden where it
    exists on this node, and the uid the control plane allocated for the owner (used when
    Ray's workers run as root here; otherwise the sandbox's user namespace)."""
    uid = spec.get("uid")
    run_as = spec.get("run_as")

    def allocate(_owner: str) -> int:     # only asked where Ray's workers run as root
        return int(str(uid)) if uid is not None else ensure_system_user()[0]

    return Isolation(Path(str(spec["data_dir"])), mode=str(spec.get("mode") or "auto"),
                     run_as=str(run_as) if run_as else None, allocate_uid=allocate,
                     inspect=False)


def _needed_paths() -> list[Path]:
    """What a replica's Python must read: the interpreter, its prefixes, leptonic."""
    paths = {Path(sys.executable).resolve().parent, Path(sys.base_prefix).resolve(),
             Path(sys.prefix).resolve(), Path(package_root())}
    return sorted(paths)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths not inside another of them, sorted."""
    kept: list[Path] = []
    for p in sorted(set(paths)):
        if not any(p.is_relative_to(k) for k in kept):
            kept.append(p)
    return kept


def _blocked_ancestors(paths: list[Path]) -> dict[Path, list[Path]]:
    """The topmost folder above each path that other users cannot enter, with the paths
    under it (paths under another of them are covered by that one's bind)."""
    out: dict[Path, list[Path]] = {}
    for p in paths:
        for parent in reversed(p.parents):
            if parent != Path("/") and not os.stat(parent).st_mode & stat.S_IXOTH:
                kept = out.setdefault(parent, [])
                if not any(p.is_relative_to(k) for k in kept):
                    kept[:] = [k for k in kept if not k.is_relative_to(p)] + [p]
                break
    return out


def _default_work_root(digest: str) -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/leptonic/work") / digest
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "leptonic" / "work" / digest


def _own(root: Path, uid: int, gid: int, *, dir_mode: int, file_mode: int) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        os.chmod(dirpath, dir_mode)
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chown(p, uid, gid)
            os.chmod(p, file_mode)


_BWRAP_OK: dict[str, bool] = {}


def _bwrap_works(path: str) -> bool:
    """Can this kernel/container run bubblewrap (user and pid namespaces)? Asked once."""
    if path not in _BWRAP_OK:
        ok = False
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            ok = subprocess.run(
                [path, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                 "--unshare-user", "--unshare-pid", "--", "/bin/true"],
                capture_output=True, timeout=10, check=False).returncode == 0
        _BWRAP_OK[path] = ok
        if not ok:
            log.warning("%s is installed but cannot create namespaces here", path)
    return _BWRAP_OK[path]
