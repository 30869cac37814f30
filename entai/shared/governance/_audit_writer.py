"""The writing end of an audit chain, wherever its lines are kept.

A writer of the keyed, anchored chain (see :mod:`entai.shared.governance._audit_chain`)
tracks the chain's end (last ``seq``, its hash, the log's size in bytes), where the keyed
part starts and what it last anchored. :class:`ChainWriter` holds that state and every
step that does not depend on the store: reading the anchor and checking its signature,
taking the end found at start or *sealing* the log where it disagrees with its anchor,
building the next entry under the audit key, anchoring the end, checking the whole
chain, and querying it. The file log (:class:`~entai.shared.governance._audit.AuditLog`)
and the PostgreSQL log
(:class:`~entai.shared.governance._audit_postgres.PostgresAuditLog`) add how lines are
stored, locked and read back.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from entai.shared.core import (
    AuditIntegrityError,
    ConfigError,
    InvalidInputError,
    ServiceUnavailableError,
)
from entai.shared.governance._audit_anchor import AnchorStore, sign_anchor
from entai.shared.governance._audit_chain import (
    GENESIS_HASH,
    Anchor,
    AuditEntry,
    VerifyReport,
    check_anchor,
    check_chain,
    derive_key,
    entry_mac,
    parse_entry,
)

__all__ = ["ChainWriter", "select_entries"]

logger = logging.getLogger(__name__)

_KEY_FIELD = "security.audit_key"


class ChainWriter(ABC):
    """The end of one audit chain as its writer sees it, and what it does there.

    Args:
        key: The audit key; None opens the log read-only.
        anchors: Where the anchors are kept (required with a key).
        anchor_every: Write an anchor after this many entries (and on close).
        label: The log, in messages (its path or its table).
        ident: The log, in structured log records and error details.
        restore: What an operator restores from backup with the anchor ("the log").
    """

    def __init__(
        self,
        key: bytes | None,
        anchors: AnchorStore | None,
        *,
        anchor_every: int,
        label: str,
        ident: Mapping[str, str],
        restore: str,
    ) -> None:
        self._key = key
        self._entry_key = derive_key(key, "entry") if key is not None else b""
        self._anchors = anchors
        self._anchor_every = anchor_every
        self._label = label
        self._ident = dict(ident)
        self._restore = restore
        self._lock = threading.Lock()
        self._seq, self._hash, self._size = 0, GENESIS_HASH, 0
        self._keyed_from = 1
        self._anchored_seq = 0
        self._sealed: str | None = None

    @property
    def last_seq(self) -> int:
        """``seq`` of the last entry written (0 for an empty log)."""
        return self._seq

    @property
    def sealed(self) -> str | None:
        """Why the log refuses new entries, or None when it accepts them."""
        return self._sealed

    @abstractmethod
    def _lines(self) -> Iterable[bytes]:
        """Every line of the log in ``seq`` order, newline included."""

    @property
    def _where(self) -> str:
        return self._anchors.name if self._anchors is not None else "?"

    def _require_key(self, what: str) -> bytes:
        if self._key is None or self._anchors is None:
            raise ConfigError(
                f"{what} the audit log needs the audit key ({_KEY_FIELD})",
                details={"field": _KEY_FIELD},
            )
        return self._key

    # -- start ----------------------------------------------------------------------

    def _seal(self, problem: str) -> None:
        self._sealed = problem
        logger.error(
            "audit log sealed: it refuses new entries until restored",
            extra={**self._ident, "problem": problem},
        )

    def _read_anchor(self) -> tuple[Anchor | None, str]:
        """The store's anchor, or the reason it cannot be used."""
        assert self._anchors is not None and self._key is not None
        try:
            anchor = self._anchors.read()
        except AuditIntegrityError as exc:
            return None, exc.message
        if anchor is not None and not check_anchor(anchor, derive_key(self._key, "anchor")):
            return None, f"the anchor in {self._anchors.name} is not signed with the audit key"
        return anchor, ""

    def _is_keyed(self, data: Mapping[str, Any]) -> bool:
        """True when a parsed entry carries a valid MAC under the audit key."""
        body = {k: v for k, v in data.items() if k != "hash"}
        return bool(entry_mac(body, self._entry_key) == data["hash"])

    def _last_entry(
        self, line: bytes, at_least: int, seq: int | None = None
    ) -> tuple[dict[str, Any] | None, str]:
        """The fields of the log's last line when it can end a keyed chain, else a problem.

        Args:
            line: The last line.
            at_least: The lowest ``seq`` it may have.
            seq: The ``seq`` the store files it under, when it has one.
        """
        data, problem = parse_entry(line, seq or 0)
        if data is None:
            return None, f"the log's last line is not an audit entry ({problem})"
        if (
            not self._is_keyed(data)
            or int(data["seq"]) < at_least
            or (seq is not None and data["seq"] != seq)
        ):
            return (
                None,
                f"the log's last entry (seq {data['seq']}) is not MACed under the audit key",
            )
        return data, ""

    def _resume_anchored(
        self,
        anchor: Anchor,
        size: int,
        anchored: bytes | None,
        last: bytes | None,
        last_seq: int | None = None,
    ) -> None:
        """Take the end found at start, or seal the log where it disagrees with the anchor.

        Args:
            anchor: The store's anchor (signed with the audit key).
            size: The log's size in bytes.
            anchored: The line the anchor names, at its offset (None when there is none).
            last: The log's last line (None for an empty log).
            last_seq: The ``seq`` the store files the last line under, when it has one.
        """
        if size < anchor.size:
            self._seal(
                f"the log has {size} bytes but the anchor in {self._where} records entry "
                f"{anchor.seq} at {anchor.size} bytes (entries deleted)"
            )
            return
        if anchor.seq:
            data = parse_entry(anchored or b"", anchor.seq)[0]
            if data is None or data["seq"] != anchor.seq or data["hash"] != anchor.hash:
                self._seal(f"entry {anchor.seq} differs from the one anchored in {self._where}")
                return
        if last is None:
            return
        data, problem = self._last_entry(last, anchor.seq, last_seq)
        if data is None:
            self._seal(problem)
            return
        self._seq, self._hash, self._size = int(data["seq"]), str(data["hash"]), size
        self._keyed_from, self._anchored_seq = anchor.keyed_from, anchor.seq

    # -- writing ----------------------------------------------------------------------

    def _refuse_if_sealed(self) -> None:
        if self._sealed is not None:
            raise AuditIntegrityError(
                f"audit log {self._label} refuses new entries: {self._sealed}; run `entai audit "
                f"verify`, then restore {self._restore} and its anchor from backup "
                "(docs/operations.md)",
                details={**self._ident, "problem": self._sealed},
            )

    def _follow(self, line: bytes, size: int, seq: int | None = None) -> None:
        """Take the end another writer appended (under the lock); seal if it is not keyed.

        Raises:
            AuditIntegrityError: when the new end cannot follow the writer's.
        """
        data, problem = self._last_entry(line, self._seq + 1, seq)
        if data is None:
            self._seal(
                f"the log changed behind the writer ({self._size} -> {size} bytes): {problem}"
            )
            self._refuse_if_sealed()
        assert data is not None
        logger.info(
            "audit log: following entries another writer appended",
            extra={**self._ident, "from_seq": self._seq, "to_seq": data["seq"]},
        )
        self._seq, self._hash, self._size = int(data["seq"]), str(data["hash"]), size

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
        """Append one entry durably and return it.

        Raises:
            InvalidInputError: when ``details`` is not JSON-serialisable.
            ConfigError: when the log was opened without a key (read-only).
            AuditIntegrityError: when the log is sealed (it disagreed with its anchor).
            ServiceUnavailableError: when the store cannot be reached (nothing written).
        """
        moment = (ts or datetime.now(UTC)).astimezone(UTC)
        fields: dict[str, Any] = {
            "ts": moment.isoformat(timespec="microseconds"),
            "principal": principal,
            "action": action,
            "resource": resource,
            "decision": decision,
            "request_id": request_id,
            "details": dict(details or {}),
        }
        return self._append(lambda: self._next_entry(fields))

    @abstractmethod
    def _append(self, entry: Callable[[], AuditEntry]) -> AuditEntry:
        """Store the entry ``entry()`` makes at the current end, durably; return it.

        ``entry`` is called once the writer holds the store's lock and has followed
        whatever another writer appended.
        """

    def _next_entry(self, fields: Mapping[str, Any]) -> AuditEntry:
        """The entry with ``fields`` that follows the current end, MACed under the audit key.

        Raises:
            InvalidInputError: when ``details`` is not JSON-serialisable.
        """
        body: dict[str, Any] = {"seq": self._seq + 1, **fields, "prev_hash": self._hash}
        try:
            return AuditEntry(**body, hash=entry_mac(body, self._entry_key))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"audit details are not JSON-serialisable: {exc}",
                details={"field": "details"},
            ) from exc

    def _appended(self, entry: AuditEntry, size: int) -> None:
        """Move the end to a stored entry; anchor when ``anchor_every`` entries are due."""
        self._seq, self._hash, self._size = entry.seq, entry.hash, size
        if self._seq - self._anchored_seq >= self._anchor_every:
            self._anchor()

    def _head_anchor(self) -> Anchor:
        """An anchor of the current end, signed with the audit key."""
        assert self._key is not None
        return sign_anchor(
            self._key,
            seq=self._seq,
            digest=self._hash,
            keyed_from=self._keyed_from,
            size=self._size,
        )

    def _anchor(self) -> Anchor | None:
        """Write an anchor at the current end; a store that is down is retried next time."""
        assert self._anchors is not None
        anchor = self._head_anchor()
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

    def _anchor_if_behind(self) -> None:
        """Anchor the last entry unless it is anchored already or the log is sealed."""
        if self._sealed is None and self._seq > self._anchored_seq:
            self._anchor()

    # -- reading ----------------------------------------------------------------------

    def _check(self, lines: Callable[[], Iterable[bytes]]) -> VerifyReport:
        """Read the anchor, then check every line against it (the caller holds the lock).

        The anchor is read first: a writer appends before it anchors, so the lines read
        after it hold at least the anchored entry.
        """
        key = self._require_key("verifying")
        assert self._anchors is not None
        try:
            anchor, problem = self._anchors.read(), ""
        except AuditIntegrityError as exc:
            anchor, problem = None, exc.message
        return check_chain(lines(), key, anchor, anchor_problem=problem, where=self._anchors.name)

    def query(
        self,
        principal: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, in log order.

        ``since`` is inclusive, ``until`` exclusive; both must be timezone-aware.
        ``limit`` keeps the last ``limit`` matches. Lines that do not parse are skipped
        here (``verify`` is where damage is reported).
        """
        return select_entries(self._lines(), principal, action, since, until, limit=limit)


def select_entries(
    lines: Iterable[bytes],
    principal: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    limit: int | None = None,
) -> list[AuditEntry]:
    """The entries among ``lines`` matching every given filter, in log order.

    ``since`` is inclusive, ``until`` exclusive; both must be timezone-aware. ``limit``
    keeps the last ``limit`` matches. Lines that do not parse are skipped.

    Raises:
        InvalidInputError: for a naive ``since`` or ``until``.
    """
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInputError(f"{name} must be timezone-aware", details={"field": name})
    found: list[AuditEntry] = []
    for line in lines:
        try:
            entry = AuditEntry(**json.loads(line))
        except (ValueError, TypeError):
            continue
        if principal is not None and entry.principal != principal:
            continue
        if action is not None and entry.action != action:
            continue
        if since is not None and entry.time < since:
            continue
        if until is not None and entry.time >= until:
            continue
        found.append(entry)
    return found[-limit:] if limit else found
