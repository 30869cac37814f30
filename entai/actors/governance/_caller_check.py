"""CallerCheck: a data-plane actor checks the credential its caller presents.

The feature shards and the drift monitor change state (and the shards hand out bulk
dumps) for whoever reaches them on the Ray cluster, so each such method takes the
caller's credential and asks a :class:`CallerCheck` before doing anything:

* a **service credential** (``entai-svc.<service>.<mac>``) is an HMAC check against the
  platform's service secret; a verified string is remembered, so the next call with
  it is one dict lookup. Any platform service passes (stream workers, the erasure
  coordinator, Serve replicas, resharding): only a process that holds the secret can
  make one.
* an **API token** is looked up through the governance service, read-only: the
  actor keeps a copy of the governance state (policy and active token hashes,
  :class:`~entai.actors.governance._auth_cache.AuthCache`, refreshed at most every
  ``security.auth_guard.cache_ttl_s``, 5 s by default, and only when a token is
  presented) and asks ``lookup_token`` about a token that copy does not know. The
  principal of a token is remembered for that TTL, so a stream of writes with one
  token costs no call per batch; a revoked token or a removed role stops working
  within the TTL. The token's principal must hold the permission on the resource in
  the policy (scoped grants such as ``features:write: ["view:user_*"]`` apply).

Refusals raise :class:`~entai.shared.core.AuthenticationError` (no credential, a
forged or unknown one) or :class:`~entai.shared.core.PermissionDeniedError` (the
token's principal lacks the permission), the classes the governance service raises;
they are logged here, not written to the audit log (the governance service's
``lookup_token`` writes nothing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from entai.actors.core import NamedActorService
from entai.actors.governance._actor_backend import ActorGovernance
from entai.actors.governance._auth_cache import AuthCache
from entai.actors.governance._checker import ACTOR_NAME, GovernanceChecker
from entai.shared.core import AuthenticationError, ServiceUnavailableError
from entai.shared.governance import (
    SERVICE_PREFIX,
    Decision,
    Permission,
    Policy,
    Principal,
    service_credential,
    service_of,
)
from entai.shared.settings import EntaiSettings, resolve_service_secret

__all__ = ["CallerCheck"]

logger = logging.getLogger(__name__)

_MAX_REMEMBERED = 4096
"""Verified credentials remembered per actor; the memory is cleared when it is full."""


class CallerCheck:
    """Decides whether a credential may do one thing on one resource.

    Args:
        service_secret: The platform's service secret (``resolve_service_secret``).
        tokens: The actor's copy of the governance state, for API tokens; None
            refuses every API token (only service credentials pass).
        ttl_s: How long a token's principal is remembered.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        service_secret: bytes,
        tokens: AuthCache | None,
        *,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = service_secret
        self._tokens = tokens
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, str] = {}
        self._principals: dict[str, tuple[Principal, float]] = {}

    @classmethod
    def of(cls, settings: EntaiSettings, service: str) -> CallerCheck:
        """The check of the platform actor ``service``, built in the actor's process.

        It reads the service secret from ``settings`` and asks the platform's running
        governance service (found by name when a token first needs it) about tokens,
        presenting ``service``'s own credential for its snapshots.
        """
        secret = resolve_service_secret(settings)
        guard = settings.security.auth_guard
        # Found on first use: the shards start before governance, and restart alone.
        governance: NamedActorService[GovernanceChecker] = NamedActorService(
            ACTOR_NAME,
            settings.ray.namespace,
            unavailable="the governance service is not running: API tokens cannot be checked",
        )
        backend = ActorGovernance(governance, timeout_s=guard.governance_timeout_s)
        cache = AuthCache(
            backend,
            service_credential(secret, service),
            ttl_s=guard.cache_ttl_s,
            max_stale_s=guard.max_stale_s,
        )
        return cls(secret, cache, ttl_s=guard.cache_ttl_s)

    def __repr__(self) -> str:
        return f"CallerCheck(tokens={self._tokens is not None}, ttl_s={self._ttl_s})"

    def require(self, credential: object, permission: Permission, resource: str) -> str:
        """The caller's name when ``credential`` may do ``permission`` on ``resource``.

        Args:
            credential: A platform service credential, or an entai API token.

        Raises:
            AuthenticationError: no credential, anything but a string, a service
                credential whose MAC is wrong, or a token that is malformed, unknown,
                expired or revoked (or no governance service to ask about it).
            PermissionDeniedError: the token's principal lacks the permission there.
        """
        if not credential or not isinstance(credential, str):
            raise self._refuse(
                "a credential is required (an API token or a service credential)", "missing"
            )
        service = self._services.get(credential)
        if service is not None:
            return service
        if credential.startswith(SERVICE_PREFIX):
            return self._service(credential)
        principal, policy_of = self._principal(credential)
        decision: Decision = policy_of.authorize(principal, permission, resource)
        if not decision.allowed:
            logger.warning(
                "caller refused: %s", decision.reason, extra={"principal": principal.name}
            )
        return decision.raise_if_denied().principal

    def require_all(
        self, credential: object, permission: Permission, resources: Sequence[str]
    ) -> str:
        """:meth:`require` on each of ``resources``.

        Raises:
            ValueError: for no resource (nothing would be checked).
        """
        if not resources:
            raise ValueError("require_all needs at least one resource")
        names = [self.require(credential, permission, r) for r in resources]
        return names[0]

    def _service(self, credential: str) -> str:
        service = service_of(self._secret, credential)
        if service is None:
            raise self._refuse("the service credential is not valid on this platform", "forged")
        with self._lock:
            if len(self._services) >= _MAX_REMEMBERED:
                self._services.clear()
            self._services[credential] = service
        return service

    def _principal(self, token: str) -> tuple[Principal, Policy]:
        """The token's principal (remembered for ``ttl_s``) and the current policy."""
        if self._tokens is None:
            raise self._refuse("this actor accepts service credentials only", "no_governance")
        try:
            policy = self._tokens.policy()
        except ServiceUnavailableError as exc:
            raise self._refuse(f"cannot check the token: {exc.message}", "unavailable") from exc
        now = self._clock()
        known = self._principals.get(token)
        if known is not None and now - known[1] < self._ttl_s:
            return known[0], policy
        principal = self._tokens.principal_local(token) or self._tokens.lookup(token)
        if principal is None:
            raise self._refuse("token is unknown, expired or revoked", "unknown")
        with self._lock:
            if len(self._principals) >= _MAX_REMEMBERED:
                self._principals.clear()
            self._principals[token] = (principal, now)
        return principal, policy

    @staticmethod
    def _refuse(message: str, reason: str) -> AuthenticationError:
        logger.warning("caller refused: %s", message, extra={"reason": reason})
        return AuthenticationError(message, details={"reason": reason})
