"""Log rotation while the writer keeps its descriptor, the directory budget, search."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from leptonic.errors import InvalidInput
from leptonic.observe.logs import compile_grep, enforce_budget, rotate, rotated, search_file


def test_copytruncate_rotation_keeps_a_running_writer_writing(tmp_path: Path) -> None:
    path = tmp_path / "r1.log"
    # like a replica: stdout opened once for appending and never reopened
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for burst in range(5):
            os.write(fd, "".join(f"b{burst} line {i}\n" for i in range(100)).encode())
            rotate(path, max_bytes=500, backups=2)
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert path.read_text() == "after\n", "the writer's next line starts the emptied file"
    assert [p.name for p in rotated(path)] == ["r1.log.2", "r1.log.1"]
    assert "b4 line 99" in (tmp_path / "r1.log.1").read_text()
    assert "b3 line 0" in (tmp_path / "r1.log.2").read_text()
    assert not rotate(path, max_bytes=500, backups=2), "small files are left alone"


def test_search_reads_rotated_files_and_tail_fills_from_them(tmp_path: Path) -> None:
    path = tmp_path / "r1.log"
    (tmp_path / "r1.log.2").write_text("old ERROR one\nok\n")
    (tmp_path / "r1.log.1").write_text("ERROR two\nok\n")
    path.write_text("ok\nerror three\n")
    assert search_file(path, 10, compile_grep("ERROR")) == ["old ERROR one", "ERROR two"]
    assert search_file(path, 2, compile_grep("error", ignore_case=True)) == [
        "ERROR two", "error three"]
    assert search_file(path, 3) == ["ok", "ok", "error three"]


@pytest.mark.parametrize("bad", ["(", "[a-", "x" * 201])
def test_bad_patterns_say_why(bad: str) -> None:
    with pytest.raises(InvalidInput):
        compile_grep(bad)


def test_budget_removes_gone_replicas_then_old_copies_never_live_files(tmp_path: Path) -> None:
    def write(name: str, size: int, mtime: float) -> Path:
        p = tmp_path / name
        p.write_bytes(b"x" * size)
        os.utime(p, (mtime, mtime))
        return p

    live = write("live.log", 400, 50)
    live_old = write("live.log.1", 400, 10)
    gone = write("gone.log", 400, 30)
    gone_old = write("gone.log.1", 400, 20)
    removed = enforce_budget(tmp_path, 500, {"live"})
    assert set(removed) == {gone_old, gone, live_old}
    assert live.exists()
    assert enforce_budget(tmp_path, 10, {"live"}) == [], "a live replica's log stays"
