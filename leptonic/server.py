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
    head_timeout_s = HEAD_TIMEOUT_S
    body_idle_timeout_s = BODY_IDLE_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_body = False

    # -- timers ---------------------------------------------------------------------------
    def _expire(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel(self, which: str) -> None:
        timer = getattr(self, which)
        if timer is not None:
            timer.cancel()
            setattr(self, which, None)

    def _arm_head(self) -> None:
        self._cancel("_head_timer")
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._expire)

    def _arm_body(self) -> None:
        self._cancel("_body_timer")
        self._body_timer = self.loop.call_later(self.body_idle_timeout_s, self._expire)

    # -- protocol hooks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()                 # a client that never sends a byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel("_head_timer")
        self._cancel("_body_timer")
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_body:
            self._arm_body()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head()                 # the clock starts at the request's first byte

    def on_headers_complete(self) -> None:
        self._cancel("_head_timer")
        super().on_headers_complete()
        self._reading_body = True
        self._arm_body()

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._cancel("_body_timer")
        super().on_message_complete()
