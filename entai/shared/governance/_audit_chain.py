"""The audit log's record format and the check of a whole chain.

An entry is one line of canonical JSON (sorted keys, no spaces). Its ``hash`` is an
HMAC-SHA256, under the audit key, of the canonical JSON of every other field,
``prev_hash`` included, so each entry commits to the whole history before it and
nobody without the key can recompute a valid chain. The first entry's ``prev_hash`` is
:data:`GENESIS_HASH` and ``seq`` counts from 1 (``seq`` = line number).

Logs written before the chain was keyed carry a plain SHA-256 of the same bytes
("legacy unkeyed" entries). They are accepted only as a prefix vouched for by the
keyed writer that took the log over: its first keyed entry is an ``audit:keyed``
(:data:`KEYED_ACTION`) entry recording how many legacy entries precede it, the keyed
chain starts there (``keyed_from``, also in the signed anchor) and every entry from
there on must carry a valid MAC. That entry chains onto the last legacy one, so from
the takeover on the legacy prefix cannot be edited without breaking the link either.
Before it, the prefix was only as good as SHA-256, which anyone can recompute. Plain
SHA-256 entries that no takeover entry vouches for (a whole log rewritten without the
key) are reported from entry 1.

:func:`check_chain` re-derives every line and the anchor, and reports the first
problem: its line (= the expected ``seq``) and what is wrong there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "KEYED_ACTION",
    "Anchor",
    "AuditEntry",
    "VerifyReport",
    "anchor_mac",
    "canonical_json",
    "check_anchor",
    "check_chain",
    "derive_key",
    "entry_mac",
    "legacy_entry_hash",
    "line_of",
    "parse_entry",
]

GENESIS_HASH = "0" * 64
KEYED_ACTION = "audit:keyed"
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
class Anchor:
    """A signed checkpoint of the log's head, kept in a store outside the lake.

    Attributes:
        seq: The anchored entry's sequence number.
        hash: The anchored entry's hash (its MAC).
        keyed_from: ``seq`` of the first keyed entry (1 unless a legacy log was taken over).
        size: Bytes of the log up to and including the anchored entry's line.
        ts: When the anchor was written (ISO-8601 UTC).
        mac: HMAC-SHA256 of the other fields under the anchor key derived from the audit key.
    """

    seq: int
    hash: str
    keyed_from: int
    size: int
    ts: str
    mac: str

    def body(self) -> dict[str, Any]:
        """The signed fields."""
        return {k: v for k, v in asdict(self).items() if k != "mac"}

    def to_json(self) -> str:
        """Canonical JSON of every field."""
        return canonical_json(asdict(self))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Anchor:
        """Parse a stored anchor.

        Raises:
            ValueError: when a field is missing or of the wrong type.
        """
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"anchor fields are {sorted(data)}, expected {sorted(names)}")
        ints = ("seq", "keyed_from", "size")
        if not all(isinstance(data[k], int) and not isinstance(data[k], bool) for k in ints):
            raise ValueError("anchor seq, keyed_from and size must be integers")
        if not all(isinstance(data[k], str) for k in ("hash", "ts", "mac")):
            raise ValueError("anchor hash, ts and mac must be strings")
        return cls(**{k: data[k] for k in names})


@dataclass(frozen=True)
class VerifyReport:
    """The result of checking the chain and its anchor.

    Attributes:
        ok: True when every entry and the anchor check out.
        entries: Entries read before the first problem (all of them when ok).
        first_bad_position: 1-based line (= expected ``seq``) of the first bad entry;
            None when ok or when only the anchor itself is bad.
        problem: What is wrong, in words ("" when ok).
        legacy_entries: Entries at the start carrying a plain SHA-256 (written before
            the chain was keyed).
        anchored_seq: ``seq`` of the anchor checked (None without a valid anchor).
    """

    ok: bool
    entries: int
    first_bad_position: int | None = None
    problem: str = ""
    legacy_entries: int = 0
    anchored_seq: int | None = None


def canonical_json(data: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 kept, no NaN: the bytes every MAC is taken over."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def derive_key(key: bytes, purpose: str) -> bytes:
    """A key for one purpose (``entry``, ``anchor``, ``bundle``) derived from the audit key.

    A MAC made for one purpose is never valid for another.
    """
    return hmac.new(key, f"entai-audit/{purpose}/v1".encode(), hashlib.sha256).digest()


def entry_mac(body: Mapping[str, Any], entry_key: bytes) -> str:
    """The keyed hash of an entry's fields (all but ``hash``), under the entry key."""
    return hmac.new(entry_key, canonical_json(body).encode(), hashlib.sha256).hexdigest()


