"""AuthGate: a replica's authentication from its cache, with the flood limits in front.

The governance service is a stand-in that counts what the gate asks it; the cache in
between is the real :class:`AuthCache`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entai.actors.governance import AuthCache, CachedToken, CacheSnapshot, FailedAuthWindow
from entai.deployments.auth_gate import AuthGate, bearer_token
from entai.shared.core import (
    AuthenticationError,
    RateLimitedError,
    ServiceUnavailableError,
)
from entai.shared.governance import Policy, Principal, hash_secret
from entai.shared.settings import AuthGuardSettings

POLICY = Policy.default()


def token(token_id: str, secret_char: str = "s") -> str:
    return f"entai_{token_id}_{secret_char * 43}"


KNOWN = token("a" * 12)
SERVICE = "entai-svc.entai-serve.0123abcd"  # what the replica's cache presents (opaque here)
MINTED_LATER = token("b" * 12, "n")
UNKNOWN = token("c" * 12, "u")


class Governance:
    """The governance service as the cache sees it: a snapshot, lookups, failure audits."""

    def __init__(self) -> None:
        self.tokens = {"a" * 12: CachedToken("app", hash_secret("s" * 43), None)}
        self.later = {"b" * 12: CachedToken("analyst", hash_secret("n" * 43), None)}
        self.snapshots = 0
        self.lookups: list[str] = []
        self.audited: list[FailedAuthWindow] = []
        self.down = False
        self.lookup_gate: asyncio.Event | None = None
        self.credentials: set[str] = set()

    def snapshot_for_cache(self, credential: str, usage: Mapping[Any, int] | None) -> CacheSnapshot:
        self.credentials.add(credential)
        if self.down:
            raise ServiceUnavailableError("governance did not answer")
        self.snapshots += 1
        return CacheSnapshot(POLICY, dict(self.tokens), datetime.now(UTC))

    def lookup_token(self, token_id: str, secret_hash: str) -> Principal | None:
        if self.down:
            raise ServiceUnavailableError("governance did not answer")
        self.lookups.append(token_id)
        known = {**self.tokens, **self.later}.get(token_id)
        if known is None or known.secret_hash != secret_hash:
            return None
        return POLICY.principals[known.principal]

    def record_auth_failures(self, credential: str, windows: Sequence[FailedAuthWindow]) -> int:
        self.credentials.add(credential)
        if self.down:
            raise ServiceUnavailableError("governance did not answer")
        self.audited.extend(windows)
        return len(windows)

    def authorize(self, *args: Any) -> Any:
        raise AssertionError("the gate authenticates; it never authorizes")

    def authorize_features(self, *args: Any) -> Any:
        raise AssertionError("the gate authenticates; it never authorizes")


class Clocks:
    def __init__(self) -> None:
        self.mono = 0.0
        self.wall = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


async def no_wait(seconds: float) -> None:
    """The gate's sleep in tests that are not about holding refusals."""


def make_gate(
    governance: Governance,
    clocks: Clocks,
    sleep: Callable[[float], Awaitable[None]] = no_wait,
    **overrides: Any,
) -> tuple[AuthGate, AuthCache]:
    settings = AuthGuardSettings(**{"failure_burst": 5, "failure_rate_per_s": 1.0, **overrides})
    cache = AuthCache(
        governance,
        SERVICE,
        ttl_s=settings.cache_ttl_s,
        max_stale_s=settings.max_stale_s,
        clock=lambda: clocks.mono,
    )
    gate = AuthGate(
        cache, settings, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall, sleep=sleep
    )
    cache.refresh()
    return gate, cache


def authenticate(gate: AuthGate, authorization: str | None, client: str = "10.0.0.1") -> Any:
    return asyncio.run(gate.authenticate(authorization, client))


def refusal(gate: AuthGate, authorization: str | None, client: str = "10.0.0.1") -> Any:
    with pytest.raises((AuthenticationError, RateLimitedError, ServiceUnavailableError)) as info:
        authenticate(gate, authorization, client)
    return info.value


def test_a_known_token_passes_locally_without_a_call_or_spending_the_budget() -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks)
    for _ in range(50):
        assert authenticate(gate, f"Bearer {KNOWN}").name == "app"
    assert governance.lookups == []
    assert gate.failures.pending() == 0


def test_an_unknown_token_is_looked_up_once_then_refused_from_the_negative_cache() -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks, negative_ttl_s=30.0)
    for _ in range(3):
        error = refusal(gate, f"Bearer {UNKNOWN}")
        assert isinstance(error, AuthenticationError)
        assert error.details == {"reason": "unknown"}
    assert governance.lookups == ["c" * 12]
    clocks.advance(31)  # the negative entry expired: asked again
    refusal(gate, f"Bearer {UNKNOWN}")
    assert governance.lookups == ["c" * 12] * 2


def test_a_token_minted_since_the_snapshot_works_at_once_and_costs_no_budget() -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks, failure_burst=1, failure_rate_per_s=0.001)
    for _ in range(3):
        assert authenticate(gate, f"Bearer {MINTED_LATER}").name == "analyst"
    assert governance.lookups == ["b" * 12] * 3  # until the refresher takes a snapshot
    assert gate.failures.pending() == 0


@pytest.mark.parametrize(
    ("header", "reason"),
    [(None, "missing"), ("Basic abc", "malformed"), ("Bearer not-a-token", "malformed")],
)
def test_missing_and_malformed_tokens_are_refused_without_a_lookup(
    header: str | None, reason: str
) -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks)
    error = refusal(gate, header)
    assert isinstance(error, AuthenticationError)
    assert error.details["reason"] == reason
    assert governance.lookups == []
    assert {w.client: dict(w.reasons) for w in gate.failures.drain()} == {"10.0.0.1": {reason: 1}}


