"""What the sync and async clients share: configuration, requests, responses, errors.

Every API method is written once, in ``_API``, as a description of a request (``Call``)
plus how to decode its response; ``Client._run`` sends it and returns the value, while
``AsyncClient._run`` returns a coroutine of it. Only waiting and streaming, which block or
await by nature, are written twice (in ``client.py``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import httpx
import pathspec
from pydantic import BaseModel, TypeAdapter

from leptonic.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    INSPECT_TIMEOUT_S,
    DataDir,
    default_data_dir,
)
from leptonic.core.models import (
    Deployment,
    DeploymentPhase,
    Event,
    Node,
    PhotonVersion,
    Replica,
    Rollout,
)
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

API_PREFIX = "/api/v1"
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"

T = TypeVar("T")


# -- errors -------------------------------------------------------------------------------

class DeploymentFailed(BackendError):
    """A deployment being waited on went into ``CrashLoop``; ``detail`` has its last error."""


class WaitTimeout(Unavailable, TimeoutError):
    """A deployment was not ready within the time given to ``wait_ready``."""


_ERRORS: dict[int, type[LeptonicError]] = {
    400: InvalidInput, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 422: InvalidInput, 429: TooManyRequests, 500: BackendError,
    502: Unavailable, 503: Unavailable, 504: Unavailable,
}


def error_class(status: int) -> type[LeptonicError]:
    """The leptonic error for an HTTP error status (unknown 4xx are invalid input)."""
    if status in _ERRORS:
        return _ERRORS[status]
    return InvalidInput if 400 <= status < 500 else LeptonicError


def error_from_response(resp: httpx.Response) -> LeptonicError:
    """Turn a 4xx/5xx response (problem+json or not) into the matching leptonic error.

    The response body must already be read.
    """
    detail: str | None = None
    extra: dict[str, Any] = {}
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw = body.get("detail") or body.get("title") or body.get("message")
        if raw is not None:
            # a replica's own 422 (passed through the gateway) may carry a list of errors
            detail = raw if isinstance(raw, str) else json.dumps(raw)
        if resp.headers.get("content-type", "").startswith(PROBLEM_CONTENT_TYPE):
            extra = {k: v for k, v in body.items()
                     if k not in ("type", "title", "status", "detail")}
    if not detail:
        text = resp.text.strip()
        detail = text[:500] if text else f"{resp.status_code} {resp.reason_phrase}".strip()
    err = error_class(resp.status_code)(detail, **extra)
    err.status = resp.status_code
    return err


def raise_for_error(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        raise error_from_response(resp)


def connection_error(url: str, exc: httpx.TransportError) -> LeptonicError:
    """The error for a platform that cannot be reached (or stopped answering)."""
    if isinstance(exc, httpx.ConnectError):
        return Unavailable(f"no leptonic platform at {url}; start one with `leptonic up`")
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"the leptonic platform at {url} did not answer in time ({exc!r})")
    return Unavailable(f"lost the connection to the leptonic platform at {url}: {exc}")


# -- configuration ------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def resolve_url(url: str | None = None, *, env: Mapping[str, str] | None = None,
                data_dir: Path | None = None) -> str:
    """``url``, else ``$LEPTONIC_URL``, else the local platform's ``endpoint`` file,
    else ``http://127.0.0.1:8080``."""
    env = os.environ if env is None else env
    found = url or env.get("LEPTONIC_URL") or _read(_layout(env, data_dir).endpoint)
    return (found or DEFAULT_URL).rstrip("/")


