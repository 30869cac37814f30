"""Other services' door to the GovernanceChecker: who a caller is, and audit entries.

One writer owns the audit log (the ``entai-governance`` actor). The registry, the drift
monitor and the retraining workflow reach it through :class:`GovernanceAuditor`, built
by the services wiring with the governance service and the service's own credential
(:func:`entai.shared.governance.service_credential`): the credential lets a service
record an entry in the name of the user it acted for, and nothing a user's token could
not do otherwise. It pickles into actors with the handle and the credential.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import ray

from entai.actors.core import ActorService, Service
from entai.actors.governance._checker import GovernanceChecker
from entai.shared.core import EntaiError, ServiceUnavailableError

__all__ = ["Auditor", "GovernanceAuditor"]

logger = logging.getLogger(__name__)

R = TypeVar("R")


class Auditor(Protocol):
    """What a service asks of governance: who a caller is, and audit entries.

    :class:`GovernanceAuditor` in a platform; tests give a fake.
    """

    def principal_for(
        self, token: str, permission: str, resource: str, request_id: str | None = None
    ) -> str:
        """The token's principal when it holds ``permission`` on ``resource``; raises
        AuthenticationError / PermissionDeniedError otherwise."""
        ...

    def audit(
        self,
        action: str,
        principal: str,
        resource: str,
        decision: str,
        *,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Record one event in ``principal``'s name; True when it reached the audit log."""
        ...


class GovernanceAuditor:
    """Authorizes callers and audits through the governance service.

    Args:
        governance: The governance service (the running actor, or a local checker
            when no platform runs); ``None`` logs each event as not audited and
            refuses every authorization.
        credential: This service's credential, presented with every audit entry.
        timeout_s: How long to wait for the governance actor.
    """

    def __init__(
        self,
        governance: Service[GovernanceChecker] | None,
        credential: str = "",
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.governance = governance
        self._credential = credential
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"GovernanceAuditor(governance={self.governance!r})"

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.governance, ActorService):
            return ray.get(self.governance.submit(method, *args, **kwargs), timeout=self.timeout_s)
        assert self.governance is not None
        return self.governance.call(method, *args, **kwargs)

    def principal_for(
        self, token: str, permission: str, resource: str, request_id: str | None = None
    ) -> str:
        """The principal behind ``token`` when it holds ``permission`` on ``resource``.

        Raises:
            AuthenticationError: for a missing, bad, expired or revoked token.
            PermissionDeniedError: without the permission (the denial is audited).
            ServiceUnavailableError: when no governance service answers.
        """
        if self.governance is None:
            raise ServiceUnavailableError(
                "no governance service: the caller cannot be authenticated",
                details={"service": "governance"},
            )
        try:
            return str(
                self._call(GovernanceChecker.principal_for, token, permission, resource, request_id)
            )
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise ServiceUnavailableError(
                "the governance service did not answer; retry",
                details={"service": "governance", "error": type(exc).__name__},
            ) from exc

    def audit(
        self,
        action: str,
        principal: str,
        resource: str,
        decision: str,
        *,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Write one entry in ``principal``'s name; False (and a log line) when
        governance is not reachable or refuses this service's credential."""
        if self.governance is None:
            logger.warning("not audited: no governance service", extra={"action": action})
            return False
        try:
            self._call(
                GovernanceChecker.audit,
                self._credential,
                action,
                resource,
                decision,
                principal=principal,
                details=dict(details or {}),
                request_id=request_id,
            )
        except (ray.exceptions.RayError, EntaiError) as exc:
            logger.warning(
                "not audited: governance call failed",
                extra={"action": action, "error": type(exc).__name__},
            )
            return False
        return True

    __call__ = audit