def legacy_entry_hash(body: Mapping[str, Any]) -> str:
    """The plain SHA-256 older, unkeyed logs carry."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def anchor_mac(body: Mapping[str, Any], anchor_key: bytes) -> str:
    """The MAC of an anchor's signed fields, under the anchor key."""
    return hmac.new(anchor_key, canonical_json(body).encode(), hashlib.sha256).hexdigest()


def check_anchor(anchor: Anchor, anchor_key: bytes) -> bool:
    """True when the anchor was signed with this key."""
    return hmac.compare_digest(anchor_mac(anchor.body(), anchor_key), anchor.mac)


def line_of(entry: AuditEntry) -> str:
    """The entry's line in the log (canonical JSON and a newline)."""
    return canonical_json(asdict(entry)) + "\n"


_ENTRY_KEYS = frozenset(f.name for f in fields(AuditEntry))


def parse_entry(raw: bytes, position: int) -> tuple[dict[str, Any] | None, str]:
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
    if not isinstance(data["hash"], str) or not isinstance(data["prev_hash"], str):
        return None, f"line {position} has a field of the wrong type"
    if canonical_json(data) + "\n" != line:
        return None, f"line {position} is not in canonical form (edited)"
    return data, ""


class _Walk:
    """State of one pass over a chain: where the keyed part starts, what was seen."""

    def __init__(self, entry_key: bytes, anchor: Anchor | None) -> None:
        self.entry_key = entry_key
        self.keyed_from = anchor.keyed_from if anchor else None
        self.anchored_seq = anchor.seq if anchor else None
        self.anchored_hash = GENESIS_HASH if self.anchored_seq == 0 else None
        self.prev_hash = GENESIS_HASH
        self.count = 0
        self.legacy = 0
        self.keyed_seen = False

    def step(self, raw: bytes, position: int) -> tuple[int, str] | None:
        """Check one line; None when it is sound and chains on, else (bad line, problem)."""
        data, problem = parse_entry(raw, position)
        if data is None:
            return position, problem
        body = {k: v for k, v in data.items() if k != "hash"}
        found = self._hash_problem(body, str(data["hash"]), position)
        if found is not None:
            return found
        if data["seq"] != position:
            return position, (
                f"line {position} holds entry seq={data['seq']}, expected {position} "
                "(entry deleted, inserted or reordered)"
            )
        if data["prev_hash"] != self.prev_hash:
            return position, (
                f"line {position} does not chain to line {position - 1} (forged or reordered)"
            )
        self.prev_hash = str(data["hash"])
        self.count = position
        if position == self.anchored_seq:
            self.anchored_hash = self.prev_hash
        return None

    def _hash_problem(
        self, body: dict[str, Any], stated: str, position: int
    ) -> tuple[int, str] | None:
        if hmac.compare_digest(entry_mac(body, self.entry_key), stated):
            return self._keyed(body, position)
        keyed_part = self.keyed_seen or (
            self.keyed_from is not None and position >= self.keyed_from
        )
        plain = hmac.compare_digest(legacy_entry_hash(body), stated)
        if plain and not keyed_part:
            self.legacy += 1
            return None
        if plain:
            return position, (
                f"line {position} carries a plain SHA-256 where the keyed chain (from entry "
                f"{self.keyed_from}) needs a MAC under the audit key (rewritten without the key)"
            )
        return position, (
            f"line {position} does not match its MAC under the audit key (edited, forged, "
            "or written under another key)"
        )

    def _keyed(self, body: dict[str, Any], position: int) -> tuple[int, str] | None:
        """A line with a valid MAC; the first one after legacy lines must vouch for them."""
        first = not self.keyed_seen
        self.keyed_seen = True
        if self.keyed_from is None:
            self.keyed_from = position
        if position < self.keyed_from:
            return position, (
                f"line {position} is keyed but the anchor says the keyed chain starts "
                f"at {self.keyed_from}"
            )
        details = body.get("details")
        vouches = (
            body.get("action") == KEYED_ACTION
            and isinstance(details, dict)
            and details.get("legacy_entries") == position - 1
        )
        if first and position > 1 and not vouches:
            return 1, _unvouched(position - 1, f"entry {position}, the first keyed one, is not")
        return None


