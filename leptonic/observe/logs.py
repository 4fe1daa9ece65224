"""Replica log files: read their tails, search them, follow them as they grow, and rotate
them so they stay bounded while their replicas keep running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from leptonic.errors import InvalidInput


def tail_file(path: Path | str, lines: int) -> list[str]:
    """The last ``lines`` lines of a file, reading only its end (at most 1 MiB)."""
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 20)))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return list(deque(data.splitlines(), maxlen=lines))


def _read_from(path: str, offset: int | None) -> tuple[int, bytes]:
    """(file size, bytes after ``offset``); offset None means "start at the end"."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if offset is None:
            return size, b""
        if size < offset:            # truncated or rotated: start again from the top
            offset = 0
        f.seek(offset)
        return size, f.read(1 << 20)


async def follow(sources: Callable[[], Awaitable[dict[str, str]]], *, poll_s: float = 0.25,
                 start_at_end: bool = True) -> AsyncIterator[tuple[str, str]]:
    """Yield ``(source, line)`` as lines are appended to the files that ``sources()``
    names (``{label: path}``, awaited every poll so new replicas are picked up)."""
    offsets: dict[str, int] = {}
    partial: dict[str, str] = {}
    first = True
    while True:
        for label, path in (await sources()).items():
            if label not in offsets and first and start_at_end:
                start: int | None = None
            else:
                start = offsets.get(label, 0)
            try:
                size, chunk = await asyncio.to_thread(_read_from, path, start)
            except OSError:
                continue
            if start is None:
                offsets[label] = size
                continue
            offsets[label] = (0 if size < start else start) + len(chunk)
            if not chunk:
                continue
            text = partial.pop(label, "") + chunk.decode("utf-8", "replace")
            *done, rest = text.split("\n")
            if rest:
                partial[label] = rest
            for line in done:
                yield label, line
        first = False
        await asyncio.sleep(poll_s)


# -- search -------------------------------------------------------------------------------

MAX_GREP_CHARS = 200


def compile_grep(pattern: str | None, ignore_case: bool = False) -> re.Pattern[str] | None:
    """The ``--grep`` pattern (a Python regular expression), or InvalidInput saying why."""
    if pattern is None or pattern == "":
        return None
    if len(pattern) > MAX_GREP_CHARS:
        raise InvalidInput(f"the grep pattern is at most {MAX_GREP_CHARS} characters")
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise InvalidInput(f"invalid grep pattern {pattern!r}: {exc}") from exc


def rotated(path: Path | str) -> list[Path]:
    """A log file's rotated copies, oldest first (``X.log.3``, ``X.log.2``, ``X.log.1``)."""
    p = Path(path)
    found = []
    for sibling in p.parent.glob(p.name + ".*"):
        suffix = sibling.name[len(p.name) + 1:]
        if suffix.isdigit():
            found.append((int(suffix), sibling))
    return [s for _, s in sorted(found, reverse=True)]


def search_file(path: Path | str, lines: int, grep: re.Pattern[str] | None = None
                ) -> list[str]:
    """The last ``lines`` lines of a log, matching ``grep`` when given, reading its
    rotated copies too when the current file alone has too few."""
    if grep is None:
        out = tail_file(path, lines)
        for older in reversed(rotated(path)):
            if len(out) >= lines:
                break
            out = tail_file(older, lines - len(out)) + out
        return out[-lines:] if lines else []
    found: deque[str] = deque(maxlen=lines)
    for p in [*rotated(path), Path(path)]:
        try:
            with p.open("r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if grep.search(line):
                        found.append(line.rstrip("\n"))
        except OSError:
            continue
    return list(found)


# -- rotation -----------------------------------------------------------------------------


def rotate(path: Path | str, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it is over ``max_bytes``: shift ``X.log.N``, copy the file to
    ``X.log.1`` and truncate it in place ("copytruncate").

    Copy-and-truncate, not rename, because a running replica keeps writing to the file
    descriptor it was started with; it was opened for appending, so its next write lands
    at the start of the emptied file. A line written in the instant between the copy and
    the truncation can be lost; that is the price of not restarting the replica."""
    p = Path(path)
    try:
        if p.stat().st_size <= max_bytes:
            return False
    except OSError:
        return False
    for i in range(backups, 0, -1):
        src = p.with_name(f"{p.name}.{i}")
        if not src.exists():
            continue
        if i == backups:
            src.unlink(missing_ok=True)
        else:
            os.replace(src, p.with_name(f"{p.name}.{i + 1}"))
    if backups > 0:
        shutil.copyfile(p, p.with_name(f"{p.name}.1"))
    os.truncate(p, 0)
    return True


def enforce_budget(directory: Path | str, max_bytes: int, live: set[str]) -> list[Path]:
    """Delete log files until the directory holds at most ``max_bytes``: first those of
    replicas that no longer exist, then rotated copies, oldest first. The current file of
    a live replica (``live``: replica ids) is never deleted."""
    d = Path(directory)
    files = []
    for f in d.glob("*.log*"):
        try:
            st = f.stat()
        except OSError:
            continue
        rid = f.name.split(".log", 1)[0]
        current = f.name == f"{rid}.log"
        if rid in live and current:
            continue
        files.append((rid in live, st.st_mtime, st.st_size, f))
    total = sum(f.stat().st_size for f in d.glob("*.log*") if f.exists())
    removed = []
    for _, _, size, f in sorted(files, key=lambda x: (x[0], x[1])):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            f.unlink()
            total -= size
            removed.append(f)
    return removed


def rotate_all(directory: Path | str, max_bytes: int, backups: int, dir_max_bytes: int,
               live: set[str]) -> tuple[list[Path], list[Path]]:
    """Rotate every current log over ``max_bytes``, then enforce the directory budget."""
    rotated_now = [p for p in Path(directory).glob("*.log") if rotate(p, max_bytes, backups)]
    return rotated_now, enforce_budget(directory, dir_max_bytes, live)
