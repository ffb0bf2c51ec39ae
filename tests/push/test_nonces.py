"""The single-process nonce memory: replays refused, lifetimes kept, memory given back."""

from __future__ import annotations

import asyncio
import secrets
import tracemalloc

from push_server.api.auth import NONCE_BUCKET_SECONDS, MemoryClaims


def test_a_nonce_is_taken_once() -> None:
    nonces = MemoryClaims()
    assert nonces.claim_at("abc", 60, now=1000.0)
    assert not nonces.claim_at("abc", 60, now=1000.5)
    assert nonces.claim_at("abd", 60, now=1000.5)


def test_a_nonce_is_held_for_its_lifetime_and_at_most_one_bucket_longer() -> None:
    nonces = MemoryClaims()
    assert nonces.claim_at("n", 30, now=1000.0)
    assert not nonces.claim_at("n", 30, now=1000.0 + 30 - 0.01), "forgotten before its lifetime ended"
    assert nonces.claim_at("n", 30, now=1000.0 + 30 + NONCE_BUCKET_SECONDS + 0.01), "still held a bucket later"


def test_a_long_lifetime_does_not_hold_back_shorter_ones_claimed_after_it() -> None:
    # Lifetimes follow each request's timestamp, so they arrive in any order.
    nonces = MemoryClaims()
    assert nonces.claim_at("long", 600, now=0.0)
    for i in range(100):
        assert nonces.claim_at(f"short{i}", 20, now=0.0)
    assert len(nonces) == 101
    later = 20 + 2 * NONCE_BUCKET_SECONDS
    assert nonces.claim_at("other", 20, now=later)
    assert len(nonces) == 2, "the short-lived nonces were not forgotten"
    assert not nonces.claim_at("long", 600, now=later)


def test_a_held_nonce_costs_about_ninety_bytes() -> None:
    # Held as a string with its own expiry entry it cost ~200 bytes (~130
    # without the string, which is made before measuring here); a node at
    # 3,000 calls/s holds about a million of them. The set's table grows in
    # steps, so the figure is taken at one size.
    held = [secrets.token_urlsafe(16) for _ in range(100_000)]
    nonces = MemoryClaims()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, nonce in enumerate(held):
            nonces.claim_at(nonce, 300 + i % 300, now=1000.0 + i * 0.0036)
        per_nonce = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    finally:
        tracemalloc.stop()
    assert per_nonce < 110, f"{per_nonce:.0f} bytes per nonce"


def test_a_released_key_can_be_claimed_again_and_is_then_held_its_full_lifetime() -> None:
    """Releasing a key (its operation failed) lets it be claimed again; the early entry never forgets the new claim."""
    keys = MemoryClaims()
    assert keys.claim_at("k", 30, now=1000.0)
    asyncio.run(keys.release("k"))
    assert keys.claim_at("k", 30, now=1020.0)
    # Past the first claim's bucket, the second claim still holds.
    assert not keys.claim_at("k", 30, now=1000.0 + 30 + NONCE_BUCKET_SECONDS + 1)
    assert keys.claim_at("k", 30, now=1020.0 + 30 + NONCE_BUCKET_SECONDS + 1)
