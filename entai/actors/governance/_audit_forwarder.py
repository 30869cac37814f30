"""Forwarding audit events to the GovernanceChecker actor from other services.

One writer owns the audit log (the ``entai-governance`` actor); the registry, the
drift monitor and the retraining workflow hand their events to it through
:class:`GovernanceAuditor`. It holds only a namespace, so it pickles into actors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from entai.actors.governance._checker import ACTOR_NAME as GOVERNANCE_ACTOR
from entai.shared.core import EntaiError

__all__ = ["GovernanceAuditor"]

logger = logging.getLogger(__name__)


class GovernanceAuditor:
    """Audits through the ``entai-governance`` actor's ``audit`` method, when it exists.

    Args:
        namespace: Ray namespace of the governance actor.
        timeout_s: How long to wait for the audit entry to be written.
    """

    def __init__(self, namespace: str, *, timeout_s: float = 10.0) -> None:
        self.namespace = namespace
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"GovernanceAuditor(namespace={self.namespace!r})"

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
        import ray

        if not ray.is_initialized():
            logger.info("not audited: Ray is not initialised", extra={"action": action})
            return False
        try:
            handle: Any = ray.get_actor(GOVERNANCE_ACTOR, namespace=self.namespace)
            ref = handle.audit.remote(
                action,
                principal,
                resource,
                decision,
                details=dict(details or {}),
                request_id=request_id,
            )
            ray.get(ref, timeout=self.timeout_s)
        except ValueError:
            logger.warning(
                "not audited: no governance actor",
                extra={"action": action, "namespace": self.namespace},
            )
            return False
        except (ray.exceptions.RayError, EntaiError) as exc:
            logger.warning(
                "not audited: governance call failed",
                extra={"action": action, "error": type(exc).__name__},
            )
            return False
        return True

    __call__ = audit
