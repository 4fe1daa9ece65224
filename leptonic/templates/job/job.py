"""A batch job: each index counts the words of its share of the input lines.

leptonic runs it as ``python job.py`` with ``JOB_COMPLETION_INDEX`` (0..completions-1) and
``JOB_COMPLETIONS`` in the environment, and an empty folder in ``LEPTONIC_OUTPUT_DIR``:
what an index leaves there becomes the job's output.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

INPUT = Path(__file__).with_name("input.txt")


def count(lines: list[str], index: int, completions: int) -> Counter[str]:
    """Word counts of the lines this index owns (every ``completions``-th, from ``index``)."""
    words: Counter[str] = Counter()
    for line in lines[index::completions]:
        words.update(w.strip(".,;:!?").lower() for w in line.split() if w.strip(".,;:!?"))
    return words


def main() -> None:
    index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    completions = int(os.environ.get("JOB_COMPLETIONS", "1"))
    out = Path(os.environ.get("LEPTONIC_OUTPUT_DIR", "."))
    words = count(INPUT.read_text().splitlines(), index, completions)
    (out / f"counts-{index}.json").write_text(json.dumps(dict(words.most_common())))
    print(f"index {index}: {sum(words.values())} words, {len(words)} distinct")


if __name__ == "__main__":
    main()
