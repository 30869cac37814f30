"""Online-store domain: rows, read results, statuses, key canonicalisation and routing.

Pure Python and numpy (no Ray, no Redis). The backends (:class:`MemoryOnlineStore` here, the
Redis one in ``entai.actors.backends._redis_store``) implement :class:`OnlineStore` and share
the rules below, so the same contract tests run against every backend.

Rules:
    * **Last-write-wins**: a row replaces the stored row for its ``(view, entity_key)``
      only if its ``(event_ts, created_ts)`` is strictly greater; an equal pair keeps the
      stored row, so replays are idempotent. A write replaces the whole row (every
      feature of the view at that event time).
    * **Statuses**: an entity never written (or a feature absent from its row) is
      ``NOT_FOUND``; a stored ``None`` is ``NULL_VALUE``; a row with
      ``now - event_ts > ttl`` is ``OUTSIDE_MAX_AGE`` with value ``None``. The boundary is
      inclusive: a row exactly ``ttl`` old is still ``PRESENT``.
    * Timestamps are timezone-aware; rows are normalised to UTC.
    * **Tombstones** (:mod:`entai.shared.features._tombstones`): after an erasure, a
      write of a tombstoned key whose event time is not after the erase time is dropped
      (counted in ``tombstoned_writes``) until the tombstone expires.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from entai.shared.core import InvalidInputError
from entai.shared.features._tombstones import TombstoneMap, tombstoned

__all__ = [
    "MISSING",
    "FeatureRow",
    "FeatureStatus",
    "MemoryOnlineStore",
    "OnlineBatch",
    "OnlineStore",
    "ReadRequest",
    "ReadResult",
    "assemble_result",
    "entity_key",
    "entity_keys",
    "from_micros",
    "list_value",
    "micros",
    "rendezvous_shard",
]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class FeatureStatus(StrEnum):
    """Status of one feature value in an online read (Feast's names)."""

    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    NULL_VALUE = "NULL_VALUE"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


class _Missing:
    """Marker for a feature absent from a stored row (not the same as a stored None)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def _utc(ts: datetime, field: str) -> datetime:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidInputError(
            f"{field} must be a timezone-aware datetime, got {ts!r}", details={"field": field}
        )
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


_ARRAYS = (tuple, np.ndarray)


def list_value(value: Any) -> Any:
    """A list feature's value as every backend keeps it: a Python list of Python values.

    Tuples and numpy arrays become lists (numpy elements their Python values); any
    other value is returned as it is. :class:`FeatureRow` applies it to its values.
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    return value


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One write: every feature of a view for one entity at one event time.

    Attributes:
        view: Feature view name (letters, digits, ``_ . -``; no ``:``).
        entity_key: Canonical entity key from :func:`entity_key`.
        values: Feature name to value (int, float, str, bool, None, or a list of
            ints or strs for a list feature; tuples and numpy arrays become lists).
        event_ts: When the values were true; normalised to UTC.
        created_ts: When the row was written; breaks event-time ties.
    """

    view: str
    entity_key: str
    values: Mapping[str, Any]
    event_ts: datetime
    created_ts: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.view, str) or not _NAME.fullmatch(self.view):
            raise InvalidInputError(
                f"FeatureRow.view {self.view!r} must match {_NAME.pattern}",
                details={"field": "view", "value": repr(self.view)},
            )
        if not isinstance(self.entity_key, str) or not self.entity_key:
            raise InvalidInputError(
                "FeatureRow.entity_key must be a non-empty string", details={"field": "entity_key"}
            )
        bad = [name for name in self.values if not isinstance(name, str) or name.startswith("@")]
        if bad:
            raise InvalidInputError(
                f"FeatureRow.values has invalid feature names {bad!r} (strings not starting '@')",
                details={"field": "values", "names": [repr(b) for b in bad]},
            )
        object.__setattr__(self, "event_ts", _utc(self.event_ts, "event_ts"))
        object.__setattr__(self, "created_ts", _utc(self.created_ts, "created_ts"))
        if any(isinstance(v, _ARRAYS) for v in self.values.values()):
            object.__setattr__(self, "values", {k: list_value(v) for k, v in self.values.items()})

    @property
    def version(self) -> tuple[datetime, datetime]:
        """The last-write-wins order key ``(event_ts, created_ts)``."""
        return (self.event_ts, self.created_ts)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros(ts: datetime) -> int:
    """A timezone-aware time as integer microseconds since the epoch (how stores keep it)."""
    return (ts - _EPOCH) // _US


def from_micros(us: int) -> datetime:
    """The UTC time of integer microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class OnlineBatch:
    """Many writes to one view in columns: what :class:`FeatureRow` is for one entity.

    The stream and materialization paths write a view's latest rows as one batch, so
    no per-row object is built, pickled to the shards and taken apart again; a backend
    writes it in bulk (:meth:`OnlineStore.write_batch`) under the same rules as the
    rows of :meth:`rows` written one by one, in order.

    Attributes:
        view: Feature view name (as :attr:`FeatureRow.view`).
        keys: Canonical entity keys (:func:`entity_keys`), one per row.
        features: Feature names, one column each.
        columns: Per feature, its values in row order (Python values, as in
            :attr:`FeatureRow.values`; list features as Python lists).
        event_us: Per row, the event time in microseconds since the epoch.
        created_us: Per row, the created time in microseconds since the epoch.
    """

    view: str
    keys: Sequence[str]
    features: tuple[str, ...]
    columns: Sequence[Sequence[Any]]
    event_us: Sequence[int]
    created_us: Sequence[int]

    def __post_init__(self) -> None:
        if not isinstance(self.view, str) or not _NAME.fullmatch(self.view):
            raise InvalidInputError(
                f"OnlineBatch.view {self.view!r} must match {_NAME.pattern}",
                details={"field": "view", "value": repr(self.view)},
            )
        bad = [f for f in self.features if not isinstance(f, str) or f.startswith("@")]
        if bad:
            raise InvalidInputError(
                f"OnlineBatch.features has invalid names {bad!r} (strings not starting '@')",
                details={"field": "features", "names": [repr(b) for b in bad]},
            )
        n = len(self.keys)
        lengths = {len(self.event_us), len(self.created_us), *map(len, self.columns)}
        if len(self.columns) != len(self.features) or lengths - {n}:
            raise InvalidInputError(
                f"OnlineBatch of view {self.view!r}: {len(self.features)} features and "
                f"{n} keys need as many columns and values per column, and a time per key",
                details={"field": "columns", "view": self.view},
            )
        if not all(isinstance(k, str) and k for k in self.keys):
            raise InvalidInputError(
                "OnlineBatch.keys must be non-empty strings", details={"field": "keys"}
            )

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def of_rows(cls, view: str, rows: Sequence[FeatureRow]) -> OnlineBatch:
        """The rows (all of ``view``, all with the same features) as one batch.

        Raises:
            InvalidInputError: a row of another view or with other features.
        """
        features = tuple(rows[0].values) if rows else ()
        odd = next((r for r in rows if r.view != view or tuple(r.values) != features), None)
        if odd is not None:
            raise InvalidInputError(
                f"OnlineBatch of view {view!r} and features {list(features)}: "
                f"row of {odd.view!r} has {list(odd.values)}",
                details={"field": "rows", "view": view},
            )
        return cls(
            view,
            [r.entity_key for r in rows],
            features,
            [[r.values[f] for r in rows] for f in features],
            [micros(r.event_ts) for r in rows],
            [micros(r.created_ts) for r in rows],
        )

    def rows(self) -> list[FeatureRow]:
        """The batch as one :class:`FeatureRow` per key, in order."""
        names = self.features
        stamps: dict[int, datetime] = {}
        out = []
        for i, (key, event, created) in enumerate(
            zip(self.keys, self.event_us, self.created_us, strict=True)
        ):
            if event not in stamps:
                stamps[event] = from_micros(event)
            if created not in stamps:
                stamps[created] = from_micros(created)
            values = {f: col[i] for f, col in zip(names, self.columns, strict=True)}
            out.append(FeatureRow(self.view, key, values, stamps[event], stamps[created]))
        return out

    def take(self, positions: Sequence[int]) -> OnlineBatch:
        """The rows at ``positions``, in that order."""
        return OnlineBatch(
            self.view,
            [self.keys[i] for i in positions],
            self.features,
            [[col[i] for i in positions] for col in self.columns],
            [self.event_us[i] for i in positions],
            [self.created_us[i] for i in positions],
        )


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Result of reading some features of one view for a list of entities.

    Columnar and feature-major, like the HTTP response: ``values[f][e]`` is feature
    ``features[f]`` of entity ``e`` (in the order the keys were requested).

    Attributes:
        features: Requested feature names, in request order.
        values: Per feature, the values in entity order (``None`` unless PRESENT).
        statuses: Per feature, the statuses in entity order.
        event_timestamps: Per entity, the stored row's event time (None if NOT_FOUND).
    """

    features: tuple[str, ...]
    values: list[list[Any]]
    statuses: list[list[FeatureStatus]]
    event_timestamps: list[datetime | None]


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One view's part of a batched read (what a shard receives per view).

    Attributes:
        view: Feature view name.
        keys: Canonical entity keys, in the order results are wanted.
        features: Feature names to return.
        ttl: The view's max age; None means no limit.
    """

    view: str
    keys: Sequence[str]
    features: Sequence[str]
    ttl: timedelta | None


_PRESENT, _NOT_FOUND = FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND
_NULL, _OLD = FeatureStatus.NULL_VALUE, FeatureStatus.OUTSIDE_MAX_AGE


def assemble_result(
    features: Sequence[str],
    rows: Sequence[tuple[datetime, Sequence[Any]] | None],
    *,
    ttl: timedelta | None,
    now: datetime,
) -> ReadResult:
    """Turn stored rows into a :class:`ReadResult`, applying the status rules.

    Args:
        features: Requested feature names.
        rows: Per entity, ``None`` when the entity has no row, else its event time and
            the stored values of ``features`` in order (:data:`MISSING` for an absent one).
        ttl: The view's max age; ``None`` means no limit. Age equal to ttl is PRESENT.
        now: Read time (timezone-aware).
    """
    nf = len(features)
    cutoff = None if ttl is None else _utc(now, "now") - ttl
    none_row, all_present = (None,) * nf, (_PRESENT,) * nf
    values: list[Sequence[Any]] = []
    statuses: list[Sequence[FeatureStatus]] = []
    stamps: list[datetime | None] = []
    for row in rows:
        if row is None:
            values.append(none_row)
            statuses.append((_NOT_FOUND,) * nf)
            stamps.append(None)
            continue
        ts, cells = row
        stamps.append(ts)
        if cutoff is not None and ts < cutoff:
            values.append(none_row)
            statuses.append((_OLD,) * nf)
        elif None in cells or MISSING in cells:
            values.append([None if v is MISSING else v for v in cells])
            statuses.append(
                [_NOT_FOUND if v is MISSING else _NULL if v is None else _PRESENT for v in cells]
            )
        else:  # the common case: every feature stored and non-null
            values.append(cells)
            statuses.append(all_present)
    if not values:
        return ReadResult(tuple(features), [[] for _ in features], [[] for _ in features], [])
    return ReadResult(
        tuple(features),
        [list(col) for col in zip(*values, strict=True)],
        [list(col) for col in zip(*statuses, strict=True)],
        stamps,
    )


def _encode_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"b:{int(value)}"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, str):
        return "s:" + json.dumps(value, ensure_ascii=True)
    if isinstance(value, float) and math.isfinite(value):
        return f"i:{int(value)}" if value.is_integer() else f"f:{value!r}"
    if hasattr(value, "item") and not isinstance(value, (bytes, float)):
        return _encode_value(name, value.item())  # numpy / pandas scalar
    raise InvalidInputError(
        f"join key {name!r} has unsupported value {value!r}: use int, str, bool or finite float",
        details={"field": name, "type": type(value).__name__},
    )


