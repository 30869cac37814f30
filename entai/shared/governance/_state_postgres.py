"""Governance state in PostgreSQL: policy versions and token records (with the marker
of the first admin token).

A cluster's head pod loses its local disk when it restarts and its pods share no
file system, so the governance service of a production deployment keeps its state in
the PostgreSQL server the cluster already runs (MLflow's). Tables are named
``<prefix>policy``, ``<prefix>tokens`` and ``<prefix>bootstrap`` and are created if
missing; the audit log is in :mod:`entai.shared.governance._audit_postgres`.

Each store holds one :class:`~entai.shared.governance._postgres.PostgresConnection`.
The DSN is a secret: it is never logged nor put in an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from entai.shared.governance._policy import Policy
from entai.shared.governance._postgres import PostgresConnection, check_prefix
from entai.shared.governance._tokens import TokenRecord, TokenStore, already_bootstrapped

__all__ = ["PostgresPolicyStore", "PostgresTokenStore"]


class PostgresPolicyStore:
    """Every version of the policy, one row each; the highest version is in force.

    The policy file (a ConfigMap in a cluster) seeds the table and wins whenever its
    ``version`` is higher than the stored one (an operator rolled out a new policy);
    changes made through the service (``set_principal``) are stored as new versions
    here, so they survive a restart without writing the read-only file.

    Args:
        dsn: libpq connection string or URI (a secret).
        table_prefix: The tables' prefix (``<prefix>policy``).
    """

    def __init__(self, dsn: str, *, table_prefix: str = "entai_gov_") -> None:
        from psycopg2 import sql

        self.table = f"{check_prefix(table_prefix)}policy"
        self._t = sql.Identifier(self.table)
        self._db = PostgresConnection(
            dsn,
            "governance policy",
            [
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version BIGINT PRIMARY KEY, "
                    "document TEXT NOT NULL, source TEXT NOT NULL, "
                    "stored_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(self._t)
            ],
        )

    def __repr__(self) -> str:
        return f"PostgresPolicyStore(table={self.table!r})"

    @property
    def name(self) -> str:
        """Where the policy is kept, for messages."""
        return f"postgresql table {self.table}"

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def load(self, seed: Policy | None, seed_source: str) -> Policy | None:
        """The policy in force: the stored one, or ``seed`` when it is newer (then stored).

        Returns:
            None when neither the table nor ``seed`` has a policy.

        Raises:
            ConfigError: when the stored document is not a valid policy.
        """
        from psycopg2 import sql

        rows = self._db.run(
            sql.SQL("SELECT version, document FROM {} ORDER BY version DESC LIMIT 1").format(
                self._t
            )
        )
        stored = (
            Policy.from_yaml_text(rows[0][1], f"policy version {rows[0][0]} in {self.name}")
            if rows
            else None
        )
        if seed is not None and (stored is None or seed.version > stored.version):
            self.save(seed, seed_source)
            return seed
        return stored

    def save(self, policy: Policy, source: str) -> None:
        """Store ``policy`` as its version (replacing a row of the same version)."""
        from psycopg2 import sql

        self._db.run(
            sql.SQL(
                "INSERT INTO {} (version, document, source) VALUES (%s, %s, %s) "
                "ON CONFLICT (version) DO UPDATE SET document = EXCLUDED.document, "
                "source = EXCLUDED.source, stored_at = now()"
            ).format(self._t),
            (policy.version, policy.to_yaml_text(), source),
        )


class PostgresTokenStore(TokenStore):
    """Token records in ``<prefix>tokens``, one row each; the bootstrap marker in
    ``<prefix>bootstrap`` (at most one row).

    Records are read once at start and kept in memory, as in the file store: the
    governance service is the one writer. The first admin token and its marker are
    written in one transaction, so a second bootstrap (even a concurrent one) is
    refused and never leaves a token behind.

    Args:
        dsn: libpq connection string or URI (a secret).
        table_prefix: The tables' prefix.
    """

    def __init__(self, dsn: str, *, table_prefix: str = "entai_gov_") -> None:
        from psycopg2 import sql

        prefix = check_prefix(table_prefix)
        self.table = f"{prefix}tokens"
        self.marker_table = f"{prefix}bootstrap"
        self._t = sql.Identifier(self.table)
        self._m = sql.Identifier(self.marker_table)
        self._db = PostgresConnection(
            dsn,
            "governance tokens",
            [
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (token_id TEXT PRIMARY KEY, "
                    "principal TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
                    "expires_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, secret_hash TEXT NOT NULL)"
                ).format(self._t),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id SMALLINT PRIMARY KEY CHECK (id = 1), "
                    "token_id TEXT NOT NULL, principal TEXT NOT NULL, "
                    "created_at TIMESTAMPTZ NOT NULL)"
                ).format(self._m),
            ],
        )
        self._records = {r.token_id: r for r in self._load()}

    def __repr__(self) -> str:
        return f"PostgresTokenStore(table={self.table!r})"

    @property
    def name(self) -> str:
        return f"postgresql table {self.table}"

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _load(self) -> list[TokenRecord]:
        from psycopg2 import sql

        rows = self._db.run(
            sql.SQL(
                "SELECT token_id, principal, created_at, expires_at, revoked_at, secret_hash "
                "FROM {}"
            ).format(self._t)
        )
        return [
            TokenRecord(
                token_id=r[0],
                principal=r[1],
                created_at=r[2],
                expires_at=r[3],
                revoked_at=r[4],
                secret_hash=r[5],
            )
            for r in rows
        ]

    def _upsert(self) -> Any:
        from psycopg2 import sql

        return sql.SQL(
            "INSERT INTO {} (token_id, principal, created_at, expires_at, revoked_at, "
            "secret_hash) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (token_id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at, "
            "expires_at = EXCLUDED.expires_at"
        ).format(self._t)

    @staticmethod
    def _values(record: TokenRecord) -> tuple[Any, ...]:
        return (
            record.token_id,
            record.principal,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            record.secret_hash,
        )

    def _persist(self, record: TokenRecord) -> None:
        self._db.run(self._upsert(), self._values(record))

    def bootstrapped(self) -> dict[str, Any] | None:
        from psycopg2 import sql

        rows = self._db.run(
            sql.SQL("SELECT token_id, principal, created_at FROM {} WHERE id = 1").format(self._m)
        )
        if not rows:
            return None
        token_id, principal, created_at = rows[0]
        return {
            "token_id": token_id,
            "principal": principal,
            "created_at": created_at.isoformat(),
        }

    def bootstrap(self, principal: str, *, now: datetime | None = None) -> tuple[str, TokenRecord]:
        from psycopg2 import sql

        token, record = self._mint(principal, None, now)
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (id, token_id, principal, created_at) VALUES (1, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id"
                ).format(self._m),
                (record.token_id, record.principal, record.created_at),
            )
            claimed = cur.fetchall()
            if claimed:
                cur.execute(self._upsert(), self._values(record))
        if not claimed:
            raise already_bootstrapped(self.bootstrapped() or {}, self.name)
        self._records[record.token_id] = record
        return token, record
