"""The erased-subject list: events published before an erasure do not land after it.

An event can be on the bus (published, not yet consumed) when its subject is erased;
the erasure cannot reach it there, and the stream landing would write it to the lake
and the feature views afterwards. So the erasure coordinator records the subject here
before it erases any store, and the landing drops an event of a recorded subject that
the platform received up to the erase time (a replayed or late event), counting it in
its batch report. Events received after the erasure are new activity and land.

One JSON document per subject, ``<lake>/governance/erasures/subjects/<digest>.json``
(the digest of :class:`~entai.shared.governance.Subject`), kept for the online store's
tombstone retention; a later erasure of the same subject moves its erase time on. It
names the subject's key columns and, per column, a keyed marker of the value's
pseudonym (:func:`erased_marker`), never the value or its pseudonym, so the lake's
trace scans find nothing of the subject in it. Matching an event needs the
platform's pseudonymisation key: a column the contract pseudonymises carries the
pseudonym already, a column in the clear is pseudonymised first.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from entai.shared.data import Event, Lake, pseudonym

__all__ = [
    "ERASED_SUBJECTS_DIRECTORY",
    "ErasedSubject",
    "ErasedSubjects",
    "erased_marker",
    "record_erased_subject",
]

ERASED_SUBJECTS_DIRECTORY = "governance/erasures/subjects"
"""Where the erased-subject list lives in the lake."""

_RECENT_NS = 5_000_000_000


def erased_marker(column: str, pseudonym_value: str, hmac_key: bytes) -> str:
    """The keyed marker of one key column's value, from the value's pseudonym."""
    message = b"entai-erased\0" + column.encode() + b"\0" + pseudonym_value.encode()
    return hmac.new(hmac_key, message, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class ErasedSubject:
    """One entry of the list.

    Attributes:
        digest: The subject's digest (as in its receipts and audit entry).
        markers: Key column to the keyed marker of its value.
        erased_at: The latest erasure's time: events received up to it are dropped.
        expires_at: When the entry stops applying (erase time plus the retention).
    """

    digest: str
    markers: Mapping[str, str]
    erased_at: datetime
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "digest": self.digest,
            "markers": dict(self.markers),
            "erased_at": self.erased_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErasedSubject:
        """Read a JSON document written by :meth:`to_dict`."""
        return cls(
            digest=str(data["digest"]),
            markers={str(k): str(v) for k, v in data["markers"].items()},
            erased_at=datetime.fromisoformat(data["erased_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )


def _path(lake: Lake, digest: str) -> str:
    name = digest.replace(":", "-")
    return lake.path(ERASED_SUBJECTS_DIRECTORY, f"{name}.json")


def record_erased_subject(
    lake: Lake,
    digest: str,
    pseudonyms: Mapping[str, str],
    hmac_key: bytes,
    *,
    erased_at: datetime,
    retention: timedelta,
) -> ErasedSubject:
    """Put a subject on the list (or move its erase time on); return the entry.

    Args:
        lake: The lake.
        digest: The subject's digest.
        pseudonyms: Key column to the pseudonym of the subject's value
            (``Subject.pseudonyms``).
        hmac_key: The platform's pseudonymisation key.
        erased_at: The erase time (aware).
        retention: How long the entry applies (the tombstone retention).
    """
    entry = ErasedSubject(
        digest=digest,
        markers={c: erased_marker(c, p, hmac_key) for c, p in sorted(pseudonyms.items())},
        erased_at=erased_at.astimezone(UTC),
        expires_at=(erased_at + retention).astimezone(UTC),
    )
    lake.write_json(_path(lake, digest), entry.to_dict())
    return entry


class ErasedSubjects:
    """The landing's view of the list: which events belong to a subject erased after
    they were received.

    The list is read again at every :meth:`erased` call, but only the documents whose
    modification time changed, or is recent (a store's clock may count in seconds), are
    parsed again (one directory listing per batch).

    Args:
        lake: The lake.
        hmac_key: The platform's pseudonymisation key.
    """

    def __init__(self, lake: Lake, hmac_key: bytes) -> None:
        self._lake = lake
        self._key = hmac_key
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int | None, ErasedSubject]] = {}

    def __repr__(self) -> str:
        return f"ErasedSubjects(subjects={len(self._cache)})"

    def current(self, now: datetime | None = None) -> list[ErasedSubject]:
        """The entries in force at ``now`` (default: now)."""
        now = now or datetime.now(UTC)
        selector = pafs.FileSelector(
            self._lake.path(ERASED_SUBJECTS_DIRECTORY), recursive=False, allow_not_found=True
        )
        infos = [
            i
            for i in self._lake.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.path.endswith(".json")
        ]
        with self._lock:
            seen = {}
            for info in infos:
                stamp = info.mtime_ns
                cached = self._cache.get(info.path)
                recent = stamp is None or time.time_ns() - stamp < _RECENT_NS
                if cached is None or cached[0] != stamp or recent:
                    entry = ErasedSubject.from_dict(self._lake.read_json(info.path))
                    cached = (stamp, entry)
                seen[info.path] = cached
            self._cache = seen
            return [e for _, e in seen.values() if e.expires_at > now]

    def _spellings(self, value: Any) -> set[str]:
        """The pseudonyms a payload value may stand for: the pseudonym of its canonical
        form and, for a string, the string itself (a pseudonymised column's value)."""
        if value is None:
            return set()
        return {pseudonym(value, self._key), *([value] if isinstance(value, str) else [])}

    def erased(self, events: Sequence[Event], now: datetime | None = None) -> list[bool]:
        """Per event: does it belong to a listed subject erased at or after it was received?"""
        entries = self.current(now)
        if not entries or not events:
            return [False] * len(events)
        # Key columns -> their markers -> latest erase time: one lookup per column set.
        index: dict[tuple[str, ...], dict[tuple[str, ...], datetime]] = {}
        for entry in entries:
            columns = tuple(sorted(entry.markers))
            markers = tuple(entry.markers[c] for c in columns)
            by_markers = index.setdefault(columns, {})
            by_markers[markers] = max(entry.erased_at, by_markers.get(markers, entry.erased_at))
        return [self._erased(event, index) for event in events]

    def _erased(
        self, event: Event, index: Mapping[tuple[str, ...], Mapping[tuple[str, ...], datetime]]
    ) -> bool:
        for columns, by_markers in index.items():
            combos: list[tuple[str, ...]] = [()]
            for column in columns:
                found = self._spellings(event.payload.get(column))
                combos = [
                    (*combo, erased_marker(column, p, self._key))
                    for combo in combos
                    for p in sorted(found)
                ]
            for combo in combos:
                erased_at = by_markers.get(combo)
                if erased_at is not None and event.received_at <= erased_at:
                    return True
        return False
