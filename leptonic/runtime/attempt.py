"""The parent of one job attempt on the local runtime: it runs the attempt's command and
writes how it ended to a status file the control plane reads, even one that was killed and
restarted meanwhile (a batch job outlives its control plane; its exit code must too).

    python -m leptonic.runtime.attempt --attempt-id ID --platform MARK --status FILE
        [--uid U --gid G] -- ARGV...

It runs as the platform (the status file lies in the data dir, out of the user code's
reach); the command runs as ``--uid``/``--gid`` when given (no sandbox to switch), in
this process group, so one ``killpg`` stops all of it. The status file is written
atomically: ``{"exit_code": N}``, negative for a signal as ``subprocess`` reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys


def _write_status(path: str, code: int) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"exit_code": code}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: python -m leptonic.runtime.attempt ... -- ARGV", file=sys.stderr)
        return 2
    cut = args.index("--")
    parser = argparse.ArgumentParser(prog="leptonic.runtime.attempt")
    parser.add_argument("--attempt-id", required=True)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--gid", type=int)
    opts = parser.parse_args(args[:cut])
    command = args[cut + 1:]
    # a SIGTERM for the group reaches the command too; this one waits for its end
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kwargs: dict[str, object] = {}
    # the sandbox makes the folders it binds the Python environment under with this
    # umask: 022 keeps them enterable by the attempt's uid (its output dir stays 0700)
    os.umask(0o022)
    if opts.uid is not None:
        kwargs.update(user=opts.uid, group=opts.gid, extra_groups=[])
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                 preexec_fn=_default_term, **kwargs)  # type: ignore[call-overload]
    except OSError as exc:
        print(f"leptonic: cannot start the attempt's command: {exc}", file=sys.stderr)
        _write_status(opts.status, 127)
        return 127
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:        # pragma: no cover - PEP 475 retries for us
            continue
    print(f"--- leptonic: attempt {opts.attempt_id} exited with code {code}", flush=True)
    _write_status(opts.status, code)
    return int(code) if code >= 0 else 128 - int(code)


def _default_term() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