def test_a_flood_of_bad_tokens_is_rate_limited_per_client_and_tallied() -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks, failure_burst=5, failure_rate_per_s=1.0)
    statuses = []
    for i in range(100):
        bad = token(f"{i:012x}", "x")
        statuses.append(type(refusal(gate, f"Bearer {bad}")).__name__)
    assert statuses[:5] == ["AuthenticationError"] * 5
    assert set(statuses[5:]) == {"RateLimitedError"}
    assert len(governance.lookups) == 5  # only the burst reached governance
    limited = refusal(gate, "Bearer nope")
    assert isinstance(limited, RateLimitedError)
    assert limited.details == {"retry_after_s": 1}
    # The same client's good token and another client's attempts are unaffected.
    assert authenticate(gate, f"Bearer {KNOWN}").name == "app"
    assert isinstance(refusal(gate, None, client="10.0.0.2"), AuthenticationError)
    clocks.advance(1.0)  # one token back
    assert isinstance(refusal(gate, f"Bearer {UNKNOWN}"), AuthenticationError)
    assert gate.failures.pending() == 103


def test_a_rate_limited_refusal_is_held_back_up_to_max_delayed_at_once() -> None:
    governance, clocks = Governance(), Clocks()
    held: list[float] = []
    release = asyncio.Event()

    async def sleep(seconds: float) -> None:
        held.append(seconds)
        await release.wait()

    gate, _ = make_gate(
        governance, clocks, sleep, failure_burst=2, refusal_delay_s=0.5, max_delayed=3
    )

    async def flood() -> tuple[list[str], list[str], list[float]]:
        first = [type(await _refused(gate, f"Bearer {UNKNOWN}")).__name__ for _ in range(2)]
        waiting = [asyncio.ensure_future(_refused(gate, f"Bearer {UNKNOWN}")) for _ in range(5)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        done_at_once = [type(w.result()).__name__ for w in waiting if w.done()]
        holding = list(held)
        # a known token of the same client is not held behind them
        assert (await gate.authenticate(f"Bearer {KNOWN}", "10.0.0.1")).name == "app"
        release.set()
        await asyncio.gather(*waiting)
        return first, done_at_once, holding

    first, at_once, holding = asyncio.run(flood())
    assert first == ["AuthenticationError"] * 2  # the burst: 401s, never held
    assert at_once == ["RateLimitedError"] * 2  # beyond the 3 held: answered at once
    assert holding == [0.5, 0.5, 0.5]
    assert gate.failures.pending() == 7  # held or not, every failure is counted


async def _refused(gate: AuthGate, authorization: str) -> Exception:
    try:
        await gate.authenticate(authorization, "10.0.0.1")
    except (AuthenticationError, RateLimitedError) as exc:
        return exc
    raise AssertionError("the request was let in")


def test_concurrent_lookups_of_one_token_share_one_call() -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks, failure_burst=50)

    async def many() -> list[Any]:
        calls = [gate.authenticate(f"Bearer {MINTED_LATER}", f"10.0.0.{i}") for i in range(20)]
        return await asyncio.gather(*calls)

    principals = asyncio.run(many())
    assert {p.name for p in principals} == {"analyst"}
    assert len(governance.lookups) == 1


def test_a_lookup_when_governance_is_down_is_503_while_known_tokens_keep_passing() -> None:
    governance, clocks = Governance(), Clocks()
    gate, cache = make_gate(governance, clocks, cache_ttl_s=5.0, max_stale_s=60.0)
    governance.down = True
    error = refusal(gate, f"Bearer {MINTED_LATER}")
    assert isinstance(error, ServiceUnavailableError)
    clocks.advance(30)
    gate.refresh_once()  # fails; the last snapshot stays
    assert authenticate(gate, f"Bearer {KNOWN}").name == "app"
    clocks.advance(30)  # 60 s without a refresh: the snapshot no longer decides
    assert cache.principal_local(KNOWN) is None
    assert isinstance(refusal(gate, f"Bearer {KNOWN}"), ServiceUnavailableError)
    governance.down = False
    gate.refresh_once()
    assert authenticate(gate, f"Bearer {KNOWN}").name == "app"


def test_the_refresher_audits_one_window_per_client_when_due_and_keeps_undelivered() -> None:
    governance, clocks = Governance(), Clocks()
    gate, _ = make_gate(governance, clocks, failure_window_s=60.0, failure_burst=1000)
    for i in range(40):
        refusal(gate, f"Bearer {UNKNOWN}", client=f"10.0.0.{i % 2}")
    gate.refresh_once()
    assert governance.audited == []  # the window is still open
    clocks.advance(60)
    governance.down = True
    gate.refresh_once()
    assert governance.audited == []
    governance.down = False
    gate.refresh_once()
    assert sorted((w.client, w.count) for w in governance.audited) == [
        ("10.0.0.0", 20),
        ("10.0.0.1", 20),
    ]
    assert all(w.reasons == {"unknown": 20} for w in governance.audited)
    assert governance.credentials == {SERVICE}  # snapshots and audits: the replica's own


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer  abc ") == "abc"
    assert bearer_token("bearer abc") == "abc"
    for bad in (None, "", "Bearer", "Bearer   ", "Token abc"):
        with pytest.raises(AuthenticationError):
            bearer_token(bad)