_CHECKED_NAMES: set[str] = set()  # join key names already validated (bounded below)


def entity_key(join_keys: Mapping[str, Any]) -> str:
    """Canonical, process- and version-stable key for one entity.

    Join keys are sorted by name; each value carries its type (``i:``, ``s:``, ``b:``,
    ``f:``), so ``1`` and ``"1"`` differ. Integral floats encode as ints (``1.0 == 1``),
    numpy scalars as their Python value.

    Raises:
        InvalidInputError: no join keys, a bad name or an unsupported value (e.g. None).
    """
    if len(join_keys) == 1:  # fast path for the usual single integer id
        ((name, value),) = join_keys.items()
        if type(value) is int and name in _CHECKED_NAMES:
            return f"{name}=i:{value}"
    if not join_keys:
        raise InvalidInputError("entity has no join keys", details={"field": "join_keys"})
    parts = []
    for name in sorted(join_keys):
        if name not in _CHECKED_NAMES:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise InvalidInputError(
                    f"join key name {name!r} must match {_NAME.pattern}",
                    details={"field": repr(name)},
                )
            if len(_CHECKED_NAMES) < 4096:
                _CHECKED_NAMES.add(name)
        parts.append(f"{name}={_encode_value(name, join_keys[name])}")
    return "|".join(parts)


