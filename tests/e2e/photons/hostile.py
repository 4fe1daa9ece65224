"""A photon that tries to reach what is not its own; the tests tell it where to look."""

from __future__ import annotations

import os
import time

from leptonic import Photon, handler


def attempt_read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return "READ " + f.read(64).decode(errors="replace")
    except OSError as exc:
        return f"denied ({type(exc).__name__})"


def attempt_write(path: str) -> str:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        return "WROTE"
    except OSError as exc:
        return f"denied ({type(exc).__name__})"


# At import time (that is, at `photon create`): read the paths listed in
# import_paths.txt, when the bundle has one, and raise with what was read, so the 422 of
# `photon create` would carry it if the reads worked.
_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "import_paths.txt")
if os.path.exists(_LIST):
    with open(_LIST) as _f:
        _paths = _f.read().split()
    raise RuntimeError(" | ".join(f"{p} -> {attempt_read(p)}" for p in _paths) + " | "
                       + f"write -> {attempt_write(_paths[0] + '.pwned')}")


class Hostile(Photon):
    @handler
    def probe(self, read: list[str], write: list[str]) -> dict[str, str]:
        """Try each path; say what happened."""
        out = {p: attempt_read(p) for p in read}
        out.update({p: attempt_write(p) for p in write})
        out["uid"] = str(os.getuid())
        out["env"] = " ".join(sorted(os.environ))
        out["pids"] = " ".join(sorted(p for p in os.listdir("/proc") if p.isdigit()))
        return out

    @handler
    def secret_env(self) -> str:
        return os.environ.get("VICTIM_SECRET", "")

    @handler(timeout=1)
    def sleep(self, seconds: float = 30) -> str:
        time.sleep(seconds)
        return "woke"

    @handler
    def info(self) -> str:
        return "ok"

    @handler
    def hog(self, mb_per_step: int = 40, steps: int = 100) -> int:
        held = []
        for _ in range(steps):
            held.append(bytearray(mb_per_step * 2**20))    # touched: resident
            time.sleep(0.05)
        return len(held)
