"""The running GovernanceChecker service as the backend of a caller's auth cache."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import ray
from ray.exceptions import RayTaskError

from entai.actors.core import ActorService
from entai.actors.governance._auth_cache import AuthCache, CacheSnapshot, UsageKey
from entai.actors.governance._checker import GovernanceChecker
from entai.shared.core import EntaiError
from entai.shared.governance import Decision

__all__ = ["ActorGovernance", "actor_auth_cache"]

R = TypeVar("R")


class ActorGovernance:
    """Adapts the GovernanceChecker service to :class:`GovernanceBackend`."""

    def __init__(self, governance: ActorService[GovernanceChecker]) -> None:
        self._governance = governance

    def __repr__(self) -> str:
        return f"ActorGovernance({self._governance!r})"

    @staticmethod
    def _wait(ref: ray.ObjectRef[R]) -> R:
        try:
            result: R = ray.get(ref)
        except RayTaskError as exc:  # re-raise the governance decision itself
            if isinstance(exc.cause, EntaiError):
                raise exc.cause from None
            raise
        return result

    def authorize(
        self, caller: str, action: str, resource: str, request_id: str | None
    ) -> Decision:
        """Remote :meth:`GovernanceChecker.authorize`."""
        return self._wait(
            self._governance.submit(
                GovernanceChecker.authorize, caller, action, resource, request_id
            )
        )

    def authorize_features(
        self, caller: str, features: Mapping[str, str], resource: str, request_id: str | None
    ) -> Decision:
        """Remote :meth:`GovernanceChecker.authorize_features`."""
        return self._wait(
            self._governance.submit(
                GovernanceChecker.authorize_features, caller, dict(features), resource, request_id
            )
        )

    def snapshot_for_cache(self, usage: Mapping[UsageKey, int] | None) -> CacheSnapshot:
        """Remote :meth:`GovernanceChecker.snapshot_for_cache`."""
        return self._wait(
            self._governance.submit(
                GovernanceChecker.snapshot_for_cache, dict(usage) if usage else None
            )
        )


def actor_auth_cache(
    governance: ActorService[GovernanceChecker], *, ttl_s: float = 5.0
) -> AuthCache:
    """An auth cache in front of the running governance service."""
    return AuthCache(ActorGovernance(governance), ttl_s=ttl_s)