def entity_keys(columns: Mapping[str, Sequence[Any]]) -> list[str]:
    """:func:`entity_key` of many entities given as columns (join key -> values).

    Each distinct value of a column is encoded once: the keys of a batch of rows cost
    a string join per row, not a canonicalisation per row.

    Raises:
        InvalidInputError: as :func:`entity_key` (no join keys, a bad name or value), or
            columns of different lengths.
    """
    if not columns:
        raise InvalidInputError("entity has no join keys", details={"field": "join_keys"})
    if len({len(v) for v in columns.values()}) > 1:
        raise InvalidInputError(
            "join key columns have different lengths", details={"field": "join_keys"}
        )
    parts: list[list[str]] = []
    for name in sorted(columns):
        entity_key({name: 0})  # checks the name (and remembers it)
        encoded: dict[tuple[type, Any], str] = {}
        column: list[str] = []
        for value in columns[name]:
            cell = (type(value), value)
            try:
                text = encoded.get(cell)
            except TypeError:  # unhashable: refused by _encode_value below
                text = None
            if text is None:
                text = f"{name}={_encode_value(name, value)}"
                encoded[cell] = text
            column.append(text)
        parts.append(column)
    if len(parts) == 1:
        return parts[0]
    return ["|".join(p) for p in zip(*parts, strict=True)]


