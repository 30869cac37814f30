"""Where the governance service keeps its state: files under the home, or PostgreSQL.

``security.governance_store`` chooses. ``file`` (the embedded default) keeps the
policy in ``security.policy_file`` (or ``<home>/policy.yaml``), tokens in
``<home>/tokens`` and the audit log under a *local* lake root. ``postgres`` (the
cluster configuration) keeps policy versions, token records, the bootstrap marker and
the audit log in tables of one PostgreSQL database: a head pod that restarts finds all
of it, whatever node it lands on, and the lake may be on an object store. In both
cases the audit log's anchors go to ``security.audit_anchor``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from entai.shared.core import ConfigError
from entai.shared.governance import (
    AuditLog,
    Policy,
    PostgresAuditLog,
    PostgresPolicyStore,
    PostgresTokenStore,
    TokenStore,
)
from entai.shared.settings import (
    EntaiSettings,
    PostgresGovernanceStoreSettings,
    audit_anchor_store,
    resolve_audit_key,
)

__all__ = ["GovernanceState", "PolicyKeeper", "open_state"]

logger = logging.getLogger(__name__)


class PolicyKeeper(Protocol):
    """Loads the policy in force and keeps new versions."""

    @property
    def name(self) -> str:
        """Where the policy is kept, for messages."""
        ...

    def load(self) -> Policy:
        """The policy in force.

        Raises:
            ConfigError: when there is none (production) or it is invalid.
        """
        ...

    def save(self, policy: Policy) -> None:
        """Keep a new version."""
        ...


class FilePolicy:
    """The policy YAML file; the embedded mode writes the default one when it is missing."""

    def __init__(self, path: Path, *, embedded: bool) -> None:
        self.path = path
        self._embedded = embedded

    @property
    def name(self) -> str:
        return f"file {self.path}"

    def load(self) -> Policy:
        if self.path.exists():
            return Policy.from_yaml(self.path)
        if not self._embedded:
            raise ConfigError(
                f"policy file {self.path} does not exist",
                details={"field": "security.policy_file", "path": str(self.path)},
            )
        policy = Policy.default()
        policy.to_yaml(self.path)
        logger.info("wrote the default policy", extra={"path": str(self.path)})
        return policy

    def save(self, policy: Policy) -> None:
        policy.to_yaml(self.path)


class DatabasePolicy:
    """Policy versions in PostgreSQL, seeded by the policy file when it is newer."""

    def __init__(self, store: PostgresPolicyStore, seed: Path | None, *, embedded: bool) -> None:
        self._store = store
        self._seed = seed
        self._embedded = embedded

    @property
    def name(self) -> str:
        return self._store.name

    def load(self) -> Policy:
        seed = None
        if self._seed is not None and self._seed.exists():
            seed = Policy.from_yaml(self._seed)
        policy = self._store.load(seed, f"file {self._seed}")
        if policy is not None:
            return policy
        if not self._embedded:
            raise ConfigError(
                f"no policy: {self._seed or 'security.policy_file'} does not exist and "
                f"{self._store.name} is empty",
                details={"field": "security.policy_file"},
            )
        policy = Policy.default()
        self._store.save(policy, "default")
        return policy

    def save(self, policy: Policy) -> None:
        self._store.save(policy, "governance service")


@dataclass(frozen=True)
class GovernanceState:
    """The governance service's three stores, opened."""

    policy: PolicyKeeper
    tokens: TokenStore
    audit: AuditLog | PostgresAuditLog


def open_state(settings: EntaiSettings) -> GovernanceState:
    """Open the policy, token and audit stores ``security.governance_store`` names.

    Raises:
        ConfigError: for a missing audit key in production, a file store with the lake
            on an object store, or an anchor file under the lake.
        ServiceUnavailableError: when PostgreSQL cannot be reached.
    """
    security = settings.security
    embedded = security.mode == "embedded"
    key = resolve_audit_key(settings)
    anchors = audit_anchor_store(settings)
    store = security.governance_store
    if isinstance(store, PostgresGovernanceStoreSettings):
        dsn, prefix = store.dsn.get_secret_value(), store.table_prefix
        return GovernanceState(
            policy=DatabasePolicy(
                PostgresPolicyStore(dsn, table_prefix=prefix),
                security.policy_file,
                embedded=embedded,
            ),
            tokens=PostgresTokenStore(dsn, table_prefix=prefix),
            audit=PostgresAuditLog(
                dsn,
                key=key,
                anchors=anchors,
                table_prefix=prefix,
                anchor_every=security.audit_anchor_every,
            ),
        )
    return GovernanceState(
        policy=FilePolicy(security.policy_file or settings.home / "policy.yaml", embedded=embedded),
        tokens=TokenStore(settings.home / "tokens"),
        audit=AuditLog.in_lake(
            settings.lake.root, key=key, anchors=anchors, anchor_every=security.audit_anchor_every
        ),
    )
