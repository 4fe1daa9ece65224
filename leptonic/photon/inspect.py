"""Inspect a photon bundle in a child process: load the class, validate it, print its manifest.

User code runs at import time, so the control plane never imports a bundle itself; it
calls :func:`inspect_bundle`, which runs ``python -m leptonic.photon.inspect`` in the
bundle directory and reads the manifest (or the error) from the child's stdout. ``init()``
is not called: inspecting must be quick and must not load models.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import leptonic
from leptonic.config import INSPECT_TIMEOUT_S
from leptonic.errors import PhotonDefinitionError
from leptonic.photon.photon import PhotonManifest

if TYPE_CHECKING:
    from leptonic.runtime.isolation import Isolation

EXIT_DEFINITION_ERROR = 2



def inspect_bundle(bundle_dir: str | Path | None, entry: str,
                   timeout_s: float = INSPECT_TIMEOUT_S,
                   isolation: Isolation | None = None) -> PhotonManifest:
    """Describe the photon ``entry`` of ``bundle_dir`` from a subprocess.

    With ``isolation`` the child runs as user code does (own user, sandbox, a copy of the
    bundle in a work dir outside the data dir, a clean environment). Raises
    PhotonDefinitionError with the child's message, else the last line it wrote to
    stderr, or a timeout message.
    """
    base = [sys.executable, "-m", "leptonic.photon.inspect", "--entry", entry]
    if isolation is None:
        cmd = base + (["--bundle", str(Path(bundle_dir).resolve())] if bundle_dir else [])
        env = dict(os.environ)
        # leptonic must import in the child even where it is not installed (a checkout)
        pkg_root = str(Path(leptonic.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        run: dict[str, Any] = {"cwd": str(bundle_dir) if bundle_dir is not None else None,
                               "env": env}
        key = None
    else:
        key = f"inspect-{secrets.token_hex(8)}"
        bundle = Path(bundle_dir) if bundle_dir is not None else None
        probe = isolation.prepare(key, "", base, {}, bundle, die_with_parent=True)
        cmd = probe.argv + (["--bundle", probe.cwd] if bundle is not None else [])
        run = {"cwd": probe.cwd, "env": probe.env, "user": probe.user, "group": probe.group,
               "extra_groups": [] if probe.user is not None else None, "umask": 0o077,
               "start_new_session": True}
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout_s, check=False, **run)
    except subprocess.TimeoutExpired as exc:
        raise PhotonDefinitionError(
            f"inspecting photon {entry!r} timed out after {timeout_s:g}s; importing the "
            f"module must be quick (load models in init(), not at import time)") from exc
    except OSError as exc:
        raise PhotonDefinitionError(f"cannot inspect photon {entry!r}: {exc}") from exc
    finally:
        if isolation is not None and key is not None:
            isolation.release(key)
    stdout = proc.stdout.decode(errors="replace").strip().splitlines()
    last = stdout[-1] if stdout else ""
    try:
        doc = json.loads(last) if last else None
    except ValueError:
        doc = None
    if proc.returncode == 0 and isinstance(doc, dict) and "error" not in doc:
        return PhotonManifest.model_validate(doc)
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        raise PhotonDefinitionError(doc["error"])
    err_lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    reason = err_lines[-1].strip() if err_lines else f"exit code {proc.returncode}"
    raise PhotonDefinitionError(f"cannot inspect photon {entry!r}: {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leptonic.photon.inspect",
                                     description="Print a photon's manifest as JSON.")
    parser.add_argument("--entry", required=True,
                        help="FILE.py:Class inside the bundle, or builtin:NAME")
    parser.add_argument("--bundle", default=None, help="the photon's directory (default: cwd)")
    args = parser.parse_args(argv)
    from leptonic.photon.loader import load_photon_class

    out = sys.stdout
    try:
        # user code may print at import time; keep stdout for the manifest alone
        with contextlib.redirect_stdout(sys.stderr):
            manifest = load_photon_class(args.entry, args.bundle).describe()
    except PhotonDefinitionError as exc:
        print(json.dumps({"error": exc.detail}), file=out, flush=True)
        return EXIT_DEFINITION_ERROR
    print(manifest.model_dump_json(), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
