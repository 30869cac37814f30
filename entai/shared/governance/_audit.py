"""The append-only audit log: a keyed hash chain in JSON lines, anchored outside the lake.

Each line is one :class:`AuditEntry` in canonical JSON whose ``hash`` is an HMAC-SHA256
under the audit key (see :mod:`entai.shared.governance._audit_chain`). The key lives
outside the lake (the secret store, or a 0600 file under the home), so whoever can
rewrite the lake cannot recompute a valid chain: deleting an entry, renumbering the
rest and recomputing every hash is found at the first rewritten entry.

A keyed chain alone still lets a lake writer cut entries off the end. So the writer
keeps a signed checkpoint of the head, an *anchor* (last ``seq``, its hash, the log's
size there, a time, and a MAC), in a second store (:class:`AnchorStore`: a file under
the home, or PostgreSQL), every ``anchor_every`` entries and on :meth:`AuditLog.close`.
:meth:`AuditLog.verify` checks every MAC and link, and that the log holds the anchored
entry with the anchored hash and nothing missing before it.

Writing: appends are ``write`` + ``fsync`` on an ``O_APPEND`` descriptor under an
exclusive ``flock`` of the log, then the anchor. Two writers on one host (the
governance service and a local command) are serialised by the lock; one that finds
the log grown behind it re-reads the tail and carries on only if the new entries carry
the audit key's MAC. A torn last line (crash mid-write) is cut off at start. A log
that disagrees with its anchor at start (shorter than the anchor, the anchored entry
changed, the last entry not MACed, keyed entries but no anchor) is *sealed*: it still
verifies and answers queries, but refuses new entries with
:class:`~entai.shared.core.AuditIntegrityError` until an operator restores it, so a
writer never anchors over the evidence.

Migration: a log written before the chain was keyed (plain SHA-256, a ``.head`` file
beside it, no anchor) is taken over by the first keyed writer: it checks the old chain,
appends an ``audit:keyed`` entry that records how many legacy entries there were and
whether they verified, and anchors. Verify then reports those entries as "legacy
unkeyed" (SHA-256 only); from the takeover on, they cannot be changed without breaking
the keyed link, but edits made before it cannot be told apart.

Opened without a key, the log is read-only: :meth:`AuditLog.query` works, nothing is
written (no takeover, no cut), and :meth:`AuditLog.append` and :meth:`AuditLog.verify`
refuse.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from entai.shared.core import AuditIntegrityError, ConfigError
from entai.shared.governance._audit_anchor import AnchorStore
from entai.shared.governance._audit_bundle import build_bundle
from entai.shared.governance._audit_chain import (
    GENESIS_HASH,
    KEYED_ACTION,
    AuditEntry,
    VerifyReport,
    check_chain,
    legacy_entry_hash,
    line_of,
    parse_entry,
)
from entai.shared.governance._audit_writer import ChainWriter, select_entries

__all__ = [
    "GENESIS_HASH",
    "KEYED_ACTION",
    "AuditEntry",
    "AuditLog",
    "VerifyReport",
    "select_entries",
]

logger = logging.getLogger(__name__)

_KEY_FIELD = "security.audit_key"


def _line_ending_at(src: BinaryIO, end: int) -> bytes | None:
    """The whole line whose newline is the byte before ``end`` (None if there is none).

    Reads only the end of the range, doubling the window until a line boundary shows.
    """
    if end <= 0:
        return None
    window = 64 * 1024
    while True:
        start = max(0, end - window)
        src.seek(start)
        chunk = src.read(end - start)
        if not chunk.endswith(b"\n"):
            return None
        if start == 0 or chunk.count(b"\n") >= 2:
            break
        window *= 2
    return chunk[chunk.rfind(b"\n", 0, len(chunk) - 1) + 1 :]


class AuditLog(ChainWriter):
    """An audit log file, written under the audit key and anchored in a second store.

    Args:
        path: The ``.jsonl`` file (created with its directory if missing). Local paths only.
        key: The audit key (``security.audit_key``); None opens the log read-only.
        anchors: Where the anchors are kept; required with a key.
        anchor_every: Write an anchor after this many entries (and on close). With 1,
            every acknowledged entry is anchored; with more, up to ``anchor_every - 1``
            entries at the end may be cut off unnoticed.
        fsync: Make every append durable before returning (keep True outside tests).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        key: bytes | None = None,
        anchors: AnchorStore | None = None,
        anchor_every: int = 1,
        fsync: bool = True,
    ) -> None:
        self._fd = -1
        if "://" in str(path):
            raise ConfigError(
                f"audit log {path} is not a local path: with the lake on an object store, "
                "keep the governance state in PostgreSQL (security.governance_store)",
                details={"field": "lake.root", "path": str(path)},
            )
        if key is not None and anchors is None:
            raise ConfigError(
                "a keyed audit log needs an anchor store",
                details={"field": "security.audit_anchor"},
            )
        if anchor_every < 1:
            raise ConfigError(
                "security.audit_anchor_every must be at least 1",
                details={"field": "security.audit_anchor_every"},
            )
        super().__init__(
            key,
            anchors,
            anchor_every=anchor_every,
            label=str(path),
            ident={"path": str(path)},
            restore="the log",
        )
        self._path = Path(path)
        self._fsync = fsync
        if key is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            takeover = self._resume()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if takeover is not None:
            self.append(
                principal="system",
                action=KEYED_ACTION,
                resource=self._path.name,
                decision="allow",
                details=takeover,
            )

    @classmethod
    def in_lake(
        cls,
        lake_root: str | Path,
        *,
        key: bytes | None = None,
        anchors: AnchorStore | None = None,
        anchor_every: int = 1,
        fsync: bool = True,
    ) -> AuditLog:
        """The platform's log, ``<lake_root>/audit/audit.jsonl``."""
        return cls(
            f"{lake_root}/audit/audit.jsonl",
            key=key,
            anchors=anchors,
            anchor_every=anchor_every,
            fsync=fsync,
        )

    @property
    def path(self) -> Path:
        """The JSON-lines file."""
        return self._path

    def close(self) -> None:
        """Anchor the last entry (if it is not yet) and release the file."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                self._anchor_if_behind()
            finally:
                self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self._release()

    # -- start ----------------------------------------------------------------------

    def _resume(self) -> dict[str, Any] | None:
        """Find the chain's end; seal on disagreement; details of a legacy takeover, if any."""
        with self._path.open("r+b") as src:
            self._size = self._cut_torn_tail(src)
            anchor, problem = self._read_anchor()
            tail = _line_ending_at(src, self._size)
            if problem:
                self._seal(problem)
            elif anchor is not None:
                anchored = _line_ending_at(src, anchor.size) if anchor.seq else None
                self._resume_anchored(anchor, self._size, anchored, tail)
        if problem or anchor is not None or tail is None:
            return None
        return self._resume_unanchored(tail)

    def _resume_unanchored(self, tail: bytes) -> dict[str, Any] | None:
        """A log with no anchor: a legacy one is taken over; a keyed one is sealed."""
        assert self._anchors is not None
        data, problem = parse_entry(tail, 0)
        if data is None:
            self._seal(f"the log's last line is not an audit entry ({problem})")
            return None
        if self._is_keyed(data):
            self._seal(
                f"the log has keyed entries but there is no anchor in {self._anchors.name} "
                "(anchor deleted, or the anchor store changed)"
            )
        elif legacy_entry_hash({k: v for k, v in data.items() if k != "hash"}) != data["hash"]:
            self._seal("the log's last entry matches neither its MAC nor a legacy SHA-256")
        else:
            return self._legacy_takeover(int(data["seq"]), str(data["hash"]))
        return None

    def _legacy_takeover(self, seq: int, last_hash: str) -> dict[str, Any]:
        """Adopt an unkeyed log: its end, and what the keyed marker entry records."""
        assert self._key is not None
        report = check_chain(self._lines(), self._key, None, require_takeover=False)
        head_path = self._path.with_name(self._path.name + ".head")
        head: Any = None
        if head_path.exists():
            try:
                head = json.loads(head_path.read_text())
            except ValueError:
                head = head_path.read_text()[:200]
        chain_ok = report.first_bad_position is None and report.legacy_entries == seq
        logger.warning(
            "audit log written without a key: taking it over with a keyed chain",
            extra={"path": str(self._path), "legacy_entries": seq, "legacy_ok": chain_ok},
        )
        self._seq, self._hash, self._keyed_from = seq, last_hash, seq + 1
        head_path.unlink(missing_ok=True)
        return {
            "legacy_entries": seq,
            "legacy_chain_ok": chain_ok,
            "legacy_problem": "" if chain_ok else report.problem,
            "legacy_head": head,
        }

    def _cut_torn_tail(self, src: BinaryIO) -> int:
        """Cut off a torn last line (crash mid-write); return the log's size."""
        size = src.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        src.seek(size - 1)
        if src.read(1) == b"\n":
            return size
        window = 64 * 1024
        while True:
            start = max(0, size - window)
            src.seek(start)
            newline = src.read(size - start).rfind(b"\n")
            if newline >= 0 or start == 0:
                break
            window *= 2
        keep = start + newline + 1
        logger.warning(
            "audit log ends with a torn line; cutting it off",
            extra={"path": str(self._path), "bytes": size - keep},
        )
        src.truncate(keep)
        os.fsync(src.fileno())
        return keep

    # -- writing ----------------------------------------------------------------------

    def _append(self, make: Callable[[], AuditEntry]) -> AuditEntry:
        """Write the entry at the end under the file's exclusive lock, fsync, anchor if due."""
        if self._key is None:
            raise ConfigError(
                f"audit log {self._path} was opened without the audit key: it is read-only",
                details={"field": _KEY_FIELD},
            )
        with self._lock:
            self._refuse_if_sealed()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._catch_up()
                entry = make()
                line = line_of(entry).encode()
                os.write(self._fd, line)
                if self._fsync:
                    os.fsync(self._fd)
                self._appended(entry, self._size + len(line))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return entry

    def _catch_up(self) -> None:
        """Follow entries another writer appended since our last write (under the lock)."""
        size = os.fstat(self._fd).st_size
        if size == self._size:
            return
        with self._path.open("rb") as src:
            tail = _line_ending_at(src, size) if size > self._size else None
        self._follow(tail or b"", size)

    # -- reading ----------------------------------------------------------------------

    def _lines(self) -> Iterator[bytes]:
        if not self._path.exists():
            return
        with self._path.open("rb") as src:
            yield from src

    def verify(self) -> VerifyReport:
        """Check every MAC and link, and the anchor; report the first problem.

        Raises:
            ConfigError: when the log was opened without the key.
            ServiceUnavailableError: when the anchor store cannot be reached.
        """
        with self._lock:
            return self._check(self._locked_lines)

    def _locked_lines(self) -> Iterator[bytes]:
        """The log's lines under a shared lock (no writer appends while they are read)."""
        with self._path.open("rb") as src:
            fcntl.flock(src.fileno(), fcntl.LOCK_SH)
            yield from src

    def verify_or_raise(self) -> VerifyReport:
        """:meth:`verify`, raising on any problem.

        Raises:
            AuditIntegrityError: naming the first bad entry and the problem.
        """
        report = self.verify()
        if not report.ok:
            where = (
                f"entry {report.first_bad_position}"
                if report.first_bad_position is not None
                else "its anchor"
            )
            raise AuditIntegrityError(
                f"audit log {self._path} fails verification at {where}: {report.problem}",
                details={
                    "path": str(self._path),
                    "position": report.first_bad_position,
                    "problem": report.problem,
                    "entries": report.entries,
                },
            )
        return report

    def export(self, *, exported_by: str) -> bytes:
        """A verifiable bundle of the whole log: entries, a fresh anchor, a signed manifest.

        Raises:
            ConfigError: when the log was opened without the key.
            AuditIntegrityError: when the log is sealed.
        """
        key = self._require_key("exporting")
        with self._lock:
            self._refuse_if_sealed()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._catch_up()
                anchor = self._head_anchor()
                self._anchor_if_behind()
                with self._path.open("rb") as src:
                    entries = src.read(self._size)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return build_bundle(entries, anchor, key, source=str(self._path), exported_by=exported_by)
