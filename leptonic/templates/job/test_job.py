"""Tests of the job: its counting directly, and a run as leptonic would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from job import count


def test_indexes_share_the_lines_without_overlap() -> None:
    lines = ["a b", "b c", "c d"]
    assert count(lines, 0, 2) + count(lines, 1, 2) == count(lines, 0, 1)


def test_one_index_writes_its_counts(tmp_path: Path) -> None:
    env = {**os.environ, "JOB_COMPLETION_INDEX": "1", "JOB_COMPLETIONS": "2",
           "LEPTONIC_OUTPUT_DIR": str(tmp_path)}
    subprocess.run([sys.executable, str(Path(__file__).with_name("job.py"))], env=env,
                   check=True, capture_output=True)
    counts = json.loads((tmp_path / "counts-1.json").read_text())
    assert counts["index"] >= 1
