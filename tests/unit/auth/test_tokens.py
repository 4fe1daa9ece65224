"""Token verification: the checksum tag, the negative cache and the per-address failure
limit, against a fake store that counts its queries (a bad token must cost none)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from leptonic.auth import tokens
from leptonic.auth.tokens import (
    FAILURE_LIMIT,
    OLD_TOKEN_LENGTH,
    TOKEN_LENGTH,
    TokenVerifier,
    could_exist,
    create_token,
    hash_token,
    new_token,
)
from leptonic.errors import TooManyRequests
from leptonic.gateway.proxy import Refusal

ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.1"


class CountingStore:
    """The store calls the verifier makes, counting every token lookup."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.queries = 0

    def insert_token(self, **fields: Any) -> dict[str, Any]:
        row = {"id": len(self.rows) + 1, "revoked": False, "kind": "api", "user_id": None,
               "deployment": None, "rate_limit_rps": None, "expires_at": None, **fields}
        self.rows[fields["token_hash"]] = row
        return row

    def token_by_hash(self, digest: str) -> dict[str, Any] | None:
        self.queries += 1
        return self.rows.get(digest)

    def user_by_id(self, user_id: int) -> None:
        return None

    def touch_token(self, token_id: int, at: float) -> None:
        pass


def old_format() -> str:
    return "lep_" + secrets.token_urlsafe(32)


def bad_checksum() -> str:
    token = new_token()
    last = "0" if token[-1] != "0" else "1"
    return token[:-1] + last


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def test_new_tokens_carry_a_checksum_and_old_ones_keep_their_shape() -> None:
    token = new_token()
    assert len(token) == TOKEN_LENGTH
    assert token.startswith("lep_")
    assert could_exist(token)
    assert not could_exist(bad_checksum())
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert not could_exist(flipped)                   # the random part is checked too
    assert could_exist(old_format())
    assert len(old_format()) == OLD_TOKEN_LENGTH
    for junk in ("lep_wrong", "lep_" + "x" * 60, "ghp_" + token[4:], old_format()[:-1],
                 "lep_" + "!" * 43, ""):
        assert not could_exist(junk), junk


def test_a_token_that_cannot_exist_makes_no_store_query(store: CountingStore) -> None:
    verifier = TokenVerifier(store)
    for junk in [bad_checksum() for _ in range(50)] + ["lep_wrong", "x" * 300, "nope"]:
        assert verifier.authenticate(junk) is None
    assert store.queries == 0


def test_tokens_of_both_formats_authenticate(store: CountingStore) -> None:
    verifier = TokenVerifier(store)
    new, _ = create_token(store, "new", "viewer")
    old = old_format()
    store.insert_token(name="old", token_hash=hash_token(old), role="admin")
    assert verifier.authenticate(new) is not None
    principal = verifier.authenticate(old)
    assert principal is not None
    assert principal.name == "old"


def test_unknown_hashes_are_cached_bounded_and_briefly(store: CountingStore) -> None:
    verifier = TokenVerifier(store, negative_max_entries=3)
    first = old_format()
    assert verifier.authenticate(first) is None
    assert verifier.authenticate(first) is None
    assert store.queries == 1                         # the second answer came from the cache
    for _ in range(3):                                # pushes ``first`` out (least recent)
        verifier.authenticate(old_format())
    assert len(verifier._negative) == 3
    verifier.authenticate(first)
    assert store.queries == 5
    brief = TokenVerifier(store, negative_ttl_s=0.0)  # expired at once: asked again
    brief.authenticate(first)
    brief.authenticate(first)
    assert store.queries == 7


