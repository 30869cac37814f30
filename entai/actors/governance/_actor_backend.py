"""The running GovernanceChecker service as the backend of a caller's auth cache.

Every call is bounded: a governance service that does not answer within ``timeout_s``,
or is restarting, is a :class:`~entai.shared.core.ServiceUnavailableError` at once
(the caller's cache then keeps deciding from its last snapshot for a bounded time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from entai.actors.core import ActorService
from entai.actors.governance._auth_cache import AuthCache, CacheSnapshot, UsageKey
from entai.actors.governance._auth_failures import FailedAuthWindow
from entai.actors.governance._checker import GovernanceChecker
from entai.shared.core import EntaiError, ServiceUnavailableError
from entai.shared.governance import Decision, Principal

__all__ = ["ActorGovernance", "actor_auth_cache"]

R = TypeVar("R")


class ActorGovernance:
    """Adapts the GovernanceChecker service to :class:`GovernanceBackend`.

    Args:
        governance: The governance service.
        timeout_s: Longest wait for one call; past it the call is a
            ServiceUnavailableError (the actor may still finish it).
    """

    def __init__(
        self, governance: ActorService[GovernanceChecker], *, timeout_s: float = 10.0
    ) -> None:
        self._governance = governance
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"ActorGovernance({self._governance!r}, timeout_s={self._timeout_s})"

    def _wait(self, ref: ray.ObjectRef[R], call: str) -> R:
        try:
            result: R = ray.get(ref, timeout=self._timeout_s)
        except RayTaskError as exc:  # re-raise the governance decision itself
            if isinstance(exc.cause, EntaiError):
                raise exc.cause from None
            raise
        except GetTimeoutError as exc:
            raise ServiceUnavailableError(
                f"the governance service did not answer within {self._timeout_s}s",
                details={"service": "governance", "call": call, "timeout_s": self._timeout_s},
            ) from exc
        except RayActorError as exc:
            raise ServiceUnavailableError(
                "the governance service is restarting or gone; retry",
                details={"service": "governance", "call": call, "error": type(exc).__name__},
            ) from exc
        return result

    def authorize(
        self, caller: str, action: str, resource: str, request_id: str | None
    ) -> Decision:
        """Remote :meth:`GovernanceChecker.authorize`."""
        ref = self._governance.submit(
            GovernanceChecker.authorize, caller, action, resource, request_id
        )
        return self._wait(ref, "authorize")

    def authorize_features(
        self, caller: str, features: Mapping[str, str], resource: str, request_id: str | None
    ) -> Decision:
        """Remote :meth:`GovernanceChecker.authorize_features`."""
        ref = self._governance.submit(
            GovernanceChecker.authorize_features, caller, dict(features), resource, request_id
        )
        return self._wait(ref, "authorize_features")

    def snapshot_for_cache(
        self, credential: str, usage: Mapping[UsageKey, int] | None
    ) -> CacheSnapshot:
        """Remote :meth:`GovernanceChecker.snapshot_for_cache`."""
        ref = self._governance.submit(
            GovernanceChecker.snapshot_for_cache, credential, dict(usage) if usage else None
        )
        return self._wait(ref, "snapshot_for_cache")

    def lookup_token(self, token_id: str, secret_hash: str) -> Principal | None:
        """Remote :meth:`GovernanceChecker.lookup_token` (its own concurrency group)."""
        # A @ray.method (concurrency group) is typed as a remote method, not a function
        # ActorService.submit can take: called on the handle, typed here.
        handle: Any = self._governance.handle
        ref: ray.ObjectRef[Principal | None] = handle.lookup_token.remote(token_id, secret_hash)
        return self._wait(ref, "lookup_token")

    def record_auth_failures(self, credential: str, windows: Sequence[FailedAuthWindow]) -> int:
        """Remote :meth:`GovernanceChecker.record_auth_failures`."""
        ref = self._governance.submit(
            GovernanceChecker.record_auth_failures, credential, list(windows)
        )
        return int(self._wait(ref, "record_auth_failures"))


def actor_auth_cache(
    governance: ActorService[GovernanceChecker],
    credential: str,
    *,
    ttl_s: float = 5.0,
    max_stale_s: float | None = None,
    timeout_s: float = 10.0,
) -> AuthCache:
    """An auth cache in front of the running governance service, presenting
    ``credential`` (calls bounded by ``timeout_s``; decisions from the last snapshot
    for up to ``max_stale_s``)."""
    return AuthCache(
        ActorGovernance(governance, timeout_s=timeout_s),
        credential,
        ttl_s=ttl_s,
        max_stale_s=max_stale_s,
    )
