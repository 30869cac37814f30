"""The audit anchor kept in PostgreSQL: one row per log, moved only forward.

The table (created if missing) holds the latest anchor of each log, keyed by
``log_id``. A write replaces the row only when it advances ``seq`` (or repeats the
same entry): the database itself refuses to move an anchor back, so rolling it back
takes a direct ``UPDATE`` by someone holding write access to that table; and even then
the anchor's MAC needs the audit key, which the database never sees.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from entai.shared.core import AuditIntegrityError, ConfigError, ServiceUnavailableError
from entai.shared.governance._audit_chain import Anchor

__all__ = ["PostgresAnchorStore"]

logger = logging.getLogger(__name__)

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
        self._dsn = dsn
        self.table = table
        self.log_id = log_id
        self._timeout = connect_timeout_s
        self._conn: Any = None

    def __repr__(self) -> str:
        return f"PostgresAnchorStore(table={self.table!r}, log_id={self.log_id!r})"

    @property
    def name(self) -> str:
        return f"postgresql table {self.table} (log {self.log_id})"

    def close(self) -> None:
        """Close the connection (it is opened again on the next call)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> Any:
        # psycopg2 is imported here to keep it out of `import entai.shared` (a light path).
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self._dsn, connect_timeout=self._timeout)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    "log_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL, "
                    "keyed_from BIGINT NOT NULL, size BIGINT NOT NULL, ts TEXT NOT NULL, "
                    "mac TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(sql.Identifier(self.table))
            )
        return conn

    def _run(self, statement: Any, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Execute once, reconnecting once if the connection was lost."""
        import psycopg2

        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                with self._conn.cursor() as cur:
                    cur.execute(statement, params)
                    return list(cur.fetchall()) if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                if attempt == 2:
                    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise ServiceUnavailableError(
                        f"audit anchor store ({self.name}) is not reachable: "
                        f"{type(exc).__name__} {first_line}".rstrip(),
                        details={"anchor_store": self.name},
                    ) from None
                logger.warning("audit anchor store connection lost; reconnecting")
        raise AssertionError("unreachable")

    def read(self) -> Anchor | None:
        from psycopg2 import sql

        rows = self._run(
            sql.SQL("SELECT seq, hash, keyed_from, size, ts, mac FROM {} WHERE log_id = %s").format(
                sql.Identifier(self.table)
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
        ).format(t=sql.Identifier(self.table))
        values = (anchor.seq, anchor.hash, anchor.keyed_from, anchor.size, anchor.ts, anchor.mac)
        if self._run(statement, (self.log_id, *values)):
            return
        stored = self.read()
        raise AuditIntegrityError(
            f"the anchor in {self.name} is at entry {stored.seq if stored else '?'}, which "
            f"entry {anchor.seq} of this writer cannot replace (another writer, or a "
            "rewritten log)",
            details={"anchor_store": self.name, "seq": anchor.seq},
        )
