"""Replica choice: power of two choices on outstanding requests (a pure function).

Sampling two replicas at random and keeping the less busy one gets close to
"least outstanding" without every gateway herding onto the same idle replica, and costs
two random draws instead of a scan (Mitzenmacher, "The Power of Two Choices in
Randomized Load Balancing").
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence


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
