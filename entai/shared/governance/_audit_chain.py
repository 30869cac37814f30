"""The audit log's record format: one entry per line, each hash-chained to the last.

An entry is canonical JSON (sorted keys, no spaces); ``hash`` is the SHA-256 of the
canonical JSON of every other field, ``prev_hash`` included, so each entry commits to
the whole history before it. The first entry's ``prev_hash`` is :data:`GENESIS_HASH`
and ``seq`` counts from 1. :func:`check_line` re-derives one line and says what is
wrong with it; :mod:`entai.shared.governance._audit` writes, verifies and queries the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "VerifyReport",
    "canonical_json",
    "check_line",
    "entry_hash",
    "line_of",
]

GENESIS_HASH = "0" * 64
_FIELDS = ("seq", "ts", "principal", "action", "resource", "decision", "request_id")


@dataclass(frozen=True)
class AuditEntry:
    """One audited event. ``ts`` is ISO-8601 UTC with microseconds."""

    seq: int
    ts: str
    principal: str
    action: str
    resource: str
    decision: str
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def time(self) -> datetime:
        """``ts`` as an aware datetime."""
        return datetime.fromisoformat(self.ts)


@dataclass(frozen=True)
class VerifyReport:
    """The result of checking the chain.

    Attributes:
        ok: True when every line and the head anchor check out.
        entries: Lines read before the first problem (all of them when ok).
        first_bad_position: 1-based line number of the first problem, or None.
        problem: What is wrong there, in words ("" when ok).
    """

    ok: bool
    entries: int
    first_bad_position: int | None = None
    problem: str = ""


def canonical_json(data: Mapping[str, Any]) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def line_of(entry: AuditEntry) -> str:
    return canonical_json(asdict(entry)) + "\n"


_ENTRY_KEYS = frozenset(f.name for f in fields(AuditEntry))


def _parse_line(raw: bytes, position: int) -> tuple[dict[str, Any] | None, str]:
    """The entry's fields when the line is a well-formed canonical entry, else a problem."""
    try:
        line = raw.decode("utf-8")
        data = json.loads(line)
    except ValueError:
        return None, f"line {position} is not valid JSON (edited or corrupted)"
    if not isinstance(data, dict) or set(data) != _ENTRY_KEYS:
        return None, f"line {position} does not have the audit entry fields"
    if not all(isinstance(data[k], str | int | None) for k in _FIELDS):
        return None, f"line {position} has a field of the wrong type"
    if canonical_json(data) + "\n" != line:
        return None, f"line {position} is not in canonical form (edited)"
    return data, ""


def check_line(line: bytes, position: int, prev_hash: str) -> tuple[str, str]:
    """``(problem, hash)`` of one line; problem is "" when it is sound and chains on."""
    data, problem = _parse_line(line, position)
    if data is None:
        return problem, prev_hash
    body = {k: v for k, v in data.items() if k != "hash"}
    checks = (
        (entry_hash(body) == data["hash"], f"line {position} does not match its hash (edited)"),
        (
            data["seq"] == position,
            f"line {position} holds entry seq={data['seq']}, expected {position} "
            "(entry deleted, inserted or reordered)",
        ),
        (
            data["prev_hash"] == prev_hash,
            f"line {position} does not chain to line {position - 1} (forged or reordered)",
        ),
    )
    for passed, message in checks:
        if not passed:
            return message, prev_hash
    return "", str(data["hash"])