def _unvouched(legacy: int, what: str) -> str:
    return (
        f"entries 1..{legacy} carry a plain SHA-256 and {what} the takeover entry that vouches "
        "for them (an unkeyed log not yet taken over, or one rewritten without the key)"
    )


def _anchor_problem(
    walk: _Walk, anchor: Anchor | None, trusted: Anchor | None, unreadable: str, where: str
) -> tuple[int | None, str] | None:
    """Where and how the walked log disagrees with its anchor, if it does."""
    if unreadable:
        return None, f"the anchor in {where} cannot be read: {unreadable}"
    if anchor is None:
        if walk.count == 0:
            return None
        return None, (
            f"there is no anchor for this log in {where}: its history cannot be vouched for "
            "(anchor deleted, or the anchor store changed)"
        )
    if trusted is None:
        return None, f"the anchor in {where} is not signed with the audit key (forged)"
    checks = (
        (
            walk.count < trusted.seq,
            walk.count + 1,
            f"log ends at entry {walk.count} but the anchor records entry {trusted.seq}: "
            f"entries {walk.count + 1}..{trusted.seq} are missing (tail truncated)",
        ),
        (
            walk.anchored_hash != trusted.hash,
            trusted.seq,
            f"entry {trusted.seq} differs from the anchored entry (rewritten)",
        ),
        (
            walk.legacy != trusted.keyed_from - 1,
            trusted.keyed_from,
            f"the anchor says the keyed chain starts at entry {trusted.keyed_from}, "
            f"but {walk.legacy} legacy entries precede it",
        ),
    )
    return next(((position, problem) for failed, position, problem in checks if failed), None)


def check_chain(
    lines: Iterable[bytes],
    key: bytes,
    anchor: Anchor | None,
    *,
    anchor_problem: str = "",
    where: str = "the anchor store",
    require_takeover: bool = True,
) -> VerifyReport:
    """Check every line's MAC, sequence and link, then the anchor; report the first problem.

    Args:
        lines: The log's lines, newline included.
        key: The audit key.
        anchor: The latest anchor, or None when the store has none.
        anchor_problem: Why the anchor could not be read (it is then treated as bad).
        where: The anchor store, named in messages.
        require_takeover: Legacy (plain SHA-256) entries must be followed by the keyed
            takeover entry that vouches for them; False only to check a legacy log
            before taking it over.
    """
    signed = anchor is not None and check_anchor(anchor, derive_key(key, "anchor"))
    trusted = anchor if signed else None
    walk = _Walk(derive_key(key, "entry"), trusted)
    for position, raw in enumerate(lines, start=1):
        bad_line = walk.step(raw, position)
        if bad_line is not None:
            return VerifyReport(False, walk.count, bad_line[0], bad_line[1], walk.legacy)
    found: tuple[int | None, str] | None
    truncated = trusted is not None and walk.count < trusted.seq
    if require_takeover and walk.legacy and not walk.keyed_seen and not truncated:
        found = 1, _unvouched(walk.legacy, "no keyed entry follows as")
    else:
        found = _anchor_problem(walk, anchor, trusted, anchor_problem, where)
    if found is not None:
        return VerifyReport(False, walk.count, found[0], found[1], walk.legacy)
    anchored = trusted.seq if trusted is not None else None
    return VerifyReport(True, walk.count, legacy_entries=walk.legacy, anchored_seq=anchored)