def rendezvous_shard(key: str, shards: Sequence[str]) -> str:
    """The shard owning ``key``: highest-random-weight hashing with blake2b.

    Adding or removing a shard moves only the keys that the change must move.

    Raises:
        InvalidInputError: when ``shards`` is empty.
    """
    if not shards:
        raise InvalidInputError("no shards to route to", details={"field": "shards"})
    encoded = b"\x00" + key.encode()
    return max(
        shards, key=lambda s: (hashlib.blake2b(s.encode() + encoded, digest_size=8).digest(), s)
    )


@runtime_checkable
class OnlineStore(Protocol):
    """What every online backend offers; rules in the module docstring."""

    def write(self, rows: Sequence[FeatureRow]) -> int:
        """Apply rows with last-write-wins; return how many replaced the stored row."""
        ...

    def write_batch(self, batch: OnlineBatch) -> int:
        """:meth:`write` of ``batch.rows()``, in bulk: same rules, same result."""
        ...

    def read(
        self,
        view: str,
        keys: Sequence[str],
        features: Sequence[str],
        *,
        ttl: timedelta | None,
        now: datetime,
    ) -> ReadResult:
        """Read ``features`` of ``view`` for ``keys`` (in order) as of ``now``."""
        ...

    def delete(self, view: str | None, keys: Sequence[str]) -> int:
        """Delete the keys' rows in ``view`` (every view if None); return rows deleted."""
        ...

    def scan(self, view: str | None = None) -> Iterator[FeatureRow]:
        """Every stored row (of ``view`` if given), in no particular order."""
        ...

    def tombstone(self, keys: Sequence[str], erased_at: datetime, retention: timedelta) -> int:
        """Keep ``keys`` erased against writes dated up to ``erased_at``, until
        ``erased_at + retention``; return the tombstones written."""
        ...


