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

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from entai.shared.core import (
    AuditIntegrityError,
    InvalidInputError,
    ServiceUnavailableError,
)
from entai.shared.governance._audit import select_entries
from entai.shared.governance._audit_anchor import AnchorStore, sign_anchor
from entai.shared.governance._audit_bundle import build_bundle
from entai.shared.governance._audit_chain import (
    GENESIS_HASH,
    Anchor,
    AuditEntry,
    VerifyReport,
    check_anchor,
    check_chain,
    derive_key,
    entry_mac,
    line_of,
    parse_entry,
)
from entai.shared.governance._state_postgres import PostgresConnection, check_prefix

__all__ = ["PostgresAuditLog"]

logger = logging.getLogger(__name__)


class PostgresAuditLog:
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
        self._key = key
        self._entry_key = derive_key(key, "entry")
        self._anchors = anchors
        self._anchor_every = max(1, anchor_every)
        self._lock = threading.Lock()
        self._seq, self._hash, self._size = 0, GENESIS_HASH, 0
        self._keyed_from = 1
        self._anchored_seq = 0
        self._sealed: str | None = None
        self._resume()

    def __repr__(self) -> str:
        return f"PostgresAuditLog(table={self.table!r}, seq={self._seq})"

    @property
    def name(self) -> str:
        """Where the entries are kept, for messages."""
        return f"postgresql table {self.table}"

    @property
    def last_seq(self) -> int:
        """``seq`` of the last entry written (0 for an empty log)."""
        return self._seq

    @property
    def sealed(self) -> str | None:
        """Why the log refuses new entries, or None when it accepts them."""
        return self._sealed

    def close(self) -> None:
        """Anchor the last entry (if it is not yet) and close the connection."""
        with self._lock:
            try:
                if self._sealed is None and self._seq > self._anchored_seq:
                    self._anchor()
            finally:
                self._db.close()

    # -- start ----------------------------------------------------------------------

    def _seal(self, problem: str) -> None:
        self._sealed = problem
        logger.error(
            "audit log sealed: it refuses new entries until restored",
            extra={"table": self.table, "problem": problem},
        )

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
        try:
            anchor = self._anchors.read()
        except AuditIntegrityError as exc:
            self._seal(exc.message)
            return
        if anchor is not None and not check_anchor(anchor, derive_key(self._key, "anchor")):
            self._seal(f"the anchor in {self._anchors.name} is not signed with the audit key")
            return
        last = self._row(None)
        if anchor is None:
            if last is not None:
                self._seal(
                    f"the log has entries but there is no anchor in {self._anchors.name} "
                    "(anchor deleted, or the anchor store changed)"
                )
            return
        self._resume_anchored(anchor, last)

    def _resume_anchored(self, anchor: Anchor, last: tuple[int, bytes, int] | None) -> None:
        where = self._anchors.name
        size = last[2] if last is not None else 0
        if size < anchor.size:
            self._seal(
                f"the log has {size} bytes but the anchor in {where} records entry "
                f"{anchor.seq} at {anchor.size} bytes (entries deleted)"
            )
            return
        if anchor.seq:
            row = self._row(anchor.seq)
            data = parse_entry(row[1], anchor.seq)[0] if row is not None else None
            if row is None or data is None or data["hash"] != anchor.hash or row[2] != anchor.size:
                self._seal(f"entry {anchor.seq} differs from the one anchored in {where}")
                return
        if last is None:
            return
        problem = self._unkeyed(last, anchor.seq)
        if problem:
            self._seal(problem)
            return
        data, _ = parse_entry(last[1], last[0])
        assert data is not None
        self._seq, self._hash, self._size = last[0], str(data["hash"]), last[2]
        self._keyed_from, self._anchored_seq = anchor.keyed_from, anchor.seq

    def _unkeyed(self, row: tuple[int, bytes, int], at_least: int) -> str:
        """Why a row cannot be the log's last entry, or "" when it can."""
        data, problem = parse_entry(row[1], row[0])
        if data is None:
            return f"the log's last row is not an audit entry ({problem})"
        body = {k: v for k, v in data.items() if k != "hash"}
        if (
            entry_mac(body, self._entry_key) != data["hash"]
            or int(data["seq"]) != row[0]
            or row[0] < at_least
        ):
            return f"the log's last entry (seq {row[0]}) is not MACed under the audit key"
        return ""

    # -- writing ----------------------------------------------------------------------

    def _refuse_if_sealed(self) -> None:
        if self._sealed is not None:
            raise AuditIntegrityError(
                f"audit log {self.name} refuses new entries: {self._sealed}; run `entai audit "
                "verify`, then restore the table and its anchor from backup (docs/operations.md)",
                details={"table": self.table, "problem": self._sealed},
            )

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
        row = (int(rows[0][0]), str(rows[0][1]).encode(), int(rows[0][2]))
        if row[0] == self._seq and row[2] == self._size:
            return
        problem = self._unkeyed(row, self._seq + 1)
        if problem:
            self._seal(f"the log changed behind the writer: {problem}")
            self._refuse_if_sealed()
        data, _ = parse_entry(row[1], row[0])
        assert data is not None
        logger.info(
            "audit log: following entries another writer appended",
            extra={"table": self.table, "from_seq": self._seq, "to_seq": row[0]},
        )
        self._seq, self._hash, self._size = row[0], str(data["hash"]), row[2]

    def append(
        self,
        *,
        principal: str,
        action: str,
        resource: str,
        decision: str,
        request_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        ts: datetime | None = None,
    ) -> AuditEntry:
        """Append one entry durably (committed) and return it.

        Raises:
            InvalidInputError: when ``details`` is not JSON-serialisable.
            AuditIntegrityError: when the log is sealed.
            ServiceUnavailableError: when PostgreSQL cannot be reached (nothing written).
        """
        from psycopg2 import sql

        moment = (ts or datetime.now(UTC)).astimezone(UTC)
        with self._lock:
            self._refuse_if_sealed()
            with self._db.transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                self._catch_up(cur)
                body: dict[str, Any] = {
                    "seq": self._seq + 1,
                    "ts": moment.isoformat(timespec="microseconds"),
                    "principal": principal,
                    "action": action,
                    "resource": resource,
                    "decision": decision,
                    "request_id": request_id,
                    "details": dict(details or {}),
                    "prev_hash": self._hash,
                }
                try:
                    entry = AuditEntry(**body, hash=entry_mac(body, self._entry_key))
                    line = line_of(entry)
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(
                        f"audit details are not JSON-serialisable: {exc}",
                        details={"field": "details"},
                    ) from exc
                end = self._size + len(line.encode())
                cur.execute(
                    sql.SQL("INSERT INTO {} (seq, line, end_offset) VALUES (%s, %s, %s)").format(
                        self._t
                    ),
                    (entry.seq, line, end),
                )
            self._seq, self._hash, self._size = entry.seq, entry.hash, end
            if self._seq - self._anchored_seq >= self._anchor_every:
                self._anchor()
        return entry

    def _anchor(self) -> Anchor | None:
        """Write an anchor at the current end; a store that is down is retried next time."""
        anchor = sign_anchor(
            self._key,
            seq=self._seq,
            digest=self._hash,
            keyed_from=self._keyed_from,
            size=self._size,
        )
        try:
            self._anchors.write(anchor)
        except ServiceUnavailableError as exc:
            logger.warning(
                "audit anchor not written; retried after the next entry",
                extra={"anchor_store": self._anchors.name, "seq": self._seq, "error": exc.message},
            )
            return None
        except AuditIntegrityError as exc:
            self._seal(exc.message)
            raise
        self._anchored_seq = self._seq
        return anchor

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
            try:
                anchor, problem = self._anchors.read(), ""
            except AuditIntegrityError as exc:
                anchor, problem = None, exc.message
            return check_chain(
                self._lines(), self._key, anchor, anchor_problem=problem, where=self._anchors.name
            )

    def export(self, *, exported_by: str) -> bytes:
        """A verifiable bundle of the whole log: entries, a fresh anchor, a signed manifest.

        Raises:
            AuditIntegrityError: when the log is sealed.
        """
        with self._lock:
            self._refuse_if_sealed()
            with self._db.transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                self._catch_up(cur)
            anchor = sign_anchor(
                self._key,
                seq=self._seq,
                digest=self._hash,
                keyed_from=self._keyed_from,
                size=self._size,
            )
            if self._seq > self._anchored_seq:
                self._anchor()
            entries = b"".join(self._lines())[: self._size]
        return build_bundle(entries, anchor, self._key, source=self.name, exported_by=exported_by)

    def query(
        self,
        principal: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, in log order (see ``select_entries``)."""
        return select_entries(self._lines(), principal, action, since, until, limit=limit)
