"""The one line of a replica's log tail that says what went wrong."""

from __future__ import annotations

import pytest

from leptonic.core.transitions import error_line

TRACEBACK_311 = """\
  File "/srv/app.py", line 12, in init
    self.model = load(self.path)
                 ^^^^^^^^^^^^^^^
  File "/srv/model.py", line 3, in load
    raise ValueError(f"bad weights in {path}")
ValueError: bad weights in /models/x.bin
"""


@pytest.mark.parametrize(("name", "text", "line"), [
    ("a traceback's exception, not its carets", TRACEBACK_311,
     "ValueError: bad weights in /models/x.bin"),
    ("the tail starts inside the traceback", "                 ^^^^^^^^^^^^^^^\n"
     "KeyError: 'MODEL_PATH'\n", "KeyError: 'MODEL_PATH'"),
    ("a line logged after the traceback", TRACEBACK_311 + "INFO photon Echo stopped\n",
     "ValueError: bad weights in /models/x.bin"),
    ("a dotted exception without a message", "Traceback (most recent call last):\n"
     '  File "a.py", line 1\nrequests.exceptions.ConnectionError\n',
     "requests.exceptions.ConnectionError"),
    ("no traceback: the last line with words", "starting\nout of memory: killed\n  \n",
     "out of memory: killed"),
    ("only carets and blanks", "   ^^^^\n\n", None),
    ("nothing", None, None),
])
def test_error_line(name: str, text: str | None, line: str | None) -> None:
    assert error_line(text) == line
