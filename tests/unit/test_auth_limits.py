"""The flood limits of a serving replica: negative cache, rate limiter, failure tally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from entai.actors.governance import OTHER_CLIENTS, AuthFailureTally
from entai.deployments.negative_cache import NegativeCache, token_digest
from entai.deployments.rate_limit import ClientRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- negative cache -------------------------------------------------------------------


def test_a_bad_token_is_remembered_for_its_ttl_then_forgotten() -> None:
    clock = Clock()
    cache = NegativeCache(10, ttl_s=30.0, clock=clock)
    cache.add("entai_bad")
    assert "entai_bad" in cache
    assert "entai_other" not in cache
    clock.now = 29.9
    assert "entai_bad" in cache
    clock.now = 30.0
    assert "entai_bad" not in cache
    assert len(cache) == 0  # the expired entry was dropped on the way


def test_the_cache_is_bounded_and_drops_the_oldest_first() -> None:
    cache = NegativeCache(3, ttl_s=60.0, clock=Clock())
    for i in range(5):
        cache.add(f"token-{i}")
    assert len(cache) == 3
    assert [f"token-{i}" in cache for i in range(5)] == [False, False, True, True, True]
    cache.add("token-2")  # seen again: now the newest
    cache.add("token-5")
    assert "token-2" in cache and "token-3" not in cache


def test_the_cache_keeps_digests_never_the_presented_token() -> None:
    cache = NegativeCache(10, ttl_s=60.0, clock=Clock())
    secret = "entai_0123456789ab_" + "S" * 43
    cache.add(secret)
    kept = list(cache._expiry)
    assert kept == [token_digest(secret)]
    assert all(secret.encode() not in key and len(key) == 32 for key in kept)


# --- rate limiter -----------------------------------------------------------------------


def test_a_client_gets_its_burst_then_waits_for_the_refill() -> None:
    clock = Clock()
    limiter = ClientRateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.acquire("b") == 0.0  # clients are independent
    clock.now = 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now = 100.0
    assert limiter.tokens("a") == 3.0  # refilled up to the burst, not beyond


def test_a_refund_gives_back_one_token() -> None:
    limiter = ClientRateLimiter(rate_per_s=0.001, burst=1, clock=Clock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    limiter.refund("a")
    assert limiter.acquire("a") == 0.0


def test_the_limiter_keeps_at_most_max_clients_buckets() -> None:
    limiter = ClientRateLimiter(rate_per_s=0.001, burst=1, max_clients=2, clock=Clock())
    for client in ("a", "b", "c"):
        assert limiter.acquire(client) == 0.0
    assert len(limiter._buckets) == 2
    assert limiter.tokens("a") == 1.0  # dropped: starts again with a full bucket
    assert limiter.tokens("c") == 0.0


# --- failure tally ----------------------------------------------------------------------


class WallClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_failures_are_counted_per_client_with_first_and_last_seen() -> None:
    wall = WallClock()
    tally = AuthFailureTally(60.0, clock=wall)
    opened = wall.now
    for i in range(500):
        wall.advance(0.01)
        tally.add("10.0.0.1", "unknown" if i % 5 else "malformed")
    wall.advance(1)
    tally.add("10.0.0.2", "missing")
    assert tally.pending() == 501
    assert not tally.due()
    wall.advance(60)
    assert tally.due()
    first, second = tally.drain()
    assert first.client == "10.0.0.1"
    assert (first.count, first.reasons) == (500, {"malformed": 100, "unknown": 400})
    assert first.first_seen == opened + timedelta(seconds=0.01)
    assert first.last_seen == opened + timedelta(seconds=5.0)
    assert (first.window_start, first.window_end) == (opened, wall.now)
    assert (second.client, second.count, second.reasons) == ("10.0.0.2", 1, {"missing": 1})
    assert tally.drain() == []  # a new window, empty
    assert not tally.due()


def test_clients_beyond_the_bound_are_counted_together() -> None:
    tally = AuthFailureTally(60.0, max_clients=2, clock=WallClock())
    for i in range(10):
        tally.add(f"10.0.0.{i}", "unknown")
    windows = {w.client: w.count for w in tally.drain()}
    assert windows == {"10.0.0.0": 1, "10.0.0.1": 1, OTHER_CLIENTS: 8}


def test_undelivered_windows_go_out_with_the_next_drain() -> None:
    wall = WallClock()
    tally = AuthFailureTally(60.0, clock=wall)
    tally.add("a", "unknown")
    opened = wall.now
    wall.advance(60)
    lost = tally.drain()
    tally.add("a", "rate_limited")
    tally.restore(lost)
    wall.advance(60)
    (window,) = tally.drain()
    assert (window.count, window.reasons) == (2, {"rate_limited": 1, "unknown": 1})
    assert window.first_seen == opened
    assert window.window_start == opened
