"""The audit anchor kept in PostgreSQL: one row per log, moved only forward.

The table (created if missing) holds the latest anchor of each log, keyed by
``log_id``. A write replaces the row only when it advances ``seq`` (or repeats the
same entry): the database itself refuses to move an anchor back, so rolling it back
takes a direct ``UPDATE`` by someone holding write access to that table; and even then
the anchor's MAC needs the audit key, which the database never sees.
"""

from __future__ import annotations

import re

from entai.shared.core import AuditIntegrityError, ConfigError
from entai.shared.governance._audit_chain import Anchor
from entai.shared.governance._postgres import PostgresConnection

__all__ = ["PostgresAnchorStore"]

_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_COLUMNS = ("seq", "hash", "keyed_from", "size", "ts", "mac")


class PostgresAnchorStore:
    """The latest anchor of one log in a PostgreSQL table.

    Args:
        dsn: libpq connection string or URI (a secret: never logged or put in errors).
        table: Table name (lower-case letters, digits, ``_``); created if missing.
        log_id: Which log's anchor this is (several logs may share the table).
        connect_timeout_s: How long to wait for the server.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "entai_audit_anchors",
        log_id: str = "entai",
        connect_timeout_s: int = 5,
    ) -> None:
        if not _TABLE.match(table):
            raise ConfigError(
                f"security.audit_anchor.table {table!r} must be a lower-case SQL identifier",
                details={"field": "security.audit_anchor.table"},
            )
        if not log_id:
            raise ConfigError(
                "security.audit_anchor.log_id must not be empty",
                details={"field": "security.audit_anchor.log_id"},
            )
        from psycopg2 import sql  # kept out of `import entai.shared` (a light path)

        self.table = table
        self.log_id = log_id
        self._t = sql.Identifier(table)
        self._db = PostgresConnection(
            dsn,
            f"audit anchor store (table {table}, log {log_id})",
            [
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    "log_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL, "
                    "keyed_from BIGINT NOT NULL, size BIGINT NOT NULL, ts TEXT NOT NULL, "
                    "mac TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(self._t)
            ],
            connect_timeout_s=connect_timeout_s,
            details={"anchor_store": self.name},
        )

    def __repr__(self) -> str:
        return f"PostgresAnchorStore(table={self.table!r}, log_id={self.log_id!r})"

    @property
    def name(self) -> str:
        return f"postgresql table {self.table} (log {self.log_id})"

    def close(self) -> None:
        """Close the connection (it is opened again on the next call)."""
        self._db.close()

    def read(self) -> Anchor | None:
        from psycopg2 import sql

        rows = self._db.run(
            sql.SQL("SELECT seq, hash, keyed_from, size, ts, mac FROM {} WHERE log_id = %s").format(
                self._t
            ),
            (self.log_id,),
        )
        if not rows:
            return None
        try:
            return Anchor.from_mapping(dict(zip(_COLUMNS, rows[0], strict=True)))
        except ValueError as exc:
            raise AuditIntegrityError(
                f"the anchor in {self.name} is malformed: {exc}",
                details={"anchor_store": self.name},
            ) from exc

    def write(self, anchor: Anchor) -> None:
        """Insert or move the anchor forward.

        Raises:
            AuditIntegrityError: when the stored anchor is ahead of this one, or at the
                same entry with another hash (another writer, or a rewritten log).
        """
        from psycopg2 import sql

        statement = sql.SQL(
            "INSERT INTO {t} AS a (log_id, seq, hash, keyed_from, size, ts, mac) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (log_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, "
            "keyed_from = EXCLUDED.keyed_from, size = EXCLUDED.size, ts = EXCLUDED.ts, "
            "mac = EXCLUDED.mac, updated_at = now() "
            "WHERE a.seq < EXCLUDED.seq OR (a.seq = EXCLUDED.seq AND a.hash = EXCLUDED.hash) "
            "RETURNING seq"
        ).format(t=self._t)
        values = (anchor.seq, anchor.hash, anchor.keyed_from, anchor.size, anchor.ts, anchor.mac)
        if self._db.run(statement, (self.log_id, *values)):
            return
        stored = self.read()
        raise AuditIntegrityError(
            f"the anchor in {self.name} is at entry {stored.seq if stored else '?'}, which "
            f"entry {anchor.seq} of this writer cannot replace (another writer, or a "
            "rewritten log)",
            details={"anchor_store": self.name, "seq": anchor.seq},
        )
