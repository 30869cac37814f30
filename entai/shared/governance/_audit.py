"""The append-only, hash-chained audit log (JSON lines).

Each line is one :class:`AuditEntry` in canonical JSON (sorted keys, no spaces).
``hash`` is the SHA-256 of the canonical JSON of every other field, ``prev_hash``
included, so each entry commits to the whole history before it; the first entry's
``prev_hash`` is 64 zeros and ``seq`` counts from 1 (``seq`` = line number).

:meth:`AuditLog.verify` re-derives everything and reports the first bad line:
an edited byte (the line is no longer canonical, or its hash differs), a deleted,
reordered or inserted entry (``seq`` out of order or ``prev_hash`` not the previous
hash) and a forged entry (wrong chain). Dropping entries from the *end* leaves a
valid chain, so the writer also keeps an anchor, ``<log>.head`` holding the last
``seq`` and ``hash``; verify compares the log's end with it, which catches a
truncated tail and a well-chained entry appended behind the writer's back. Someone
who can rewrite both files can rewrite history: exporting the head elsewhere
(another store, a ticket) from time to time closes that gap.

One process writes (the GovernanceChecker actor): appends are ``write`` + ``fsync``
on an ``O_APPEND`` descriptor, then the head is replaced atomically. On restart the
log resumes from its last line. A torn last line (crash mid-write) is cut off. One
whole, well-chained line just beyond the head is what a crash between the two writes
leaves, but also what a forger appending behind a stopped writer leaves: it is adopted
and an ``audit:recovered`` entry naming it is appended to the chain, so the adoption
is visible forever. Anything else that disagrees with the head is left for
:meth:`AuditLog.verify` to report.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from entai.shared.core import AuditIntegrityError, ConfigError, InvalidInputError
from entai.shared.governance._audit_chain import (
    GENESIS_HASH,
    AuditEntry,
    VerifyReport,
    check_line,
    entry_hash,
    line_of,
)

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "VerifyReport"]

logger = logging.getLogger(__name__)


@dataclass
class _Head:
    seq: int = 0
    hash: str = GENESIS_HASH


class AuditLog:
    """An audit log file and its head anchor.

    Args:
        path: The ``.jsonl`` file (created with its directory if missing). Local
            paths only for now.
        fsync: Make every append durable before returning (keep True outside tests).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self._fd = -1
        if "://" in str(path):
            raise ConfigError(
                f"audit log {path} is not a local path; object stores are not supported yet",
                details={"field": "lake.root", "path": str(path)},
            )
        self._path = Path(path)
        self._head_path = self._path.with_name(self._path.name + ".head")
        self._fsync = fsync
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._head, adopted = self._resume()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if adopted:
            self.append(
                principal="system",
                action="audit:recovered",
                resource=str(self._path.name),
                decision="adopted",
                details={
                    "adopted_seq": self._head.seq,
                    "reason": "entry beyond the head anchor at start (crash between the log "
                    "and head writes, or appended while the writer was stopped)",
                },
            )

    @classmethod
    def in_lake(cls, lake_root: str | Path, *, fsync: bool = True) -> AuditLog:
        """The platform's log, ``<lake_root>/audit/audit.jsonl``."""
        return cls(f"{lake_root}/audit/audit.jsonl", fsync=fsync)

    @property
    def path(self) -> Path:
        """The JSON-lines file."""
        return self._path

    @property
    def last_seq(self) -> int:
        """``seq`` of the last entry written (0 for an empty log)."""
        return self._head.seq

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def _read_head(self) -> _Head | None:
        if not self._head_path.exists():
            return None
        data = json.loads(self._head_path.read_text())
        return _Head(seq=int(data["seq"]), hash=str(data["hash"]))

    def _write_head(self, head: _Head) -> None:
        payload = json.dumps({"seq": head.seq, "hash": head.hash})
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._head_path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(payload)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            Path(tmp).replace(self._head_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _resume(self) -> tuple[_Head, bool]:
        """The chain's end, and whether one unanchored entry was adopted."""
        found = self._read_head()
        anchored = found or _Head()
        if not self._path.exists():
            return anchored, False
        last_line = self._cut_torn_tail()
        if last_line is None:
            return anchored, False
        try:
            last = json.loads(last_line)
            tail = _Head(seq=int(last["seq"]), hash=str(last["hash"]))
        except (ValueError, KeyError, TypeError):
            return anchored, False
        if tail.seq == anchored.seq + 1 and last.get("prev_hash") == anchored.hash:
            logger.warning(
                "audit log has one entry beyond its head anchor; adopting it",
                extra={"path": str(self._path), "seq": tail.seq},
            )
            self._write_head(tail)
            return tail, True
        return (anchored if found is not None else tail), False

    def _cut_torn_tail(self) -> bytes | None:
        """Cut off a torn last line; return the last whole line (None if the log is empty).

        Reads only the end of the file, doubling the window until a line boundary shows.
        """
        with self._path.open("r+b") as src:
            size = src.seek(0, os.SEEK_END)
            window = 64 * 1024
            while True:
                start = max(0, size - window)
                src.seek(start)
                chunk = src.read()
                if start == 0 or chunk.count(b"\n") >= 2:
                    break
                window *= 2
            if chunk and not chunk.endswith(b"\n"):
                keep = chunk.rfind(b"\n") + 1
                logger.warning(
                    "audit log ends with a torn line; cutting it off",
                    extra={"path": str(self._path), "bytes": len(chunk) - keep},
                )
                src.truncate(start + keep)
                os.fsync(src.fileno())
                chunk = chunk[:keep]
        lines = chunk.splitlines()
        return lines[-1] if lines else None

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
        """
        moment = (ts or datetime.now(UTC)).astimezone(UTC)
        body: dict[str, Any] = {
            "seq": self._head.seq + 1,
            "ts": moment.isoformat(timespec="microseconds"),
            "principal": principal,
            "action": action,
            "resource": resource,
            "decision": decision,
            "request_id": request_id,
            "details": dict(details or {}),
            "prev_hash": self._head.hash,
        }
        try:
            entry = AuditEntry(**body, hash=entry_hash(body))
            line = line_of(entry).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"audit details are not JSON-serialisable: {exc}", details={"field": "details"}
            ) from exc
        os.write(self._fd, line)
        if self._fsync:
            os.fsync(self._fd)
        self._head = _Head(seq=entry.seq, hash=entry.hash)
        self._write_head(self._head)
        return entry

    def _lines(self) -> Iterator[bytes]:
        if not self._path.exists():
            return
        with self._path.open("rb") as src:
            yield from src

    def verify(self) -> VerifyReport:
        """Check every line, the chain and the head anchor; report the first problem."""
        prev_hash, count = GENESIS_HASH, 0
        for position, line in enumerate(self._lines(), start=1):
            problem, prev_hash = check_line(line, position, prev_hash)
            if problem:
                return VerifyReport(False, count, position, problem)
            count = position
        bad = self._head_problem(count, prev_hash)
        if bad is not None:
            return VerifyReport(False, count, bad[0], bad[1])
        return VerifyReport(True, count)

    def _head_problem(self, count: int, last_hash: str) -> tuple[int, str] | None:
        """Where and how the log's end disagrees with the head anchor, if it does."""
        head = self._read_head()
        if head is None:
            return (count, "head anchor file is missing") if count else None
        if count < head.seq:
            return count + 1, (
                f"log ends at entry {count} but the head anchors entry {head.seq} "
                "(entries deleted from the end)"
            )
        if count > head.seq:
            return head.seq + 1, (
                f"entries after {head.seq} are not anchored by the head "
                "(appended outside the writer)"
            )
        if count and last_hash != head.hash:
            return count, "last entry's hash differs from the head anchor"
        return None

    def verify_or_raise(self) -> VerifyReport:
        """:meth:`verify`, raising on any problem.

        Raises:
            AuditIntegrityError: naming the first bad line and the problem.
        """
        report = self.verify()
        if not report.ok:
            raise AuditIntegrityError(
                f"audit log {self._path} fails verification at line "
                f"{report.first_bad_position}: {report.problem}",
                details={
                    "path": str(self._path),
                    "position": report.first_bad_position,
                    "problem": report.problem,
                    "entries": report.entries,
                },
            )
        return report

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
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise InvalidInputError(f"{name} must be timezone-aware", details={"field": name})
        found: list[AuditEntry] = []
        for line in self._lines():
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