def test_a_created_token_works_at_once_though_it_was_refused_before(
        store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(store)
    upcoming = new_token()
    assert verifier.authenticate(upcoming) is None    # now known not to exist
    monkeypatch.setattr(tokens, "new_token", lambda: upcoming)
    token, _ = create_token(store, "fresh", "viewer")
    assert token == upcoming
    assert verifier.authenticate(upcoming) is not None


def test_bad_tokens_from_one_address_are_throttled_without_queries(
        store: CountingStore) -> None:
    verifier = TokenVerifier(store)
    valid, _ = create_token(store, "ci", "viewer")
    unseen, _ = create_token(store, "unseen", "viewer")
    assert verifier.authenticate(valid, ATTACKER) is not None
    for _ in range(FAILURE_LIMIT):
        assert verifier.authenticate(old_format(), ATTACKER) is None
    queries = store.queries
    for token in (old_format(), bad_checksum(), "lep_wrong", unseen):
        with pytest.raises(TooManyRequests) as refused:
            verifier.authenticate(token, ATTACKER)
        assert 1 <= refused.value.extra["retry_after"] <= 10
    assert store.queries == queries                   # throttled: the store was not asked
    # a token already known valid keeps working from that address, even once stale
    assert verifier.authenticate(valid, ATTACKER) is not None
    verifier.forget()
    assert verifier.authenticate(valid, ATTACKER) is not None
    assert store.queries == queries + 1
    # other addresses are not affected; calls without an address are never throttled
    assert verifier.authenticate(unseen, NEIGHBOUR) is not None
    assert verifier.authenticate(old_format()) is None


def test_a_missing_token_is_not_a_failure(store: CountingStore) -> None:
    verifier = TokenVerifier(store)
    for _ in range(FAILURE_LIMIT * 3):
        assert verifier.authenticate(None, ATTACKER) is None
        assert verifier.authenticate("", ATTACKER) is None
    assert verifier.authenticate(old_format(), ATTACKER) is None    # not throttled


def test_gateway_check_answers_429_with_retry_after_except_on_public_deployments(
        store: CountingStore) -> None:
    verifier = TokenVerifier(store, is_public=lambda name: name == "open")
    valid, _ = create_token(store, "ci", "viewer")
    assert verifier.authorize_run(valid, "closed", ATTACKER) is True
    for _ in range(FAILURE_LIMIT):
        assert verifier.authorize_run(old_format(), "closed", ATTACKER) is False
    queries = store.queries
    refused = verifier.authorize_run(old_format(), "closed", ATTACKER)
    assert isinstance(refused, Refusal)
    assert refused.status == 429
    assert int(dict(refused.headers)[b"retry-after"]) >= 1
    assert refused.delay_s == tokens.THROTTLE_DELAY_S > 0     # held: brute force slows down
    assert verifier.authorize_run(old_format(), "open", ATTACKER) is True   # anonymous
    assert verifier.authorize_run(valid, "closed", ATTACKER) is True
    assert store.queries == queries
    assert verifier.authorize_run(old_format(), "closed", NEIGHBOUR) is False


def test_the_gateway_asks_the_store_off_the_loop_only_when_memory_cannot_answer(
        store: CountingStore) -> None:
    """``memory_only`` answers when ``authenticate`` needs no store query (the platform
    then checks on the event loop) and raises ``NeedsStore`` otherwise (a worker thread)."""
    verifier = TokenVerifier(store)

    def answers_from_memory(token: str | None, client: str | None = None) -> bool:
        try:
            verifier.authenticate(token, client, memory_only=True)
        except tokens.NeedsStore:
            return False
        except TooManyRequests:
            pass
        return True

    valid, _ = create_token(store, "ci", "viewer")
    assert answers_from_memory(None)
    assert answers_from_memory("")
    assert answers_from_memory(bad_checksum())           # refused by its checksum
    assert not answers_from_memory(valid)                # not cached yet: the store
    queries = store.queries
    assert verifier.authenticate(valid) is not None
    assert store.queries == queries + 1
    assert answers_from_memory(valid)                    # now cached
    unknown = old_format()
    assert not answers_from_memory(unknown)
    assert verifier.authenticate(unknown) is None
    assert answers_from_memory(unknown)                  # negatively cached
    for _ in range(FAILURE_LIMIT):
        verifier.authenticate(old_format(), ATTACKER)
    assert answers_from_memory(old_format(), ATTACKER)   # the address is throttled
    with pytest.raises(TooManyRequests):                          # (and is answered so)
        verifier.authenticate(old_format(), ATTACKER)


def test_the_gateways_memory_only_check_hashes_once_and_defers_what_needs_the_store(
        store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform's check on the event loop: ``memory_only`` answers from memory, or
    raises ``NeedsStore`` (then asked again in a worker thread), hashing the token once
    per request on the common path (a cached token)."""
    verifier = TokenVerifier(store)
    valid, _ = create_token(store, "ci", "viewer")
    queries = store.queries
    with pytest.raises(tokens.NeedsStore):
        verifier.authorize_run(valid, "svc", ATTACKER, memory_only=True)
    assert store.queries == queries                          # nothing asked, nothing counted
    assert verifier.failures.retry_after(ATTACKER, 0.0) == 0
    assert verifier.authorize_run(valid, "svc", ATTACKER) is True       # the worker's check
    hashed = []
    real = tokens.hash_token
    monkeypatch.setattr(tokens, "hash_token", lambda t: hashed.append(t) or real(t))
    assert verifier.authorize_run(valid, "svc", ATTACKER, memory_only=True) is True
    assert len(hashed) == 1
    unknown = old_format()
    with pytest.raises(tokens.NeedsStore):                    # unknown: only the store knows
        verifier.authorize_run(unknown, "svc", ATTACKER, memory_only=True)
    assert verifier.authorize_run(unknown, "svc", ATTACKER) is False
    assert verifier.authorize_run(unknown, "svc", ATTACKER, memory_only=True) is False
