"""The GovernanceChecker service, where it keeps its state, its caller-side cache, the
audit forwarder and the data-plane actors' check of their callers (:class:`CallerCheck`)."""

from __future__ import annotations

from entai.actors.governance._actor_backend import (
    ActorGovernance,
    actor_auth_cache,
)
from entai.actors.governance._audit_forwarder import (
    Auditor,
    GovernanceAuditor,
)
from entai.actors.governance._auth_cache import (
    AuthCache,
    CachedToken,
    CacheSnapshot,
    GovernanceBackend,
    UsageKey,
)
from entai.actors.governance._auth_failures import (
    OTHER_CLIENTS,
    AuthFailureTally,
    FailedAuthWindow,
)
from entai.actors.governance._caller_check import CallerCheck
from entai.actors.governance._checker import (
    ACTOR_NAME,
    AUTH_GROUP,
    GovernanceChecker,
    GovernanceCheckerActor,
    start_governance,
)
from entai.actors.governance._state import (
    GovernanceState,
    PolicyKeeper,
    open_state,
)

__all__ = [
    "ACTOR_NAME",
    "AUTH_GROUP",
    "OTHER_CLIENTS",
    "ActorGovernance",
    "Auditor",
    "AuthCache",
    "AuthFailureTally",
    "CacheSnapshot",
    "CachedToken",
    "CallerCheck",
    "FailedAuthWindow",
    "GovernanceAuditor",
    "GovernanceBackend",
    "GovernanceChecker",
    "GovernanceCheckerActor",
    "GovernanceState",
    "PolicyKeeper",
    "UsageKey",
    "actor_auth_cache",
    "open_state",
    "start_governance",
]
