"""Replica choice: power of two choices on outstanding requests (pure functions).

Sampling two replicas at random and keeping the less busy one gets close to
"least outstanding" without every gateway herding onto the same idle replica, and costs
two random draws instead of a scan (Mitzenmacher, "The Power of Two Choices in
Randomized Load Balancing").

``pick`` is the whole choice the gateway makes for one attempt of one request: the
weighted split between groups (a canary, blue-green), then ``choose`` inside the group,
around replicas already tried and replicas ejected after a failed connection.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet


def choose(
    candidates: Sequence[str],
    outstanding: Mapping[str, int],
    rng: random.Random,
    exclude: Collection[str] = (),
) -> str | None:
    """Pick a replica id from ``candidates``, skipping ``exclude``; ``None`` if none is left.

    Two distinct candidates are drawn at random and the one with fewer outstanding
    requests wins (a missing entry counts as 0); on a tie the first draw wins. With a
    single candidate left it is returned without drawing.
    """
    pool = [c for c in candidates if c not in exclude] if exclude else candidates
    n = len(pool)
    if n == 0:
        return None
    if n == 1:
        return pool[0]
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    if j >= i:
        j += 1
    first, second = pool[i], pool[j]
    if outstanding.get(second, 0) < outstanding.get(first, 0):
        return second
    return first


def pick(
    ids: Sequence[str],
    split: Sequence[tuple[float, Sequence[str]]],
    outstanding: Mapping[str, int],
    rng: random.Random,
    *,
    tried: AbstractSet[str] = frozenset(),
    ejected: Mapping[str, float] | None = None,
    now: float = 0.0,
) -> str | None:
    """The replica for the next attempt of a request to a deployment; ``None`` if none.

    ``split`` (running weight totals with each group's replica ids, ``Route.split``)
    draws the group; empty means every replica is alike. Inside the group ``choose``
    runs, skipping ``tried`` and the replicas ``ejected`` until a (monotonic) time after
    ``now``. A group with no replica left hands the request to any replica left, so a
    weight never fails a request that another replica can take. When everything left is
    ejected, one of those is tried rather than failing the request: an ejection is a
    guess that a replica is down, not a fact.
    """
    pool = ids
    if split:
        draw = rng.random() * split[-1][0]
        for bound, pool in split:  # noqa: B007 - the loop picks the pool
            if draw < bound:
                break
    out = [r for r, until in ejected.items() if until > now] if ejected else None
    skip: Collection[str] = {*tried, *out} if out else tried
    chosen = choose(pool, outstanding, rng, skip)
    if chosen is None and pool is not ids:
        chosen = choose(ids, outstanding, rng, skip)
    if chosen is None and out:
        chosen = choose(ids, outstanding, rng, tried)
    return chosen
