"""Leadership among control planes sharing one database.

Exactly one control plane runs the controllers (and the other singletons: metric sampling,
alert evaluation); every one serves the API and the gateway. The leader holds the
``controller`` lease in the store and renews it every ``lease_s / 3``; a leader that cannot
renew steps down before its lease can expire, and a follower takes the lease once it has
expired, so there is never more than one leader, and a killed leader is replaced within
one lease period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leptonic.store.store import Store

log = logging.getLogger(__name__)

LEASE = "controller"


def holder_id(port: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{port}:{secrets.token_hex(3)}"


class Leadership:
    def __init__(self, store: Store, holder: str, *, lease_s: float = 10.0,
                 on_elected: Callable[[], Awaitable[None]],
                 on_deposed: Callable[[], Awaitable[None]],
                 clock: Callable[[], float] = time.time) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.store = store
        self.holder = holder
        self.lease_s = lease_s
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.clock = clock
        self.is_leader = False
        self._held_until = 0.0       # when our lease runs out, as far as we know
        self._task: asyncio.Task[None] | None = None

    @property
    def period_s(self) -> float:
        return self.lease_s / 3

    async def step(self) -> None:
        """One round: take or renew the lease; change role if that changed."""
        now = self.clock()
        try:
            held = await asyncio.to_thread(self.store.acquire_lease, LEASE, self.holder,
                                           now, self.lease_s)
        except Exception:
            log.exception("cannot reach the store to renew the %s lease", LEASE)
            # still ours only while the last renewal lasts; stop a period early so no
            # other control plane can be elected while we still act as leader
            held = self.is_leader and self.clock() < self._held_until - self.period_s
        else:
            if held:
                self._held_until = now + self.lease_s
        if held and not self.is_leader:
            self.is_leader = True
            log.info("this control plane is the leader (%s)", self.holder)
            await self.on_elected()
        elif not held and self.is_leader:
            self.is_leader = False
            log.warning("this control plane lost the lead (%s)", self.holder)
            await self.on_deposed()

    async def start(self) -> None:
        await self.step()
        self._task = asyncio.create_task(self._run(), name="leptonic-leadership")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.step()
            except Exception:           # a failing callback must not end the election
                log.exception("leadership step failed")

    async def stop(self, *, release: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.is_leader:
            self.is_leader = False
            await self.on_deposed()
            if release:
                try:
                    await asyncio.to_thread(self.store.release_lease, LEASE, self.holder)
                except Exception:
                    log.exception("could not release the %s lease", LEASE)
