"""The bounded sample of a replica's inputs and answers that model monitoring reads.

A deployment of a registered model sets ``LEPTONIC_MONITOR`` to the handlers to sample
(``predict``). For each answered request of those handlers the replica keeps its request
id (the gateway's ``x-request-id``, returned to the client as ``x-leptonic-request-id``),
the time, the request body and the answer, as the raw JSON bytes it already has: nothing
is parsed or copied on the request path but two references into a ring buffer. The ring
holds ``LEPTONIC_MONITOR_SAMPLE`` records (default 10,000); the oldest give way.

The control plane reads it with ``GET /_leptonic/sample?after=SEQ`` every observe
interval: records after ``SEQ``, oldest first, at most ``limit`` (default 5,000), and the
sequence to ask after next. Privacy: the inputs stay in the memory of this replica and of
the control plane (never written to disk) and are dropped as the ring and the control
plane's window move on; a deployment that must not keep inputs leaves monitoring off.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterable
from typing import Any

DEFAULT_SIZE = 10_000
MAX_READ = 5_000
PATH = "/_leptonic/sample"


class Sample:
    """A ring of ``(seq, request_id, time, body, answer)`` for the handlers named."""

    def __init__(self, handlers: Iterable[str], size: int = DEFAULT_SIZE,
                 model: str = "") -> None:
        self.handlers = frozenset(h for h in handlers if h)
        self.model = model
        self.records: collections.deque[tuple[int, bytes, float, bytes, bytes]] = \
            collections.deque(maxlen=max(1, size))
        self.seq = 0

    @classmethod
    def from_env(cls) -> Sample:
        names = os.environ.get("LEPTONIC_MONITOR", "").split(",")
        try:
            size = int(os.environ.get("LEPTONIC_MONITOR_SAMPLE", DEFAULT_SIZE))
        except ValueError:
            size = DEFAULT_SIZE
        return cls([n.strip() for n in names], size, os.environ.get("LEPTONIC_MODEL", ""))

    def record(self, handler: str, request_id: bytes, body: bytes, answer: bytes) -> None:
        self.seq += 1
        self.records.append((self.seq, request_id, time.time(), body or b"{}", answer))

    def read(self, after: int, limit: int = MAX_READ) -> bytes:
        """``{"model", "next", "dropped", "records": [[seq, id, t, body, answer], ...]}``
        (JSON, the bodies and answers spliced in as they are)."""
        records = self.records
        first = records[0][0] if records else self.seq + 1
        dropped = max(0, first - after - 1) if after < first else 0
        start = max(0, after - first + 1)
        out = []
        last = after
        for i in range(start, min(len(records), start + max(1, limit))):
            seq, rid, t, body, answer = records[i]
            out.append(b'[%d,"%s",%.3f,%s,%s]' % (seq, _safe(rid), t, body, answer))
            last = seq
        # nothing new: ``after`` itself, unless this replica restarted (its sequence began
        # again below it), then where it is now
        nxt = last if out else min(after, self.seq)
        head = b'{"model":"%s","next":%d,"dropped":%d,"records":[' % (
            _safe(self.model.encode()), nxt, dropped)
        return head + b",".join(out) + b"]}"


def _safe(value: bytes) -> bytes:
    """An id as a JSON string body: ids are printable tokens; anything else is dropped."""
    return bytes(c for c in value[:200] if 32 < c < 127 and c not in b'"\\')


def parse_query(query: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in query.split(b"&"):
        k, _, v = part.partition(b"=")
        if k in (b"after", b"limit") and v.isdigit():
            out[k.decode()] = int(v)
    return out
