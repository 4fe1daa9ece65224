"""Leadership among control planes: one leader at a time, takeover after the lease."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from leptonic.controller.leader import Leadership


@dataclass
class LeaseStore:
    """The store's lease semantics in memory (the real SQL is tested in integration)."""

    holder: str | None = None
    expires_at: float = 0.0
    down: bool = False
    calls: list[str] = field(default_factory=list)

    def acquire_lease(self, name: str, holder: str, now: float, duration_s: float) -> bool:
        if self.down:
            raise ConnectionError("database unreachable")
        self.calls.append(holder)
        if self.holder in (None, holder) or self.expires_at < now:
            self.holder, self.expires_at = holder, now + duration_s
            return True
        return False

    def release_lease(self, name: str, holder: str) -> None:
        if self.holder == holder:
            self.expires_at = 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(store: LeaseStore, clock: Clock, name: str, log: list[str]) -> Leadership:
    async def elected() -> None:
        log.append(f"{name}+")

    async def deposed() -> None:
        log.append(f"{name}-")

    return Leadership(store, name, lease_s=9, on_elected=elected, on_deposed=deposed,
                      clock=clock)


async def test_one_leader_and_takeover_after_the_lease_expires() -> None:
    store, clock, log = LeaseStore(), Clock(), []
    a, b = elector(store, clock, "a", log), elector(store, clock, "b", log)
    await a.step()
    await b.step()
    assert (a.is_leader, b.is_leader) == (True, False)
    clock.now += 3
    await a.step()                       # renewals keep it
    await b.step()
    assert log == ["a+"]
    # a is killed: it stops renewing; b takes over once the lease has run out
    clock.now += 8.9
    await b.step()
    assert not b.is_leader
    clock.now += 0.2
    await b.step()
    assert b.is_leader
    assert log == ["a+", "b+"]


async def test_a_leader_that_cannot_renew_steps_down_before_its_lease_ends() -> None:
    store, clock, log = LeaseStore(), Clock(), []
    a = elector(store, clock, "a", log)
    await a.step()
    store.down = True
    clock.now += 3
    await a.step()
    assert a.is_leader                   # 6 s left: still safely ours
    clock.now += 3.1
    await a.step()                       # under one period left: stop acting now
    assert not a.is_leader
    assert log == ["a+", "a-"]
    assert clock.now < store.expires_at, "stepped down before anyone else could lead"


async def test_release_hands_over_at_once() -> None:
    store, clock, log = LeaseStore(), Clock(), []
    a, b = elector(store, clock, "a", log), elector(store, clock, "b", log)
    await a.step()
    await a.stop(release=True)
    await b.step()
    assert b.is_leader
    assert log == ["a+", "a-", "b+"]


def test_lease_must_be_positive() -> None:
    async def noop() -> None:
        return None

    with pytest.raises(ValueError, match="lease_s"):
        Leadership(LeaseStore(), "a", lease_s=0, on_elected=noop, on_deposed=noop)
