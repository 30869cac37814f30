"""Tombstones: an erased entity key stays erased against late writes for a while.

Erasure deletes a subject's online rows and leaves a tombstone per entity key it
erased, holding the erase time. Until the tombstone expires (the erase time plus the
online store's ``tombstone_retention_s``), every backend drops a write of a tombstoned
key whose event time is not after the erase time: a stream replay or a late event
cannot bring the subject back, while real activity after the erasure lands normally.
A dropped write is counted, not an error.

A write is checked against the tombstone of its own key and, for a composite key
(``category=s:"books"|user_id=i:42``), against each component's, so tombstoning
``user_id=i:42`` covers every composite key of that user.

A tombstone names its key by :func:`tombstone_id`, a SHA-256 digest, so no store keeps
the erased identifier in the clear (a digest of a small key space can still be
enumerated: it hides the value from a glance, not from a search).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

__all__ = ["TombstoneMap", "tombstone_id", "tombstone_ids", "tombstoned"]

_SEPARATOR = "|"


@functools.lru_cache(maxsize=1 << 16)  # a batch checks each user's id once per row
def tombstone_id(key: str) -> str:
    """The id a tombstone of the entity key (or key component) ``key`` is stored under."""
    return hashlib.sha256(b"entai-tombstone\0" + key.encode()).hexdigest()[:32]


def tombstone_ids(key: str) -> list[str]:
    """The tombstone ids a write of ``key`` is checked against: the key's own and, for a
    composite key, each component's."""
    parts = key.split(_SEPARATOR)
    names = [key, *parts] if len(parts) > 1 else [key]
    return [tombstone_id(n) for n in names]


def tombstoned(key: str, event_ts: datetime, erased: Mapping[str, datetime]) -> bool:
    """Whether a write of ``key`` at ``event_ts`` is dropped, given the live tombstones'
    erase times by id (expired ones left out)."""
    return any((at := erased.get(i)) is not None and event_ts <= at for i in tombstone_ids(key))


class TombstoneMap:
    """Live tombstones in memory: id -> (erase time, expiry). Not thread-safe; callers lock."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[datetime, datetime]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(
        self, keys: Iterable[str], erased_at: datetime, retention: timedelta, now: datetime
    ) -> int:
        """Tombstone ``keys`` at ``erased_at`` until ``erased_at + retention``; drop the
        expired ones. Returns how many tombstones were written (0 if already expired)."""
        return self.add_ids({tombstone_id(k) for k in keys}, erased_at, erased_at + retention, now)

    def add_ids(
        self, ids: Iterable[str], erased_at: datetime, expires_at: datetime, now: datetime
    ) -> int:
        """Tombstone ids (:func:`tombstone_id`) at ``erased_at`` until ``expires_at``; drop
        the expired ones. Returns how many were written (0 if already expired)."""
        self.expire(now)
        if expires_at <= now:
            return 0
        written = 0
        for tid in set(ids):
            at, until = self._by_id.get(tid, (erased_at, expires_at))
            self._by_id[tid] = (max(at, erased_at), max(until, expires_at))
            written += 1
        return written

    def expire(self, now: datetime) -> None:
        """Forget the tombstones whose retention is over."""
        for tid in [t for t, (_, until) in self._by_id.items() if until <= now]:
            del self._by_id[tid]

    def live(self, now: datetime) -> dict[str, datetime]:
        """Erase time by id of the tombstones still in force at ``now``."""
        return {t: at for t, (at, until) in self._by_id.items() if until > now}
