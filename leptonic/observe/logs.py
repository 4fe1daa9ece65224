"""Replica log files: read their tails and follow them as they grow."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path


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
