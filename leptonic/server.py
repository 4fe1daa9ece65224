"""The HTTP server protocol of ``leptonic up``: uvicorn's httptools protocol with the
time limits it lacks, so slow clients (slow-loris) cannot hold connections forever.

* a request's head (request line + headers) must arrive within ``head_timeout_s`` of its
  first byte — or of the connection opening, for a client that sends nothing;
* once the head is in, the body may pause at most ``body_idle_timeout_s`` between reads;
* between requests uvicorn's own keep-alive timeout applies.

A connection that breaks a limit is closed; the application sees a disconnect.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_S = float(os.environ.get("LEPTONIC_HEAD_TIMEOUT_S", "10"))
BODY_IDLE_TIMEOUT_S = float(os.environ.get("LEPTONIC_BODY_IDLE_TIMEOUT_S", "30"))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head and body time limits above.

    The timers are armed only for what is still incomplete once a read has been parsed:
    a request that arrives in one read (nearly every one) costs no timer at all, so the
    guard is nearly free on the gateway's hot path; a head or body that dribbles in gets
    the same limits as ever (the head's clock still starts at its first byte).
    """

    head_timeout_s = HEAD_TIMEOUT_S
    body_idle_timeout_s = BODY_IDLE_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_started: float | None = None    # loop time of the open head's 1st byte
        self._reading_body = False

    # -- timers ---------------------------------------------------------------------------
    def _expire(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- protocol hooks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # a client that never sends a byte
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._expire)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        started = self._head_started
        if started is not None:             # a head still coming in: its deadline stands
            if self._head_timer is None:
                left = started + self.head_timeout_s - self.loop.time()
                self._head_timer = self.loop.call_later(max(left, 0.0), self._expire)
        elif self._reading_body:            # a body still coming in: idle time from now
            self._cancel_body()
            self._body_timer = self.loop.call_later(self.body_idle_timeout_s, self._expire)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = self.loop.time()     # the clock starts at its first byte
        self._cancel_head()                        # (not at the connection's opening)

    def on_headers_complete(self) -> None:
        self._head_started = None
        self._cancel_head()
        super().on_headers_complete()
        self._reading_body = True

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._cancel_body()
        super().on_message_complete()