def resolve_token(token: str | None = None, *, env: Mapping[str, str] | None = None,
                  data_dir: Path | None = None, url: str | None = None) -> str | None:
    """``token``, else ``$LEPTONIC_TOKEN``, else the session saved by ``leptonic login``
    for ``url``, else the local platform's ``admin-token``."""
    env = os.environ if env is None else env
    return (token or env.get("LEPTONIC_TOKEN") or (saved_token(url, env=env) if url else None)
            or _read(_layout(env, data_dir).admin_token))


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    """Where ``leptonic login`` keeps session tokens, by platform URL (mode 0600)."""
    env = os.environ if env is None else env
    base = env.get("LEPTONIC_CONFIG_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".config" / "leptonic"
    return root / "credentials.json"


def _credentials(env: Mapping[str, str] | None) -> dict[str, str]:
    try:
        data = json.loads(credentials_path(env).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def saved_token(url: str, *, env: Mapping[str, str] | None = None) -> str | None:
    return _credentials(env).get(url.rstrip("/"))


def save_token(url: str, token: str | None, *, env: Mapping[str, str] | None = None) -> Path:
    """Remember (or with ``token=None`` forget) the session token for ``url``."""
    creds = _credentials(env)
    if token is None:
        creds.pop(url.rstrip("/"), None)
    else:
        creds[url.rstrip("/")] = token
    path = credentials_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".credentials-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=1)
    os.replace(tmp, path)
    return path


def _layout(env: Mapping[str, str], data_dir: Path | None) -> DataDir:
    if data_dir is not None:
        return DataDir(Path(data_dir))
    if env is os.environ:
        return DataDir(default_data_dir())
    root = env.get("LEPTONIC_DATA_DIR")
    return DataDir(Path(root).expanduser() if root else Path.home() / ".leptonic")


# -- photon bundles ------------------------------------------------------------------------
#
# A bundle holds what the user meant: the folder's files minus what its .gitignore and
# .leptonicignore files leave out (gitignore rules, nested files, `!` negation) and minus
# the defaults below. Three things are refused rather than skipped, because leaving them
# out silently would hide a mistake: a symlink leading outside the folder, a leptonic data
# dir (tokens, secret key, database) and a data-dir file by its name.

# left out unless `include=` (`--include`) names them; .leptonicignore's `!` can bring one
# back too (it is read after these), .gitignore's cannot
DEFAULT_EXCLUDES = (".git", ".venv", "venv", "node_modules", "__pycache__/", "*.pyc", "*.pyo",
                    ".env", ".env.*", ".mypy_cache/", ".pytest_cache/", ".ruff_cache/")
IGNORE_FILES = (".gitignore", ".leptonicignore")
# the files of a data dir (leptonic/config.py DataDir) that no bundle may hold
DATA_DIR_FILES = frozenset({"admin-token", "secret-key", "leptonic.db"})
_DATA_DIR_FOLDERS = ("artifacts", "logs")


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: its path inside the bundle and where its bytes come from (for
    a symlink inside the folder, the file it points to)."""

    path: str
    source: Path
    size: int
    executable: bool = False


@dataclass(frozen=True)
class BundlePlan:
    """What ``make_bundle`` will pack, sorted by path; built by ``plan_bundle``."""

    root: Path
    files: tuple[BundleFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def largest(self, n: int = 5) -> list[BundleFile]:
        return sorted(self.files, key=lambda f: (-f.size, f.path))[:n]

    def to_json(self, largest: int = 5) -> dict[str, Any]:
        return {"path": str(self.root), "count": len(self.files), "size": self.size,
                "files": [{"path": f.path, "size": f.size} for f in self.files],
                "largest": [{"path": f.path, "size": f.size} for f in self.largest(largest)]}

    def totals(self) -> str:
        """``3 files, 2.1 KiB``."""
        count = len(self.files)
        return f"{count} file{'' if count == 1 else 's'}, {human_size(self.size)}"

    def summary(self) -> str:
        """``bundled 3 files, 2.1 KiB (largest: app.py, 1.9 KiB)``."""
        top = self.largest(1)
        biggest = f" (largest: {top[0].path}, {human_size(top[0].size)})" if top else ""
        return f"bundled {self.totals()}{biggest}"


def human_size(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``20.0 MiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(list(lines))


@dataclass(frozen=True)
class _Rules:
    """The patterns of one ignore file (or list), relative to the folder ``base``."""

    base: str                 # path inside the bundle, "" for its root
    spec: pathspec.GitIgnoreSpec

    def verdict(self, path: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included by a `!` pattern, None: not mentioned."""
        rel = path[len(self.base) + 1:] if self.base else path
        result = self.spec.check_file(rel + "/" if is_dir else rel)
        return None if result.include is None else bool(result.include)


def _data_dir_marker(folder: Path) -> str | None:
    """Why ``folder`` is a leptonic data dir (one of its files next to ``artifacts/`` or
    ``logs/``), or None. Files alone are refused by name where they would be bundled."""
    try:
        found = sorted(n for n in DATA_DIR_FILES if (folder / n).is_file())
        if found and any((folder / d).is_dir() for d in _DATA_DIR_FOLDERS):
            return found[0]
    except OSError:
        return None
    return None


class _Planner:
    def __init__(self, root: Path, include: Iterable[str], data_dir: Path | None) -> None:
        self.root = root
        self.include = _Rules("", _spec(include))
        self.defaults = _Rules("", _spec(DEFAULT_EXCLUDES))
        self.data_dir = (data_dir if data_dir is not None else default_data_dir()).resolve()
        self.files: list[BundleFile] = []

    def data_dir_reason(self, real: Path) -> str | None:
        if real == self.data_dir or real.is_relative_to(self.data_dir):
            return "the data dir of the platform this client uses"
        marker = _data_dir_marker(real)
        return None if marker is None else f"a leptonic data dir (it holds {marker})"

    def check_folder(self, real: Path, path: str) -> None:
        reason = self.data_dir_reason(real)
        if reason is None:
            return
        what = f"{path}/ in {self.root}" if path else str(real)
        leave_out = ", or leave it out with a line in .leptonicignore" if path else ""
        raise InvalidInput(
            f"refusing to bundle {what}: it is {reason}, and would ship the platform's "
            "admin token, secret key and database; keep the data dir outside the code "
            f"folder (leptonic up --data-dir DIR){leave_out}")

    def check_file(self, real: Path, path: str) -> None:
        for name in {real.name, PurePosixPath(path).name} & DATA_DIR_FILES:
            raise InvalidInput(
                f"refusing to bundle {path}: {name} is a leptonic data-dir file (the "
                "platform's token, key or database); move it out of the folder or leave it "
                "out with a line in .leptonicignore")

    def ignored(self, path: str, is_dir: bool, git: list[_Rules], lep: list[_Rules]) -> bool:
        # highest precedence first: include=, .leptonicignore (deepest first), the
        # defaults, .gitignore (deepest first); the first that mentions the path decides
        if self.include.verdict(path, is_dir):
            return False
        for rules in (*reversed(lep), self.defaults, *reversed(git)):
            verdict = rules.verdict(path, is_dir)
            if verdict is not None:
                return verdict
        return False

    def walk(self, real: Path, path: str, git: list[_Rules], lep: list[_Rules],
             seen: frozenset[Path]) -> None:
        self.check_folder(real, path)
        for name, stack in zip(IGNORE_FILES, (git, lep), strict=True):
            ignore_file = real / name
            if ignore_file.is_file():
                lines = ignore_file.read_text(errors="replace").splitlines()
                stack = [*stack, _Rules(path, _spec(lines))]
            if name == ".gitignore":
                git = stack
            else:
                lep = stack
        with os.scandir(real) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            sub = f"{path}/{entry.name}" if path else entry.name
            is_dir = entry.is_dir()                # follows links, like is_file below
            if self.ignored(sub, is_dir, git, lep):
                continue
            source = Path(entry.path)
            if entry.is_symlink():
                target = self.link_target(source, sub)
                if target is None:
                    continue                       # dangling (an editor's lock file)
                source = target
            if is_dir:
                if source in seen:
                    raise InvalidInput(f"refusing to bundle {sub}: it is a symlink to "
                                       f"{source}, a folder that holds it (a loop)")
                self.walk(source, sub, git, lep, seen | {source})
            elif source.is_file():                 # sockets, fifos and devices are skipped
                self.check_file(source, sub)
                st = source.stat()
                self.files.append(BundleFile(sub, source, st.st_size,
                                             os.access(source, os.X_OK)))

    def link_target(self, link: Path, path: str) -> Path | None:
        try:
            target = link.resolve()
        except (OSError, RuntimeError):            # a loop of links
            return None
        if not target.exists():
            return None
        if not target.is_relative_to(self.root):
            raise InvalidInput(
                f"refusing to bundle {path}: it is a symlink to {target}, outside "
                f"{self.root}; copy what it points to into the folder, or leave the link "
                "out with a line in .leptonicignore")
        # a link into a data dir elsewhere in the folder is that data dir's file
        for folder in (target, *target.parents):
            if folder == self.root or not folder.is_relative_to(self.root):
                break
            if folder.is_dir():
                self.check_folder(folder, folder.relative_to(self.root).as_posix())
        return target


def plan_bundle(path: str | os.PathLike[str], include: Iterable[str] = (), *,
                data_dir: str | os.PathLike[str] | None = None) -> BundlePlan:
    """What a bundle of ``path`` (a folder, or one file under its name) holds.

    Leaves out what the folder's ``.gitignore`` and ``.leptonicignore`` files ignore and
    ``DEFAULT_EXCLUDES``; ``include`` (gitignore patterns) brings such files or folders
    back. A symlink inside the folder is bundled as the file it points to. Raises
    ``InvalidInput`` for a path that is not there, a symlink leading outside the folder,
    and a leptonic data dir or data-dir file (``data_dir``, default the one
    ``LEPTONIC_DATA_DIR`` names, counts as one wherever it is).
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise InvalidInput(f"no such file or folder: {src}")
    planner = _Planner(src.resolve(), include,
                       Path(data_dir).expanduser() if data_dir is not None else None)
    if src.is_file():
        real = src.resolve()
        if (reason := planner.data_dir_reason(real.parent)) is not None:
            raise InvalidInput(f"refusing to bundle {src}: it lies in {reason}; photon code "
                               "does not belong in a data dir")
        planner.check_file(real, src.name)
        st = real.stat()
        planner.files.append(BundleFile(src.name, real, st.st_size, os.access(real, os.X_OK)))
    elif src.is_dir():
        planner.walk(planner.root, "", [], [], frozenset({planner.root}))
    else:
        raise InvalidInput(f"{src} is neither a file nor a folder")
    return BundlePlan(src.resolve(), tuple(sorted(planner.files, key=lambda f: f.path)))


def make_bundle(path: str | os.PathLike[str] | BundlePlan, include: Iterable[str] = (), *,
                data_dir: str | os.PathLike[str] | None = None) -> bytes:
    """A ``.tar.gz`` of a folder (paths relative to it) or of one file (under its name):
    the files ``plan_bundle`` lists (``path`` may be such a plan already).

    The archive is deterministic (sorted, zero mtimes and owners), so the same code gives
    the same bytes. It holds regular files only: no links, no folders.
    """
    plan = path if isinstance(path, BundlePlan) else plan_bundle(path, include,
                                                                 data_dir=data_dir)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in plan.files:
            data = file.source.read_bytes()
            info = tarfile.TarInfo(file.path)
            info.size = len(data)
            info.mode = 0o755 if file.executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- server-sent events ---------------------------------------------------------------------

@dataclass
class SSEDecoder:
    """Turns the lines of a ``text/event-stream`` into its ``data:`` items, JSON-decoded
    where they are JSON. Feed it one line at a time (without the newline)."""

    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> list[Any]:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return []                                  # a comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return []                                      # event:, id:, retry: are not data

    def flush(self) -> list[Any]:
        if not self._data:
            return []
        text = "\n".join(self._data)
        self._data = []
        try:
            return [json.loads(text)]
        except ValueError:
            return [text]


def parse_sse(lines: Iterable[str]) -> Iterator[Any]:
    """The decoded ``data:`` items of an event stream given as lines."""
    decoder = SSEDecoder()
    for line in lines:
        yield from decoder.feed(line)
    yield from decoder.flush()


def is_event_stream(resp: httpx.Response) -> bool:
    return str(resp.headers.get("content-type", "")).startswith("text/event-stream")


def decode_body(resp: httpx.Response) -> Any:
    """A handler's (non-streaming) answer: JSON when it is JSON, else text."""
    if not resp.content:
        return None
    if "json" in resp.headers.get("content-type", ""):
        return resp.json()
    try:
        return resp.json()
    except ValueError:
        return resp.text


# -- readiness ------------------------------------------------------------------------------

def check_ready(dep: Deployment) -> bool:
    """Whether the controller has seen this generation and all desired replicas are ready.

    Raises ``DeploymentFailed`` when the current generation is crash-looping.
    """
    st = dep.status
    current = st.observed_generation >= dep.generation
    if current and st.phase is DeploymentPhase.CRASH_LOOP:
        reason = st.last_error or st.message or "its replicas keep failing"
        raise DeploymentFailed(f"deployment {dep.name} is crash-looping: {reason.strip()}",
                               deployment=dep.name)
    if not current or dep.deleting:
        return False
    # an autoscaled deployment is ready at the count the autoscaler asked for
    desired = dep.desired_replicas
    if desired == 0:
        return st.phase is DeploymentPhase.STOPPED or st.replicas == 0
    return st.phase is DeploymentPhase.READY and st.ready_replicas >= desired


def timeout_error(dep: Deployment | None, name: str, timeout: float) -> WaitTimeout:
    progress = ""
    if dep is not None:
        st = dep.status
        progress = (f" ({st.ready_replicas}/{dep.desired_replicas} replicas ready, "
                    f"phase {st.phase}")
        progress += f": {st.message})" if st.message else ")"
    return WaitTimeout(f"deployment {name} was not ready after {timeout:g}s{progress}",
                       deployment=name)


# -- requests -------------------------------------------------------------------------------

class PhotonInfo(BaseModel):
    """``GET /photons/{name}``: a photon and all its versions, oldest first."""

    name: str
    versions: list[PhotonVersion]

    @property
    def latest(self) -> PhotonVersion:
        return self.versions[-1]


def _json(resp: httpx.Response) -> Any:
    return resp.json() if resp.content else None


def _none(resp: httpx.Response) -> None:
    return None


def _text(resp: httpx.Response) -> str:
    return resp.text


def _model(kind: Any) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    return lambda resp: adapter.validate_python(resp.json())


@dataclass(frozen=True)
class Call:
    """One API request and how to decode its (successful) response."""

    method: str
    path: str                                   # under /api/v1
    parse: Callable[[httpx.Response], Any] = _json
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    # at least this long to wait for the answer, whatever the client's own timeout: for
    # calls the server itself may take long over (inspecting a photon)
    min_timeout_s: float | None = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        extra: dict[str, Any] = {}
        if self.min_timeout_s is not None:
            current = http.timeout.read
            if current is not None and current < self.min_timeout_s:
                extra["timeout"] = httpx.Timeout(self.min_timeout_s)
        return http.build_request(self.method, API_PREFIX + self.path, params=params or None,
                                  json=self.json, data=self.data, files=self.files, **extra)


def _seg(name: str) -> str:
    """A name as one URL path segment (names are slugs; this keeps odd input harmless)."""
    from urllib.parse import quote

    return quote(name, safe="")


def logs_call(name: str, tail: int | None = 200, replica: str | None = None,
              follow: bool = False, grep: str | None = None, ignore_case: bool = False) -> Call:
    params: dict[str, Any] = {"tail": tail, "replica": replica, "grep": grep}
    if ignore_case:
        params["ignore_case"] = "true"
    if follow:
        params["follow"] = "true"
    return Call("GET", f"/deployments/{_seg(name)}/logs", _text, params=params)


class _API:
    """The API methods, shared by ``Client`` and ``AsyncClient``.

    With ``Client`` each returns its value; with ``AsyncClient`` each returns an awaitable
    of it. Objects come back as the models of ``leptonic.core.models``; ``status()`` as a
    dict.
    """

    def _run(self, call: Call) -> Any:  # pragma: no cover - provided by the clients
        raise NotImplementedError

    # status
    def status(self) -> Any:
        """``GET /status``: version, leader, database, runtime, data_dir (a dict)."""
        return self._run(Call("GET", "/status"))

    # photons
    def create_photon(self, name: str, entry: str,
                      path: str | os.PathLike[str] | BundlePlan = ".", *,
                      include: Iterable[str] = ()) -> Any:
        """Bundle ``path`` (a folder or one file, or a ``plan_bundle`` of one) and store it
        as a new version of photon ``name`` served by ``entry`` (``app.py:Echo``) ->
        ``PhotonVersion``. What ``.gitignore``/``.leptonicignore`` or the defaults leave out
        stays out unless ``include`` (gitignore patterns, e.g. ``[".env"]``) names it."""
        bundle = make_bundle(path, include)
        return self._run(Call("POST", "/photons", _model(PhotonVersion),
                              data={"name": name, "entry": entry},
                              files={"file": ("bundle.tar.gz", bundle, "application/gzip")},
                              # the server inspects for up to INSPECT_TIMEOUT_S, plus upload
                              min_timeout_s=INSPECT_TIMEOUT_S + 30))

    def list_photons(self) -> Any:
        """The latest version of every photon -> ``list[PhotonVersion]``."""
        return self._run(Call("GET", "/photons", _model(list[PhotonVersion])))

    def get_photon(self, name: str) -> Any:
        """A photon with all its versions -> ``PhotonInfo``."""
        return self._run(Call("GET", f"/photons/{_seg(name)}", _model(PhotonInfo)))

    def get_photon_version(self, name: str, version: int) -> Any:
        """One version of a photon -> ``PhotonVersion``."""
        return self._run(Call("GET", f"/photons/{_seg(name)}/versions/{int(version)}",
                              _model(PhotonVersion)))

    def delete_photon(self, name: str) -> Any:
        """Delete a photon and all its versions (409 while a deployment uses it)."""
        return self._run(Call("DELETE", f"/photons/{_seg(name)}", _none))

    # deployments
    def create_deployment(self, name: str, photon: str | None = None, replicas: int = 1,
                          env: Mapping[str, str] | None = None, *,
                          secrets: Iterable[str] = (), public: bool = False,
                          **spec: Any) -> Any:
        """Deploy ``photon`` (``NAME``, ``NAME@N``, ``builtin:NAME``), or a registered
        model with ``model="NAME@champion"`` (or ``NAME@3``), -> ``Deployment``.
        ``secrets`` are injected into the replicas as environment variables by name;
        ``public`` serves ``/run/NAME`` without a token; further spec fields pass through."""
        body = {"name": name, "replicas": replicas, "env": dict(env or {}),
                **({"photon": photon} if photon is not None else {}),
                "secrets": list(secrets), "public": public,
                **{k: v for k, v in spec.items() if v is not None}}
        return self._run(Call("POST", "/deployments", _model(Deployment), json=body))

    def list_deployments(self) -> Any:
        """-> ``list[Deployment]``."""
        return self._run(Call("GET", "/deployments", _model(list[Deployment])))

    def get_deployment(self, name: str) -> Any:
        """-> ``Deployment``."""
        return self._run(Call("GET", f"/deployments/{_seg(name)}", _model(Deployment)))

    def update_deployment(self, name: str, *, no_autoscaling: bool = False,
                          expected_generation: int | None = None, **fields: Any) -> Any:
        """Change any of ``replicas``, ``photon``, ``env``, ``strategy``, ``autoscaling``,
        ``probes``, ``resources``, ``placement``... (PATCH; the fields given of these
        objects replace the current ones) -> ``Deployment``. A changed photon or env
        is rolled out by the deployment's strategy.

        The server merges the fields given into the spec as it is when it writes, so
        concurrent changes of different fields all apply. With ``expected_generation``
        (the ``generation`` of the deployment you read) the change applies only if no
        other landed since; else ``leptonic.errors.Conflict`` (409): read it again and
        decide."""
        body = {k: v for k, v in fields.items() if v is not None}
        if no_autoscaling:
            body["autoscaling"] = None
        if expected_generation is not None:
            body["expected_generation"] = expected_generation
        return self._run(Call("PATCH", f"/deployments/{_seg(name)}", _model(Deployment),
                              json=body))

    # rollouts
    def get_rollout(self, name: str) -> Any:
        """The latest rollout of a deployment: phase, step, weights, analysis -> ``Rollout``."""
        return self._run(Call("GET", f"/deployments/{_seg(name)}/rollout", _model(Rollout)))

    def pause_rollout(self, name: str) -> Any:
        return self._run(Call("POST", f"/deployments/{_seg(name)}/rollout/pause",
                              _model(Rollout)))

    def resume_rollout(self, name: str) -> Any:
        return self._run(Call("POST", f"/deployments/{_seg(name)}/rollout/resume",
                              _model(Rollout)))

    def promote_rollout(self, name: str) -> Any:
        """Skip the remaining steps and checks: all traffic to the new version."""
        return self._run(Call("POST", f"/deployments/{_seg(name)}/rollout/promote",
                              _model(Rollout)))

    def abort_rollout(self, name: str) -> Any:
        """Go back to the stable version (the spec still asks for the new one)."""
        return self._run(Call("POST", f"/deployments/{_seg(name)}/rollout/abort",
                              _model(Rollout)))

    def rollback(self, name: str) -> Any:
        """Ask for the version that served before the latest rollout -> ``Deployment``."""
        return self._run(Call("POST", f"/deployments/{_seg(name)}/rollback",
                              _model(Deployment)))

    def routes(self, name: str) -> Any:
        """The gateway's current route of a deployment (replicas, weights, held requests)
        as a dict."""
        return self._run(Call("GET", f"/deployments/{_seg(name)}/routes"))

    def delete_deployment(self, name: str) -> Any:
        """Ask for the deployment to be removed -> ``Deployment`` (phase ``Deleting``)."""
        return self._run(Call("DELETE", f"/deployments/{_seg(name)}", _model(Deployment)))

    def feedback(self, name: str, items: Iterable[Any]) -> Any:
        """Send the truth of earlier answers of a model deployment: ``items`` are
        ``(request_id, truth)`` pairs or ``{"request_id", "truth"}`` dicts (the request id
        is the answer's ``x-leptonic-request-id``, see ``Client.call_traced``) -> a dict
        of how many ``matched``, were ``unknown``, ``expired`` or a ``duplicate``."""
        body = [i if isinstance(i, Mapping) else {"request_id": i[0], "truth": i[1]}
                for i in items]
        return self._run(Call("POST", f"/deployments/{_seg(name)}/feedback",
                              json={"items": body}, min_timeout_s=120))

    def model_metrics(self, name: str, window: str = "1h") -> Any:
        """Live accuracy, F1, counts and drift of a model deployment -> dict."""
        return self._run(Call("GET", f"/deployments/{_seg(name)}/model-metrics",
                              params={"window": window}))

    def replicas(self, name: str) -> Any:
        """The replicas of a deployment -> ``list[Replica]``."""
        return self._run(Call("GET", f"/deployments/{_seg(name)}/replicas",
                              _model(list[Replica])))

    def list_replicas(self, deployment: str | None = None) -> Any:
        """All replicas, or those of one deployment -> ``list[Replica]``."""
        return self._run(Call("GET", "/replicas", _model(list[Replica]),
                              params={"deployment": deployment}))

    def events(self, name: str, limit: int = 100) -> Any:
        """The events of a deployment -> ``list[Event]``."""
        return self._run(Call("GET", f"/deployments/{_seg(name)}/events",
                              _model(list[Event]), params={"limit": limit}))

    # nodes
    def list_nodes(self) -> Any:
        """The nodes replicas may run on, with tier, capacity, what is allocated and their
        state (``Ready``, ``NotReady``, ``Cordoned``, ``Draining``) -> ``list[Node]``."""
        return self._run(Call("GET", "/nodes", _model(list[Node])))

    def get_node(self, name: str) -> Any:
        """A node by name or runtime id (or a unique prefix of it) -> ``Node``."""
        return self._run(Call("GET", f"/nodes/{_seg(name)}", _model(Node)))

    def cordon_node(self, name: str) -> Any:
        """No new replicas on the node; those it runs stay -> ``Node``."""
        return self._run(Call("POST", f"/nodes/{_seg(name)}/cordon", _model(Node)))

    def uncordon_node(self, name: str) -> Any:
        """Let the node take new replicas again (ends a drain too) -> ``Node``."""
        return self._run(Call("POST", f"/nodes/{_seg(name)}/uncordon", _model(Node)))

    def drain_node(self, name: str) -> Any:
        """Cordon the node and move its replicas to other nodes -> ``Node``."""
        return self._run(Call("POST", f"/nodes/{_seg(name)}/drain", _model(Node)))

    def node_power(self, name: str) -> Any:
        """The node's power model, override, source (``rapl``, ``override``, ``model``) and
        watts now -> dict."""
        return self._run(Call("GET", f"/nodes/{_seg(name)}/power"))

    def set_node_power(self, name: str, **override: Any) -> Any:
        """Replace the node's power override (``idle_w``/``max_w`` or ``table`` of 11
        points, ``gpu_idle_w``/``gpu_max_w`` or ``gpu_table``, ``standby_w``, ``wake_s``)
        -> dict as :meth:`node_power`."""
        return self._run(Call("PUT", f"/nodes/{_seg(name)}/power",
                              json={k: v for k, v in override.items() if v is not None}))

    def reset_node_power(self, name: str) -> Any:
        """Drop the node's power override (its defaults again) -> dict."""
        return self._run(Call("DELETE", f"/nodes/{_seg(name)}/power"))

    # energy
    def energy(self, since: str = "1h") -> Any:
        """kWh per node and deployment over the last ``since``; watts and source per node
        -> dict."""
        return self._run(Call("GET", "/energy", params={"since": since}))

    # usage, prices, budgets
    def usage(self, since: str = "30d", *, by: str = "deployment",
              until: str | None = None) -> Any:
        """Replica- and resource-seconds, requests and cost per ``by`` (deployment, job,
        user, node, label:KEY), with totals and idle cost -> dict."""
        params = {"since": since, "by": by} | ({"until": until} if until else {})
        return self._run(Call("GET", "/usage", params=params))

    def usage_runs(self, owner: str | None = None) -> Any:
        """The usage record of each run (replica process, job attempt) -> list[dict]."""
        return self._run(Call("GET", "/usage/runs",
                              params={"owner": owner} if owner else None))

    def usage_events(self, since: str = "1d", *, until: str | None = None,
                     complete: bool = True) -> Any:
        """The usage buckets as CloudEvents 1.0 (one per run and hour) -> list[dict]."""
        params: dict[str, Any] = {"since": since, "complete": complete}
        if until:
            params["until"] = until
        return self._run(Call("GET", "/usage/events", params=params))

    def prices(self) -> Any:
        """Every price in force (defaults and what was set) -> list[dict]."""
        return self._run(Call("GET", "/prices"))

    def set_price(self, resource: str, price: float) -> Any:
        """Set the price of ``cpu``, ``memory``, ``gpu``, ``gpu:MODEL`` or ``energy``."""
        return self._run(Call("PUT", f"/prices/{_seg(resource)}", json={"price": price}))

    def reset_price(self, resource: str) -> Any:
        return self._run(Call("DELETE", f"/prices/{_seg(resource)}", _none))

    def create_budget(self, name: str, scope: str, monthly: float, *,
                      alerts: Iterable[float] = (80, 100), action: str = "notify",
                      notify: Iterable[str] = ()) -> Any:
        """A monthly budget of ``scope`` (all, deployment:X, job:X, user:X, label:K=V)."""
        return self._run(Call("POST", "/budgets", json={
            "name": name, "scope": scope, "monthly": monthly, "alerts": list(alerts),
            "action": action, "notify": list(notify)}))

    def budgets(self) -> Any:
        return self._run(Call("GET", "/budgets"))

    def budget(self, name: str) -> Any:
        return self._run(Call("GET", f"/budgets/{_seg(name)}"))

    def delete_budget(self, name: str) -> Any:
        return self._run(Call("DELETE", f"/budgets/{_seg(name)}", _none))

    # auth: sessions, users, tokens, secrets, audit
    def login(self, username: str, password: str) -> Any:
        """Trade a password for a session token -> ``{"token", "expires_at", ...}``."""
        return self._run(Call("POST", "/auth/login",
                              json={"username": username, "password": password}))

    def logout(self) -> Any:
        return self._run(Call("POST", "/auth/logout", _none))

    def whoami(self) -> Any:
        return self._run(Call("GET", "/auth/whoami"))

    def register(self, invitation: str, username: str, password: str) -> Any:
        return self._run(Call("POST", "/auth/register", json={
            "invitation": invitation, "username": username, "password": password}))

    def create_user(self, username: str, password: str, role: str = "viewer") -> Any:
        return self._run(Call("POST", "/users", json={
            "username": username, "password": password, "role": role}))

    def list_users(self) -> Any:
        return self._run(Call("GET", "/users"))

    def update_user(self, username: str, **fields: Any) -> Any:
        body = {k: v for k, v in fields.items() if v is not None}
        return self._run(Call("PATCH", f"/users/{_seg(username)}", json=body))

    def delete_user(self, username: str) -> Any:
        return self._run(Call("DELETE", f"/users/{_seg(username)}", _none))

    def create_invitation(self, role: str = "viewer", expires_in_s: float | None = None) -> Any:
        body: dict[str, Any] = {"role": role}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return self._run(Call("POST", "/invitations", json=body))

    def create_token(self, name: str, role: str = "viewer", *,
                     expires_in_s: float | None = None, deployment: str | None = None,
                     rate_limit_rps: float | None = None) -> Any:
        """A new API token (its clear value is in the answer, once)."""
        body = {"name": name, "role": role, "expires_in_s": expires_in_s,
                "deployment": deployment, "rate_limit_rps": rate_limit_rps}
        return self._run(Call("POST", "/tokens",
                              json={k: v for k, v in body.items() if v is not None}))

    def list_tokens(self) -> Any:
        return self._run(Call("GET", "/tokens"))

    def revoke_token(self, token_id: int) -> Any:
        return self._run(Call("DELETE", f"/tokens/{int(token_id)}", _none))

    def create_secret(self, name: str, value: str) -> Any:
        return self._run(Call("POST", "/secrets", json={"name": name, "value": value}))

    def update_secret(self, name: str, value: str) -> Any:
        return self._run(Call("PUT", f"/secrets/{_seg(name)}", json={"value": value}))

    def list_secrets(self) -> Any:
        return self._run(Call("GET", "/secrets"))

    def delete_secret(self, name: str) -> Any:
        return self._run(Call("DELETE", f"/secrets/{_seg(name)}", _none))

    def audit(self, limit: int = 100, actor: str | None = None) -> Any:
        return self._run(Call("GET", "/audit", params={"limit": limit, "actor": actor}))

    def logs(self, name: str, tail: int | None = 200, replica: str | None = None,
             grep: str | None = None, ignore_case: bool = False) -> Any:
        """The last ``tail`` log lines of a deployment's replicas (only those matching the
        regular expression ``grep`` when given), each prefixed ``[replica-id] `` -> ``str``."""
        return self._run(logs_call(name, tail, replica, grep=grep, ignore_case=ignore_case))

    # metrics and alerts
    def metrics(self, deployment: str | None = None, *, node: str | None = None,
                metrics: Iterable[str] | None = None, since: str = "1h",
                resolution: int | None = None) -> Any:
        """Built-in time series of a deployment (or ``node``) -> ``SeriesResult``."""
        from leptonic.core.observe import SeriesResult

        names = ",".join(metrics) if metrics else None
        return self._run(Call("GET", "/metrics/query", _model(SeriesResult), params={
            "deployment": deployment, "node": node, "metrics": names, "since": since,
            "resolution": resolution}))

    def latest_metrics(self) -> Any:
        """The newest sample of every deployment and node -> dict."""
        return self._run(Call("GET", "/metrics/latest"))

    def create_alert(self, expr: str, *, deployment: str | None = None,
                     for_: str | float = "0s", notify: Iterable[str] = (),
                     name: str | None = None, severity: str = "warning",
                     description: str = "") -> Any:
        """Create an alert rule (``expr`` like ``p99_latency_ms > 500``) -> ``AlertView``."""
        from leptonic.core.observe import AlertView

        body = {"expr": expr, "deployment": deployment, "for": for_, "notify": list(notify),
                "name": name, "severity": severity, "description": description}
        return self._run(Call("POST", "/alerts", _model(AlertView),
                              json={k: v for k, v in body.items() if v is not None}))

    def list_alerts(self) -> Any:
        """-> ``list[AlertView]`` with each rule's state per target."""
        from leptonic.core.observe import AlertView

        return self._run(Call("GET", "/alerts", _model(list[AlertView])))

    def get_alert(self, name: str) -> Any:
        from leptonic.core.observe import AlertView

        return self._run(Call("GET", f"/alerts/{_seg(name)}", _model(AlertView)))

    def delete_alert(self, name: str) -> Any:
        return self._run(Call("DELETE", f"/alerts/{_seg(name)}", _none))

    def alert_notifications(self, name: str, limit: int = 100) -> Any:
        """The notifications an alert rule sent, newest first -> ``list[Notification]``."""
        from leptonic.core.observe import Notification

        return self._run(Call("GET", f"/alerts/{_seg(name)}/notifications",
                              _model(list[Notification]), params={"limit": limit}))
