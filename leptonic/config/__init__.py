"""Platform settings and the data-directory layout, in one place.

Every path under the data directory is named here so the CLI, the client, the API and the
runtime agree on where things live.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from leptonic.config.observe import ObserveSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024        # requests through API and gateway
DEFAULT_MAX_BUNDLE_BYTES = 100 * 1024 * 1024     # photon bundle uploads
INSPECT_TIMEOUT_S = 60.0       # importing an uploaded photon at create time


def default_data_dir() -> Path:
    """``$LEPTONIC_DATA_DIR``, else ``~/.leptonic``."""
    env = os.environ.get("LEPTONIC_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".leptonic"


@dataclass(frozen=True)
class DataDir:
    """The layout of a platform's data directory."""

    root: Path

    @property
    def admin_token(self) -> Path:        # mode 0600, written on first start
        return self.root / "admin-token"

    @property
    def endpoint(self) -> Path:           # "http://HOST:PORT" of the running platform
        return self.root / "endpoint"

    @property
    def database(self) -> Path:
        return self.root / "leptonic.db"

    @property
    def artifacts(self) -> Path:          # content-addressed photon bundles: <sha256>/
        return self.root / "artifacts"

    @property
    def models(self) -> Path:             # registered model artifacts: <model>/<version>/
        return self.root / "models"

    @property
    def logs(self) -> Path:               # one file per replica: <replica-id>.log
        return self.root / "logs"

    @property
    def pidfile(self) -> Path:
        return self.root / "leptonic.pid"

    def ensure(self) -> DataDir:
        """Create the layout; the data dir is the platform's alone: folders 0700 and
        files 0600 (also those an older version left readable)."""
        for path in (self.root, self.artifacts, self.logs):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames:
                _tighten(os.path.join(dirpath, name), 0o700)
            for name in filenames:
                _tighten(os.path.join(dirpath, name), 0o600)
        return self


def _tighten(path: str, mode: int) -> None:
    try:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & ~mode:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    except OSError:
        pass


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None       # default: sqlite in the data dir
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    runtime: str = "local"              # "local" (subprocesses) | "ray" (a Ray cluster)
    ray_address: str | None = None      # HOST:PORT of the cluster; None: start a local head
    # how user code is isolated (see runtime/isolation.py)
    isolation: str = "auto"
    run_as: str | None = None           # one user for all user code (root only)
    work_dir: Path | None = None        # replicas' work dirs (default: outside the data dir)
    # leadership among control planes sharing one database (see controller/leader.py)
    lease_s: float = field(default_factory=lambda: float(
        os.environ.get("LEPTONIC_LEASE_SECONDS", "10")))
    observe: ObserveSettings = field(default_factory=ObserveSettings.from_env)
    # consolidation (controller/consolidation.py): how often to look for a node to empty,
    # how long a node with nothing placed waits before standby, how many moves an hour
    consolidate_period_s: float = field(default_factory=lambda: float(
        os.environ.get("LEPTONIC_CONSOLIDATE_PERIOD_S", "30")))
    standby_after_s: float = field(default_factory=lambda: float(
        os.environ.get("LEPTONIC_STANDBY_AFTER_S", "120")))
    max_moves_per_hour: int = field(default_factory=lambda: int(
        os.environ.get("LEPTONIC_MAX_MOVES_PER_HOUR", "6")))

    @property
    def layout(self) -> DataDir:
        return DataDir(Path(self.data_dir))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.layout.database}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
