"""Forwarding audit events to the GovernanceChecker actor from other services.

One writer owns the audit log (the ``entai-governance`` actor); the registry, the
drift monitor and the retraining workflow hand their events to it through
:class:`GovernanceAuditor`, built by the services wiring with the governance
service's handle. It pickles into actors with that handle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray

from entai.actors.core import ActorService
from entai.actors.governance._checker import GovernanceChecker
from entai.shared.core import EntaiError

__all__ = ["GovernanceAuditor"]

logger = logging.getLogger(__name__)


class GovernanceAuditor:
    """Audits through the governance service's ``audit`` method.

    Args:
        governance: The governance service; ``None`` (no platform running) logs each
            event as not audited instead.
        timeout_s: How long to wait for the audit entry to be written.
    """

    def __init__(
        self, governance: ActorService[GovernanceChecker] | None, *, timeout_s: float = 10.0
    ) -> None:
        self.governance = governance
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"GovernanceAuditor(governance={self.governance!r})"

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
        """Write one entry; False (and a log line) when governance is not reachable."""
        if self.governance is None:
            logger.warning("not audited: no governance service", extra={"action": action})
            return False
        try:
            ref = self.governance.submit(
                GovernanceChecker.audit,
                action,
                principal,
                resource,
                decision,
                details=dict(details or {}),
                request_id=request_id,
            )
            ray.get(ref, timeout=self.timeout_s)
        except (ray.exceptions.RayError, EntaiError) as exc:
            logger.warning(
                "not audited: governance call failed",
                extra={"action": action, "error": type(exc).__name__},
            )
            return False
        return True

    __call__ = audit
