"""AuthCache.authorize_local: allowed decisions from a fresh snapshot, None otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from entai.actors.governance import AuthCache, CachedToken, CacheSnapshot, UsageKey
from entai.shared.governance import Decision, Permission, Policy, Principal, hash_secret

SECRET = "s" * 43
APP = f"entai_{'a' * 12}_{SECRET}"
SERVICE = "entai-svc.entai-serve.0123abcd"  # the cache's own credential (opaque here)


class Backend:
    """A governance stand-in that counts the calls a cache makes."""

    def __init__(self) -> None:
        self.snapshots = 0
        self.usage: list[Mapping[UsageKey, int]] = []
        self.credentials: list[str] = []

    def snapshot_for_cache(
        self, credential: str, usage: Mapping[UsageKey, int] | None
    ) -> CacheSnapshot:
        self.credentials.append(credential)
        self.snapshots += 1
        if usage:
            self.usage.append(dict(usage))
        token = CachedToken("app", hash_secret(SECRET), None)
        return CacheSnapshot(Policy.default(), {"a" * 12: token}, datetime.now(UTC))

    def authorize(self, caller: str, action: str, resource: str, rid: str | None) -> Decision:
        raise AssertionError("authorize_local must never call the actor")

    def authorize_features(self, *args: Any) -> Decision:
        raise AssertionError("authorize_local must never call the actor")


def test_local_decision_needs_a_fresh_snapshot_and_an_allowing_policy() -> None:
    backend = Backend()
    now = [0.0]
    cache = AuthCache(backend, SERVICE, ttl_s=5.0, clock=lambda: now[0])
    assert cache.authorize_local(APP, "predict", "model:m") is None  # no snapshot yet
    assert backend.snapshots == 0
    cache.refresh()
    decision = cache.authorize_local(APP, "predict", "model:m")
    assert decision is not None and decision.allowed and decision.principal == "app"
    assert cache.authorize_local(APP, "features:read", "fs") is None  # denied: the actor says
    assert cache.authorize_local(APP[:-1] + "t", "predict", "model:m") is None
    assert cache.authorize_local("not a token", "predict", "model:m") is None
    now[0] = 5.0
    assert cache.authorize_local(APP, "predict", "model:m") is None  # stale: never refreshed
    assert backend.snapshots == 1
    cache.refresh()
    assert backend.usage == [{("app", "predict", "model:m", "allow"): 1}]
    assert backend.credentials == [SERVICE, SERVICE]  # the cache's credential, never APP


def test_the_local_decision_applies_the_policys_resource_scopes() -> None:
    scoped = Policy(
        2,
        {"app": frozenset({Permission.PREDICT})},
        {"app": Principal("app", frozenset({"app"}))},
        scopes={"app": {Permission.PREDICT: ("model:fraud_*",)}},
    )

    class ScopedBackend(Backend):
        def snapshot_for_cache(
            self, credential: str, usage: Mapping[UsageKey, int] | None
        ) -> CacheSnapshot:
            token = CachedToken("app", hash_secret(SECRET), None)
            return CacheSnapshot(scoped, {"a" * 12: token}, datetime.now(UTC))

    cache = AuthCache(ScopedBackend(), SERVICE, ttl_s=5.0, clock=lambda: 0.0)
    cache.refresh()
    allowed = cache.authorize_local(APP, "predict", "model:fraud_v1")
    assert allowed is not None and allowed.allowed
    assert cache.authorize_local(APP, "predict", "model:churn") is None  # the actor decides
