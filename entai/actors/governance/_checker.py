"""The GovernanceChecker service: tokens, authorization decisions and the audit log.

One named, detached actor (``entai-governance``) owns the policy, the token store and
the audit log; every piece of its state is durable (files under the home, or
PostgreSQL in a cluster: :mod:`entai.actors.governance._state`), so a restarted actor
carries on where it stopped. It also mints the first admin token of a production
deployment, once, for whoever presents the bootstrap secret
(:meth:`GovernanceChecker.bootstrap_admin`). Callers on the hot path put an
:class:`~entai.actors.governance._auth_cache.AuthCache` in front of it.

Token lookups for serving replicas (:meth:`GovernanceChecker.lookup_token`) run in a
concurrency group of their own (:data:`AUTH_GROUP`), on threads beside the one that
writes: a replica asking about a token it does not know never waits behind audit
writes and their fsyncs. That method only reads (one dict read of the token store, the
current policy object) and writes nothing.

What is audited: every denial and failed authentication in full (failures that
serving replicas answered themselves arrive counted per client and window,
:meth:`GovernanceChecker.record_auth_failures`), every admin action
(tokens, principals, audit queries) in full, and allowed high-volume reads
(``features:read``, ``predict``) as one aggregate entry per (principal, action,
resource, outcome) and window, with a count. Aggregates are flushed when a window
(``audit_window_s``) has passed at the next call, on :meth:`flush_audit` and before
:meth:`verify_audit` and :meth:`query_audit`; the counts of an unflushed window are
lost if the actor dies.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import ray

from entai.actors.core import service_actor
from entai.actors.governance._auth_cache import CachedToken, CacheSnapshot, UsageKey
from entai.actors.governance._auth_failures import FailedAuthWindow
from entai.actors.governance._state import open_state
from entai.shared.core import AuthenticationError, ConfigError, ConflictError, NotFoundError
from entai.shared.governance import (
    AuditEntry,
    Decision,
    Permission,
    Principal,
    TokenRecord,
    VerifyReport,
    already_bootstrapped,
    service_of,
    service_principal,
)
from entai.shared.settings import MIN_KEY_BYTES, EntaiSettings, resolve_service_secret

__all__ = [
    "ACTOR_NAME",
    "AUTH_GROUP",
    "GovernanceChecker",
    "GovernanceCheckerActor",
    "start_governance",
]

logger = logging.getLogger(__name__)

ACTOR_NAME = "entai-governance"
AUTH_GROUP = "auth"
"""The concurrency group of the read-only token lookups, with its own threads."""
_AUTH_THREADS = 4
HIGH_VOLUME = frozenset({Permission.FEATURES_READ.value, Permission.PREDICT.value})
_SYSTEM = "system"
_ANONYMOUS = "anonymous"


class GovernanceChecker:
    """Authentication, authorization with PII rules, token admin and the audit log.

    Args:
        settings: Where the policy, tokens and audit log live
            (``security.governance_store``), the audit log's key and anchor store
            (``security.audit_*``) and the bootstrap secret.
        audit_window_s: Length of the window over which allowed high-volume reads are
            aggregated into one audit entry.
    """

    def __init__(self, settings: EntaiSettings, *, audit_window_s: float = 60.0) -> None:
        self._settings = settings
        state = open_state(settings)
        self._policy_keeper = state.policy
        self._policy = state.policy.load()
        self._tokens = state.tokens
        self._audit = state.audit
        self._window_s = audit_window_s
        self._window_start = time.monotonic()
        self._window_opened = datetime.now(UTC)
        self._usage: Counter[UsageKey] = Counter()
        self._service_secret = resolve_service_secret(settings)
        self._bootstrap_admin_token()

    def _bootstrap_admin_token(self) -> None:
        """First start in embedded mode: one admin token, written 0600; only the path logged."""
        if self._settings.security.mode != "embedded" or self._tokens.list():
            return
        token, record = self._tokens.bootstrap("admin")
        path = self._settings.security.token_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        path.chmod(0o600)
        self._audit.append(
            principal=_SYSTEM,
            action="tokens:create",
            resource=f"token:{record.token_id}",
            decision="allow",
            details={"principal": "admin", "bootstrap": True},
        )
        logger.info(
            "created the admin token for the embedded demo; it is kept in %s",
            path,
            extra={"path": str(path), "token_id": record.token_id},
        )

    # -- authentication and authorization -------------------------------------------

    def authenticate(self, token: object, request_id: str | None = None) -> Principal:
        """The principal a token belongs to.

        Raises:
            AuthenticationError: missing, malformed, unknown, expired or revoked token,
                anything that is not a token (a name, a ``Principal``), or a token whose
                principal is no longer in the policy (audited).
        """
        self._maybe_flush()
        try:
            if not token:
                raise AuthenticationError("no token given", details={"reason": "missing"})
            if not isinstance(token, str):
                raise AuthenticationError(
                    f"an API token is required, not a {type(token).__name__}",
                    details={"reason": "not_a_credential", "given": type(token).__name__},
                )
            name = self._tokens.verify(token)
            principal = self._policy.principals.get(name)
            if principal is None:
                raise AuthenticationError(
                    f"principal {name!r} of this token is not in the policy",
                    details={"reason": "unknown_principal", "principal": name},
                )
        except AuthenticationError as exc:
            self._audit.append(
                principal=_ANONYMOUS,
                action="authenticate",
                resource="*",
                decision="deny",
                request_id=request_id,
                details=dict(exc.details),
            )
            raise
        return principal

    @ray.method(concurrency_group=AUTH_GROUP)
    def lookup_token(self, token_id: str, secret_hash: str) -> Principal | None:
        """The principal of an active token, or None; read-only and never audited.

        Serving replicas ask this about tokens their cache does not know (a token
        minted since their last refresh, or a bad one). It takes the token id and the
        SHA-256 of the secret, so no usable secret crosses the wire, compares the hash
        in constant time and writes nothing: the replica counts failures and sends them
        in aggregate (:meth:`record_auth_failures`). It runs on the actor's
        :data:`AUTH_GROUP` threads, beside the writer.
        """
        record = self._tokens.get(token_id)
        expected = record.secret_hash if record is not None else "0" * 64
        if not hmac.compare_digest(secret_hash, expected) or record is None:
            return None
        if record.state(datetime.now(UTC)) != "active":
            return None
        return self._policy.principals.get(record.principal)

    def record_auth_failures(self, credential: str, windows: Iterable[FailedAuthWindow]) -> int:
        """Audit failed authentications counted by a replica: one entry per client and window.

        Args:
            credential: The replica's service credential (``audit:write``).

        Returns:
            How many entries were written.
        """
        self._maybe_flush()
        self._require(credential, Permission.AUDIT_WRITE, "audit", None)
        written = 0
        for w in windows:
            self._audit.append(
                principal=_ANONYMOUS,
                action="authenticate",
                resource=f"client:{w.client}",
                decision="deny",
                details={
                    "aggregated": True,
                    "count": w.count,
                    "reasons": dict(w.reasons),
                    "first_seen": w.first_seen.isoformat(),
                    "last_seen": w.last_seen.isoformat(),
                    "window_start": w.window_start.isoformat(),
                    "window_end": w.window_end.isoformat(),
                },
            )
            written += 1
        return written

    def _resolve(self, credential: object, request_id: str | None) -> Principal:
        """The principal an API token or a service credential stands for.

        Nothing else is a credential: a name, or a ``Principal`` built by the caller,
        proves nothing (anyone who reaches the Ray cluster can build one), so it is
        refused and the refusal audited.

        Raises:
            AuthenticationError: for anything but an active token or a service
                credential signed with this platform's service secret.
        """
        if isinstance(credential, str):
            service = service_of(self._service_secret, credential)
            if service is not None:
                return service_principal(service)
        return self.authenticate(credential, request_id)

    def _require(
        self,
        credential: str,
        permission: Permission | str,
        resource: str,
        request_id: str | None,
    ) -> Principal:
        """The caller's principal when it holds ``permission`` on ``resource``.

        Only a denial is audited here: the allowed act is what the caller audits.

        Raises:
            AuthenticationError / PermissionDeniedError: as :meth:`authorize`.
        """
        principal = self._resolve(credential, request_id)
        decision = self._policy.authorize(principal, permission, resource)
        if not decision.allowed:
            self._record(decision, request_id)
        return principal

    def principal_for(
        self,
        credential: str,
        action: Permission | str,
        resource: str,
        request_id: str | None = None,
    ) -> str:
        """The name of the caller when it may do ``action`` on ``resource``.

        For services that do the act themselves and audit it with this name (the
        registry's registrant and approver): only a denial is audited here.

        Raises:
            AuthenticationError: for anything but an active token or service credential.
            PermissionDeniedError: without the permission (audited).
        """
        self._maybe_flush()
        return self._require(credential, action, resource, request_id).name

    def _record(self, decision: Decision, request_id: str | None) -> Decision:
        """Audit a decision (aggregate allowed high-volume reads) and raise on denial."""
        if decision.allowed and decision.action in HIGH_VOLUME:
            label = "allow-masked" if decision.masked_features else "allow"
            self._usage[(decision.principal, decision.action, decision.resource, label)] += 1
            return decision
        details: dict[str, Any] = {"reason": decision.reason}
        if decision.masked_features:
            details["features"] = list(decision.masked_features)
        self._audit.append(
            principal=decision.principal,
            action=decision.action,
            resource=decision.resource,
            decision="allow" if decision.allowed else "deny",
            request_id=request_id,
            details=details,
        )
        return decision.raise_if_denied()

    def authorize(
        self,
        caller: str,
        action: Permission | str,
        resource: str = "*",
        request_id: str | None = None,
    ) -> Decision:
        """Decide and audit one request.

        Args:
            caller: An API token, or a platform service's credential.

        Raises:
            AuthenticationError: for a missing/bad/expired/revoked token.
            PermissionDeniedError: when the principal lacks the permission.
        """
        self._maybe_flush()
        principal = self._resolve(caller, request_id)
        return self._record(self._policy.authorize(principal, action, resource), request_id)

    def authorize_features(
        self,
        caller: str,
        features: Mapping[str, object],
        resource: str = "*",
        request_id: str | None = None,
    ) -> Decision:
        """Decide a feature read with the PII rules; see ``Policy.authorize_features``.

        Raises:
            AuthenticationError: for a missing/bad/expired/revoked token.
            PermissionDeniedError: without ``features:read``, or for restricted PII
                features in ``refuse`` mode.
        """
        self._maybe_flush()
        principal = self._resolve(caller, request_id)
        decision = self._policy.authorize_features(principal, features, resource)
        return self._record(decision, request_id)

    def _require_admin(self, caller: str, what: str, request_id: str | None) -> str:
        self._maybe_flush()
        principal = self._resolve(caller, request_id)
        return self._record(
            self._policy.authorize(principal, Permission.ADMIN, what), request_id
        ).principal

    # -- tokens and principals (admin) ------------------------------------------------

    def create_token(
        self,
        caller: str,
        principal: str,
        ttl_s: float | None = None,
        request_id: str | None = None,
    ) -> tuple[str, TokenRecord]:
        """Mint a token for ``principal`` (admin only); the plaintext is returned once.

        Raises:
            NotFoundError: when ``principal`` is not in the policy.
        """
        admin = self._require_admin(caller, "tokens", request_id)
        if principal not in self._policy.principals:
            raise NotFoundError(
                f"principal {principal!r} is not in the policy", details={"principal": principal}
            )
        ttl = None if ttl_s is None else timedelta(seconds=ttl_s)
        token, record = self._tokens.create(principal, ttl)
        expires = None if record.expires_at is None else record.expires_at.isoformat()
        self._audit.append(
            principal=admin,
            action="tokens:create",
            resource=f"token:{record.token_id}",
            decision="allow",
            request_id=request_id,
            details={"principal": principal, "expires_at": expires},
        )
        return token, record

    def bootstrap_admin(
        self, secret: str, principal: str = "admin", request_id: str | None = None
    ) -> tuple[str, TokenRecord]:
        """Mint the first admin token for whoever presents the one-time bootstrap secret.

        Only once per token store: the second call is refused even with the right
        secret, and so is a call when an admin token already exists. Every outcome
        is audited (``tokens:bootstrap``).

        Raises:
            ConfigError: when the service has no bootstrap secret (or one shorter than
                16 bytes), or ``principal`` does not hold ``admin`` in the policy.
            AuthenticationError: for a wrong secret.
            ConflictError: when the first admin token was created before.
        """
        self._maybe_flush()
        expected = self._settings.security.resolved_bootstrap_secret()
        if expected is None or len(expected) < MIN_KEY_BYTES:
            raise ConfigError(
                "the governance service has no bootstrap secret (of at least "
                f"{MIN_KEY_BYTES} bytes): set security.bootstrap_secret "
                "(ENTAI_SECURITY__BOOTSTRAP_SECRET) or bootstrap_secret_file on the head",
                details={"field": "security.bootstrap_secret"},
            )
        if not hmac.compare_digest(secret.strip().encode(), expected):
            self._deny_bootstrap(principal, "wrong bootstrap secret", request_id)
            raise AuthenticationError(
                "the bootstrap secret is wrong", details={"reason": "bad_bootstrap_secret"}
            )
        try:
            self._refuse_second_bootstrap()
        except ConflictError as exc:
            self._deny_bootstrap(principal, exc.message, request_id)
            raise
        holder = self._policy.principals.get(principal)
        if holder is None or not self._policy.authorize(holder, Permission.ADMIN, "tokens").allowed:
            raise ConfigError(
                f"principal {principal!r} does not hold the admin role in the policy "
                f"({self._policy_keeper.name}): the first token must be an admin's",
                details={"field": "security.policy_file", "principal": principal},
            )
        token, record = self._tokens.bootstrap(principal)
        self._audit.append(
            principal=_SYSTEM,
            action="tokens:bootstrap",
            resource=f"token:{record.token_id}",
            decision="allow",
            request_id=request_id,
            details={"principal": principal, "bootstrap": True},
        )
        return token, record

    def _refuse_second_bootstrap(self) -> None:
        marker = self._tokens.bootstrapped()
        if marker is not None:
            raise already_bootstrapped(marker, self._tokens.name)
        for record in self._tokens.list():
            holder = self._policy.principals.get(record.principal)
            if holder is not None and self._policy.authorize(holder, Permission.ADMIN, "*").allowed:
                raise ConflictError(
                    f"an admin token exists already ({record.token_id} for {record.principal}): "
                    "bootstrap only creates the first one; use `entai tokens create`",
                    details={"reason": "already_bootstrapped", "token_id": record.token_id},
                )

    def _deny_bootstrap(self, principal: str, reason: str, request_id: str | None) -> None:
        self._audit.append(
            principal=_ANONYMOUS,
            action="tokens:bootstrap",
            resource="tokens",
            decision="deny",
            request_id=request_id,
            details={"principal": principal, "reason": reason},
        )

    def list_tokens(self, caller: str) -> list[TokenRecord]:
        """Every token record (hashes, never secrets); admin only."""
        self._require_admin(caller, "tokens", None)
        return self._tokens.list()

    def revoke_token(
        self, caller: str, token_id: str, request_id: str | None = None
    ) -> TokenRecord:
        """Revoke a token by id (admin only); caches drop it within their TTL.

        Raises:
            NotFoundError: for an unknown token id.
        """
        admin = self._require_admin(caller, "tokens", request_id)
        record = self._tokens.revoke(token_id)
        self._audit.append(
            principal=admin,
            action="tokens:revoke",
            resource=f"token:{token_id}",
            decision="allow",
            request_id=request_id,
            details={"principal": record.principal},
        )
        return record

    def set_principal(
        self,
        caller: str,
        name: str,
        roles: Iterable[str],
        request_id: str | None = None,
    ) -> int:
        """Add or replace a principal's roles (admin only); returns the new policy version."""
        admin = self._require_admin(caller, "policy", request_id)
        role_list = sorted(roles)
        policy = self._policy.with_principal(name, role_list)
        self._policy_keeper.save(policy)
        self._policy = policy
        self._audit.append(
            principal=admin,
            action="policy:set_principal",
            resource=f"principal:{name}",
            decision="allow",
            request_id=request_id,
            details={"roles": role_list, "policy_version": policy.version},
        )
        return policy.version

    # -- audit ------------------------------------------------------------------------

    def audit(
        self,
        credential: str,
        action: str,
        resource: str,
        decision: str,
        *,
        principal: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> AuditEntry:
        """Record an event decided elsewhere (promotion, rollback, erasure, contract).

        The entry is in the name of the credential's principal. Only a platform
        service (``audit:write``) may name another ``principal`` (the approver of a
        promotion the registry carried out); the entry then also names the service.

        Raises:
            AuthenticationError: without a valid token or service credential.
            PermissionDeniedError: naming another principal without ``audit:write``.
        """
        self._maybe_flush()
        caller = self._resolve(credential, request_id)
        name, extra = caller.name, dict(details or {})
        if principal is not None and principal != caller.name:
            self._require(credential, Permission.AUDIT_WRITE, "audit", request_id)
            name, extra["recorded_by"] = principal, caller.name
        return self._audit.append(
            principal=name,
            action=action,
            resource=resource,
            decision=decision,
            request_id=request_id,
            details=extra,
        )

    def flush_audit(self, credential: str | None = None) -> int:
        """Write the pending aggregate entries now; returns how many were written.

        It writes only counts already made, in the names they were counted under, so
        it needs no credential; one given (a caller's token) is checked first.
        """
        if credential is not None:
            self._resolve(credential, None)
        usage, self._usage = self._usage, Counter()
        opened, self._window_opened = self._window_opened, datetime.now(UTC)
        self._window_start = time.monotonic()
        for (principal, action, resource, outcome), count in sorted(usage.items()):
            self._audit.append(
                principal=principal,
                action=action,
                resource=resource,
                decision=outcome,
                details={
                    "aggregated": True,
                    "count": count,
                    "window_start": opened.isoformat(),
                    "window_end": self._window_opened.isoformat(),
                },
            )
        return len(usage)

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._window_start >= self._window_s:
            self.flush_audit()

    def verify_audit(self, credential: str) -> VerifyReport:
        """Flush aggregates (unless the log is sealed), then verify every MAC and the anchor.

        Needs ``audit:read`` (what the report says about the log is audit content).
        """
        self._require(credential, Permission.AUDIT_READ, "audit", None)
        if self._audit.sealed is None:
            self.flush_audit()
        return self._audit.verify()

    def export_audit(self, caller: str) -> bytes:
        """A verifiable bundle of the whole audit log (needs ``audit:read``; audited)."""
        self.flush_audit()
        who = self._resolve(caller, None)
        decision = self._policy.authorize(who, Permission.AUDIT_READ, "audit")
        principal = self._record(decision, None).principal
        self._audit.append(
            principal=principal, action="audit:export", resource="audit", decision="allow"
        )
        return self._audit.export(exported_by=principal)

    def query_audit(
        self,
        caller: str,
        *,
        principal: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Filter the audit log (needs ``audit:read``; the query itself is audited).

        Pending aggregates are flushed first, so counts up to now are included.
        """
        self.flush_audit()
        who = self._resolve(caller, None)
        self._record(self._policy.authorize(who, Permission.AUDIT_READ, "audit"), None)
        return self._audit.query(principal, action, since, until, limit=limit)

    # -- caches -----------------------------------------------------------------------

    def snapshot_for_cache(
        self, credential: str, usage: Mapping[UsageKey, int] | None = None
    ) -> CacheSnapshot:
        """Fold a cache's allowed-request counts into the aggregates; return fresh state.

        Any active token or service credential may take a snapshot (token hashes and
        the policy: no secret). A service's counts are taken as they come; a user's
        client may only report its own principal's.

        Raises:
            AuthenticationError: without a valid token or service credential.
        """
        caller = self._resolve(credential, None)
        if usage:
            if not self._policy.authorize(caller, Permission.AUDIT_WRITE, "audit").allowed:
                usage = {key: n for key, n in usage.items() if key[0] == caller.name}
            self._usage.update(usage)
        self._maybe_flush()
        now = datetime.now(UTC)
        tokens = {
            r.token_id: CachedToken(r.principal, r.secret_hash, r.expires_at)
            for r in self._tokens.list()
            if r.state(now) == "active"
        }
        return CacheSnapshot(policy=self._policy, tokens=tokens, taken_at=now)


# Ray's typed overloads of `ray.remote` omit `concurrency_groups`, which it accepts.
_remote_with_groups: Any = ray.remote
GovernanceCheckerActor = _remote_with_groups(concurrency_groups={AUTH_GROUP: _AUTH_THREADS})(
    GovernanceChecker
)


def start_governance(settings: EntaiSettings, namespace: str | None = None) -> Any:
    """Create (or get) the named detached ``entai-governance`` actor.

    It is detached, restarts forever (``max_restarts=-1``, ``max_task_retries=-1``),
    reserves no CPU and is fetched if it already exists.

    Args:
        settings: Passed to the actor; use absolute paths (``settings.resolved()``),
            since relative ones resolve in the actor's working directory.
        namespace: Ray namespace; ``settings.ray.namespace`` when None.

    Returns:
        The actor handle.
    """
    return service_actor(
        GovernanceCheckerActor, ACTOR_NAME, namespace or settings.ray.namespace, settings
    )
