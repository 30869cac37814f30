"""The audit log in PostgreSQL: the same keyed, anchored chain as the file log.

One row per entry in ``<prefix>audit_log``: ``seq`` (the primary key), the entry's
canonical JSON line (newline included, exactly the line the file log would hold) and
``end_offset``, the bytes of the log up to and including that line. The anchors,
verification and export bundles therefore mean the same as for a file: an anchor's
``size`` is an ``end_offset``, :func:`check_chain` reads the lines in ``seq`` order,
and a bundle holds the lines concatenated.

Writing: each append is one transaction that takes a transaction-level advisory lock
on the table, reads the last row, and inserts the next one. Whoever else appended
since (another governance instance briefly overlapping a restart) is followed only if
its last entry carries the audit key's MAC; otherwise the log is sealed. The primary
key refuses a second entry with the same ``seq``. The anchor is written after the
commit, to the anchor store (keep it in another database or with another role than
this table, so one leaked credential cannot roll both back).

At start the log is checked against its anchor as the file log is (shorter than the
anchor, the anchored entry changed, the last entry not MACed, entries but no anchor:
*sealed*). There is no torn tail (a transaction commits whole) and no legacy
(unkeyed) takeover: this store was introduced after the chain was keyed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from entai.shared.governance._audit_anchor import AnchorStore
from entai.shared.governance._audit_bundle import build_bundle
from entai.shared.governance._audit_chain import AuditEntry, VerifyReport, line_of
from entai.shared.governance._audit_writer import ChainWriter
from entai.shared.governance._postgres import PostgresConnection, check_prefix

__all__ = ["PostgresAuditLog"]


class PostgresAuditLog(ChainWriter):
    """The audit log in a PostgreSQL table, written under the audit key and anchored.

    Args:
        dsn: libpq connection string or URI (a secret).
        key: The audit key (``security.audit_key``).
        anchors: Where the anchors are kept.
        table_prefix: The table is ``<prefix>audit_log``.
        anchor_every: Write an anchor after this many entries (and on close).
    """

    def __init__(
        self,
        dsn: str,
        *,
        key: bytes,
        anchors: AnchorStore,
        table_prefix: str = "entai_gov_",
        anchor_every: int = 1,
    ) -> None:
        from psycopg2 import sql

        self.table = f"{check_prefix(table_prefix)}audit_log"
        self._t = sql.Identifier(self.table)
        self._db = PostgresConnection(
            dsn,
            "audit log",
            [
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (seq BIGINT PRIMARY KEY, line TEXT NOT NULL, "
                    "end_offset BIGINT NOT NULL)"
                ).format(self._t)
            ],
        )
        super().__init__(
            key,
            anchors,
            anchor_every=max(1, anchor_every),
            label=self.name,
            ident={"table": self.table},
            restore="the table",
        )
        self._resume()

    def __repr__(self) -> str:
        return f"PostgresAuditLog(table={self.table!r}, seq={self._seq})"

    @property
    def name(self) -> str:
        """Where the entries are kept, for messages."""
        return f"postgresql table {self.table}"

    def close(self) -> None:
        """Anchor the last entry (if it is not yet) and close the connection."""
        with self._lock:
            try:
                self._anchor_if_behind()
            finally:
                self._db.close()

    # -- start ----------------------------------------------------------------------

    def _row(self, seq: int | None) -> tuple[int, bytes, int] | None:
        """Row ``seq`` (the last row when None) as (seq, line, end_offset), or None."""
        from psycopg2 import sql

        if seq is None:
            statement = sql.SQL("SELECT seq, line, end_offset FROM {} ORDER BY seq DESC LIMIT 1")
        else:
            statement = sql.SQL("SELECT seq, line, end_offset FROM {} WHERE seq = %s")
        rows = self._db.run(statement.format(self._t), () if seq is None else (seq,))
        if not rows:
            return None
        seq, line, end = rows[0]
        return int(seq), str(line).encode(), int(end)

    def _resume(self) -> None:
        anchor, problem = self._read_anchor()
        if problem:
            self._seal(problem)
            return
        last = self._row(None)
        if anchor is None:
            if last is not None:
                self._seal(
                    f"the log has entries but there is no anchor in {self._where} "
                    "(anchor deleted, or the anchor store changed)"
                )
            return
        row = self._row(anchor.seq) if anchor.seq else None
        self._resume_anchored(
            anchor,
            last[2] if last is not None else 0,
            row[1] if row is not None and row[2] == anchor.size else None,
            last[1] if last is not None else None,
            last[0] if last is not None else None,
        )

    # -- writing ----------------------------------------------------------------------

    def _catch_up(self, cur: Any) -> None:
        """Follow entries another writer committed since our last one (under the lock)."""
        from psycopg2 import sql

        cur.execute(
            sql.SQL("SELECT seq, line, end_offset FROM {} ORDER BY seq DESC LIMIT 1").format(
                self._t
            )
        )
        rows = cur.fetchall()
        if not rows:
            if self._seq:
                self._seal(f"the log lost its entries behind the writer (had {self._seq})")
                self._refuse_if_sealed()
            return
        seq, line, end = int(rows[0][0]), str(rows[0][1]).encode(), int(rows[0][2])
        if seq != self._seq or end != self._size:
            self._follow(line, end, seq)

    def _append(self, make: Callable[[], AuditEntry]) -> AuditEntry:
        """Insert the entry in one transaction under the table's advisory lock; after the
        commit, anchor if due."""
        from psycopg2 import sql

        with self._lock:
            self._refuse_if_sealed()
            with self._db.transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                self._catch_up(cur)
                entry = make()
                line = line_of(entry)
                end = self._size + len(line.encode())
                cur.execute(
                    sql.SQL("INSERT INTO {} (seq, line, end_offset) VALUES (%s, %s, %s)").format(
                        self._t
                    ),
                    (entry.seq, line, end),
                )
            self._appended(entry, end)
        return entry

    # -- reading ----------------------------------------------------------------------

    def _lines(self) -> list[bytes]:
        from psycopg2 import sql

        rows = self._db.run(sql.SQL("SELECT line FROM {} ORDER BY seq").format(self._t))
        return [str(r[0]).encode() for r in rows]

    def verify(self) -> VerifyReport:
        """Check every MAC and link, and the anchor; report the first problem.

        Raises:
            ServiceUnavailableError: when PostgreSQL or the anchor store cannot be reached.
        """
        with self._lock:
            return self._check(self._lines)

    def export(self, *, exported_by: str) -> bytes:
        """A verifiable bundle of the whole log: entries, a fresh anchor, a signed manifest.

        Raises:
            AuditIntegrityError: when the log is sealed.
        """
        key = self._require_key("exporting")
        with self._lock:
            self._refuse_if_sealed()
            with self._db.transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                self._catch_up(cur)
            anchor = self._head_anchor()
            self._anchor_if_behind()
            entries = b"".join(self._lines())[: self._size]
        return build_bundle(entries, anchor, key, source=self.name, exported_by=exported_by)
