"""The replica actor of the Ray runtime: the photon runner serving HTTP inside a Ray actor.

The actor unpacks the bundle it was handed through the object store (never a shared
filesystem) into a folder of its own on its node, sets its environment, loads the photon
and serves it with uvicorn on its node's address, in the actor's own process: when the node
goes, so does the replica; nothing of it can outlive its raylet. The gateway talks to it
straight over HTTP (no Ray proxy hop). What it prints goes to a log file the control
plane ships home (:meth:`ReplicaActor.read_log`).

Ray imports this module in its worker processes, so it must import without side effects.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("leptonic.runtime.ray_replica")

MAX_LOG_CHUNK = 1 << 20


class ReplicaActor:
    """One replica. Created detached and named, so a restarted control plane finds it."""

    def __init__(self, replica_id: str, deployment: str, entry: str, bundle: bytes | None,
                 env: dict[str, str], host: str, options: dict[str, Any]) -> None:
        self.replica_id = replica_id
        self.deployment = deployment
        self.entry = entry
        self.host = host
        self.options = options
        self.root = Path(tempfile.mkdtemp(prefix=f"leptonic-{replica_id}-"))
        self.log_path = self.root / "replica.log"
        self.bundle_dir: Path | None = None
        if bundle is not None:
            from leptonic.store.artifacts import extract_bundle

            self.bundle_dir = self.root / "bundle"
            self.bundle_dir.mkdir()
            extract_bundle(io.BytesIO(bundle), self.bundle_dir, max_bytes=1 << 31)
        home = self.root / "home"
        home.mkdir()
        # the replica's own environment, before any of its code is imported
        for key in [k for k in os.environ if k.startswith("LEPTONIC_")]:
            del os.environ[key]
        os.environ.update(env)
        os.environ.update({"LEPTONIC_REPLICA_ID": replica_id,
                           "LEPTONIC_DEPLOYMENT": deployment, "HOME": str(home),
                           "TMPDIR": str(home), "PYTHONUNBUFFERED": "1"})
        self.server: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.port = 0
        self.error: str | None = None
        self._out = self.log_path.open("ab", buffering=0)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Load the photon and start serving; returns where (once the port listens)."""
        import uvicorn

        from leptonic.photon.loader import load_photon_class
        from leptonic.photon.runner import build_app
        from leptonic.runtime.isolation import apply_limits

        self._redirect()
        opts = self.options
        apply_limits(opts.get("open_files"), None)
        self._line(f"--- leptonic: starting replica {self.replica_id} on {self.host} "
                   f"(ray actor pid {os.getpid()})")
        if self.bundle_dir is not None:
            os.chdir(self.bundle_dir)
        cls = await asyncio.to_thread(load_photon_class, self.entry,
                                      str(self.bundle_dir) if self.bundle_dir else None)
        photon = await asyncio.to_thread(cls)
        app = build_app(photon, replica_id=self.replica_id,
                        handler_timeout_s=opts.get("handler_timeout_s") or 60.0,
                        max_concurrency=opts.get("max_concurrency") or 64,
                        debug_errors=bool(opts.get("debug_errors")),
                        on_init_error=self._init_failed)
        sock = _bind(self.host)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="on", access_log=False, log_level="warning",
                                http="httptools", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                raise RuntimeError(f"replica {self.replica_id} could not serve: "
                                   f"{self.task.exception()!r}")
            await asyncio.sleep(0.01)
        self._line(f"--- leptonic: serving at http://{self.host}:{self.port}")
        return {"port": self.port, "pid": os.getpid(), "host": self.host}

    def _init_failed(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        if self.server is not None:
            self.server.should_exit = True

    async def wait(self) -> str:
        """Returns when the replica stops serving (its init failed, or it was stopped);
        a control plane keeps one call outstanding to learn of the actor's death."""
        if self.task is None:
            return "not started"
        await asyncio.shield(self.task)
        return self.error or "stopped"

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), grace_s)
            except TimeoutError:
                self.server.force_exit = True
        shutil.rmtree(self.root / "bundle", ignore_errors=True)

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> str:
        return self.replica_id

    # -- logs --------------------------------------------------------------------------------
    def read_log(self, offset: int) -> tuple[int, bytes]:
        """Bytes of the replica's log from ``offset`` (at most 1 MiB); the new offset."""
        try:
            with self.log_path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset > size:       # rotated under us: start again
                    offset = 0
                f.seek(offset)
                data = f.read(MAX_LOG_CHUNK)
        except OSError:
            return offset, b""
        return offset + len(data), data

    def _redirect(self) -> None:
        """The replica's stdout, stderr and logging go to its own log file."""
        fd = self._out.fileno()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)

    def _line(self, text: str) -> None:
        self._out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())


def _bind(host: str) -> socket.socket:
    """A listening socket on a free port of ``host`` (bound here, so no race for it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    sock.setblocking(False)
    return sock