class MemoryOnlineStore:
    """In-process online store: a dict per view, guarded by a lock (thread-safe)."""

    def __init__(self) -> None:
        self._views: dict[str, dict[str, FeatureRow]] = {}
        self._tombstones = TombstoneMap()
        self._lock = threading.Lock()
        self.tombstoned_writes = 0

    def __repr__(self) -> str:
        return f"MemoryOnlineStore(views={len(self._views)})"

    def write(self, rows: Sequence[FeatureRow]) -> int:
        """Apply rows with last-write-wins; return how many replaced the stored row."""
        applied = 0
        with self._lock:
            erased = self._tombstones.live(datetime.now(UTC)) if self._tombstones else {}
            for row in rows:
                if erased and tombstoned(row.entity_key, row.event_ts, erased):
                    self.tombstoned_writes += 1
                    continue
                table = self._views.setdefault(row.view, {})
                current = table.get(row.entity_key)
                if current is None or row.version > current.version:
                    table[row.entity_key] = row
                    applied += 1
        return applied

    def write_batch(self, batch: OnlineBatch) -> int:
        """:meth:`write` of ``batch.rows()``."""
        return self.write(batch.rows())

    def read(
        self,
        view: str,
        keys: Sequence[str],
        features: Sequence[str],
        *,
        ttl: timedelta | None,
        now: datetime,
    ) -> ReadResult:
        """Read ``features`` of ``view`` for ``keys`` (in order) as of ``now``."""
        table = self._views.get(view, {})
        found = [table.get(k) for k in keys]
        rows = [
            None if r is None else (r.event_ts, [r.values.get(f, MISSING) for f in features])
            for r in found
        ]
        return assemble_result(features, rows, ttl=ttl, now=now)

    def delete(self, view: str | None, keys: Sequence[str]) -> int:
        """Delete the keys' rows in ``view`` (every view if None); return rows deleted."""
        with self._lock:
            tables = list(self._views.values()) if view is None else [self._views.get(view, {})]
            return sum(1 for t in tables for k in set(keys) if t.pop(k, None) is not None)

    def scan(self, view: str | None = None) -> Iterator[FeatureRow]:
        """Every stored row (of ``view`` if given); a snapshot taken at call time."""
        with self._lock:
            tables = list(self._views.values()) if view is None else [self._views.get(view, {})]
            snapshot = [row for t in tables for row in t.values()]
        return iter(snapshot)

    def tombstone(self, keys: Sequence[str], erased_at: datetime, retention: timedelta) -> int:
        """Keep ``keys`` erased against writes dated up to ``erased_at``, until
        ``erased_at + retention``; return the tombstones written."""
        at = _utc(erased_at, "erased_at")
        with self._lock:
            return self._tombstones.add(keys, at, retention, datetime.now(UTC))

    def restore_tombstones(
        self, ids: Sequence[str], erased_at: datetime, expires_at: datetime
    ) -> int:
        """Reinstate tombstones kept outside this process, by id (:func:`tombstone_id` of
        the keys :meth:`tombstone` was given), e.g. in a restarted shard; return how many
        are in force (0 once ``expires_at`` passed)."""
        at, until = _utc(erased_at, "erased_at"), _utc(expires_at, "expires_at")
        with self._lock:
            return self._tombstones.add_ids(ids, at, until, datetime.now(UTC))
