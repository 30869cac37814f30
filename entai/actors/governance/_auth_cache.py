"""A caller-side cache of governance state, so allowed reads cost no actor round trip.

:class:`AuthCache` keeps a :class:`CacheSnapshot` from the GovernanceChecker (the
policy plus, per active token, the hash of its secret, its principal and expiry) and
decides *allowed* requests locally with the same :class:`~entai.shared.governance._policy.Policy`
code the actor runs. Anything else — a token it does not know, an expired token, a
denial — is sent to the actor, which decides authoritatively, audits it in full and
raises. Locally allowed decisions are counted and shipped to the actor at each
refresh, where they are audited as aggregates.

Staleness is bounded by ``ttl_s`` (default 5 s): a revoked token, a removed role or a
new policy version takes effect in every cache within ``ttl_s`` of the change. A new
token works at once (an unknown token goes to the actor). When the actor does not
answer a refresh, the last snapshot keeps deciding until it is ``max_stale_s`` old
(default ``ttl_s``, i.e. not at all); every call to the actor has a timeout and a dead,
restarting or silent actor is a :class:`~entai.shared.core.ServiceUnavailableError`.

Serving replicas authenticate before they read a request
(:mod:`entai.deployments.auth_gate`) with :meth:`AuthCache.principal_local` and, for a
token the snapshot does not know, :meth:`AuthCache.lookup`, which asks the actor's
read-only ``lookup_token`` (never audited, never queued behind audit writes).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from entai.actors.governance._auth_failures import FailedAuthWindow
from entai.shared.core import AuthenticationError, ServiceUnavailableError
from entai.shared.governance import (
    Decision,
    Permission,
    Policy,
    Principal,
    hash_secret,
    parse_token,
)

__all__ = [
    "AuthCache",
    "CacheSnapshot",
    "CachedToken",
    "GovernanceBackend",
    "UsageKey",
]

log = logging.getLogger(__name__)

UsageKey = tuple[str, str, str, str]
"""(principal, action, resource, decision) of locally allowed requests."""


@dataclass(frozen=True)
class CachedToken:
    """What a cache needs to check one token: never the secret itself."""

    principal: str
    secret_hash: str
    expires_at: datetime | None


@dataclass(frozen=True)
class CacheSnapshot:
    """Governance state a cache may decide from until ``ttl_s`` has passed.

    Attributes:
        tokens: token id -> its hash, principal and expiry (active tokens only).
    """

    policy: Policy
    tokens: Mapping[str, CachedToken]
    taken_at: datetime


class GovernanceBackend(Protocol):
    """The GovernanceChecker methods a cache calls (the class itself or an actor)."""

    def authorize(
        self, caller: str, action: str, resource: str, request_id: str | None
    ) -> Decision: ...

    def authorize_features(
        self, caller: str, features: Mapping[str, str], resource: str, request_id: str | None
    ) -> Decision: ...

    def snapshot_for_cache(
        self, credential: str, usage: Mapping[UsageKey, int] | None
    ) -> CacheSnapshot: ...

    def lookup_token(self, token_id: str, secret_hash: str) -> Principal | None: ...

    def record_auth_failures(self, credential: str, windows: Sequence[FailedAuthWindow]) -> int: ...


class AuthCache:
    """Authorize with a short-lived local copy of the governance state.

    Args:
        backend: The GovernanceChecker, or :class:`ActorGovernance` around its handle.
        credential: What the cache presents to take snapshots and report failures:
            a Serve replica's service credential, or a client's own API token.
        ttl_s: Longest time a snapshot is used before it is refreshed.
        max_stale_s: Longest time a snapshot keeps deciding while refreshes fail
            (the service is down or silent); None means ``ttl_s``.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        backend: GovernanceBackend,
        credential: str,
        *,
        ttl_s: float = 5.0,
        max_stale_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._credential = credential
        self._ttl_s = ttl_s
        self._max_stale_s = ttl_s if max_stale_s is None else max(ttl_s, max_stale_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: CacheSnapshot | None = None
        self._fetched_at = float("-inf")
        self._usage: Counter[UsageKey] = Counter()

    @property
    def ttl_s(self) -> float:
        """How long a snapshot decides before it is refreshed."""
        return self._ttl_s

    def snapshot_age(self) -> float | None:
        """Seconds since the current snapshot was taken; None before the first."""
        if self._snapshot is None:
            return None
        return self._clock() - self._fetched_at

    def refresh(self) -> CacheSnapshot:
        """Ship usage counts to the actor and take a fresh snapshot now."""
        with self._lock:
            usage, self._usage = self._usage, Counter()
        try:
            snapshot = self._backend.snapshot_for_cache(self._credential, usage or None)
        except BaseException:
            with self._lock:
                self._usage.update(usage)
            raise
        with self._lock:
            self._snapshot, self._fetched_at = snapshot, self._clock()
        return snapshot

    def policy(self) -> Policy:
        """The policy of the current snapshot (refreshed first when older than ``ttl_s``).

        Raises:
            ServiceUnavailableError: no snapshot younger than ``max_stale_s`` and the
                governance service did not answer.
        """
        return self._current().policy

    def _current(self) -> CacheSnapshot:
        snapshot = self._snapshot
        if snapshot is None or self._clock() - self._fetched_at >= self._ttl_s:
            try:
                snapshot = self.refresh()
            except ServiceUnavailableError:
                usable = self._usable()
                if usable is None:
                    raise
                log.warning("governance refresh failed; deciding from the last snapshot")
                return usable
        return snapshot

    def _usable(self) -> CacheSnapshot | None:
        """The snapshot if it is younger than ``max_stale_s``, without refreshing."""
        snapshot = self._snapshot
        if snapshot is None or self._clock() - self._fetched_at >= self._max_stale_s:
            return None
        return snapshot

    def _local_principal(self, snapshot: CacheSnapshot, token: str) -> Principal | None:
        try:
            token_id, secret = parse_token(token)
        except AuthenticationError:
            return None
        cached = snapshot.tokens.get(token_id)
        if cached is None or not hmac.compare_digest(hash_secret(secret), cached.secret_hash):
            return None
        if cached.expires_at is not None and datetime.now(UTC) >= cached.expires_at:
            return None
        return snapshot.policy.principals.get(cached.principal)

    def _count(self, decision: Decision) -> Decision:
        label = "allow-masked" if decision.masked_features else "allow"
        with self._lock:
            self._usage[(decision.principal, decision.action, decision.resource, label)] += 1
        return decision

    def authorize(
        self,
        token: str,
        action: Permission | str,
        resource: str = "*",
        request_id: str | None = None,
    ) -> Decision:
        """An allowed decision, locally when the snapshot allows it.

        Raises:
            AuthenticationError: from the actor, for a missing/bad/expired/revoked token.
            PermissionDeniedError: from the actor, when the permission is missing.
        """
        snapshot = self._current()
        principal = self._local_principal(snapshot, token)
        if principal is not None:
            decision = snapshot.policy.authorize(principal, action, resource)
            if decision.allowed:
                return self._count(decision)
        return self._backend.authorize(token, str(action), resource, request_id)

    def authorize_local(
        self, token: str, action: Permission | str, resource: str = "*"
    ) -> Decision | None:
        """The allowed decision if the current snapshot gives it without any call, else None.

        Never blocks: None means :meth:`authorize` would have to call the actor (the
        snapshot is missing or older than ``max_stale_s``, the token is unknown here, or
        the policy denies), so an event loop can call this inline and hand only the rest
        to a thread. An allowed decision is counted like one from :meth:`authorize`.
        """
        snapshot = self._usable()
        if snapshot is None:
            return None
        principal = self._local_principal(snapshot, token)
        if principal is None:
            return None
        decision = snapshot.policy.authorize(principal, action, resource)
        return self._count(decision) if decision.allowed else None

    def principal_local(self, token: str) -> Principal | None:
        """The principal of ``token`` when the snapshot knows it as active; never blocks.

        None when there is no snapshot younger than ``max_stale_s``, or the token is
        malformed, unknown to the snapshot, expired or of a principal not in the policy.
        """
        snapshot = self._usable()
        if snapshot is None:
            return None
        return self._local_principal(snapshot, token)

    def lookup(self, token: str) -> Principal | None:
        """Ask the governance service about a token (read-only, never audited).

        Only the token id and the SHA-256 of its secret are sent.

        Returns:
            The principal of an active token; None for a malformed, unknown, expired or
            revoked one.

        Raises:
            ServiceUnavailableError: the service did not answer in time.
        """
        try:
            token_id, secret = parse_token(token)
        except AuthenticationError:
            return None
        return self._backend.lookup_token(token_id, hash_secret(secret))

    def report_failures(self, windows: Sequence[FailedAuthWindow]) -> int:
        """Have the governance service audit failed authentications counted here.

        Raises:
            ServiceUnavailableError: the service did not answer in time.
        """
        if not windows:
            return 0
        return self._backend.record_auth_failures(self._credential, windows)

    def authorize_features(
        self,
        token: str,
        features: Mapping[str, Any],
        resource: str = "*",
        request_id: str | None = None,
    ) -> Decision:
        """Like :meth:`authorize` for a feature read; see ``Policy.authorize_features``."""
        snapshot = self._current()
        principal = self._local_principal(snapshot, token)
        if principal is not None:
            decision = snapshot.policy.authorize_features(principal, features, resource)
            if decision.allowed:
                return self._count(decision)
        values = {name: str(getattr(pii, "value", pii)) for name, pii in features.items()}
        return self._backend.authorize_features(token, values, resource, request_id)
