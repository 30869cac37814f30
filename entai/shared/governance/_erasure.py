"""Right to erasure, the pure part: requests, the subject matcher, receipts, lake files.

A data subject is named by its entity (``{"user_id": 42}``). Ingestion may have
pseudonymised identifiers with keyed HMAC (:func:`entai.shared.data._masking.pseudonym`), so
the :class:`Subject` matches a value in three spellings: its own type (``42`` in an
int64 column; ``user_id=i:42`` in a canonical entity key), its canonical string form
(``"42"``: how quarantine keeps rejected values) and its pseudonym (``p_...``).

Erasure stores implement :class:`Store`; the coordinator (``entai.pipelines.erasure``)
runs them and assembles an :class:`ErasureReceipt`. Receipts, subject reprs and audit
entries never carry the subject's values: the subject is named by :attr:`Subject.digest`,
a keyed hash that is not its pseudonym.

:class:`LakeZoneStore` erases rows from the Parquet (and JSON-lines) files of lake
zones, rewriting only the files that hold the subject, each atomically (new content
to a temporary sibling, then renamed over the old file; a file left empty is deleted).
:func:`lake_traces` is the byte-level scan of a whole lake used to prove erasure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from entai.shared.core import InvalidInputError
from entai.shared.data import pseudonym
from entai.shared.features import entity_key

__all__ = [
    "ENTITY_KEY_COLUMN",
    "ErasureReceipt",
    "ErasureRequest",
    "Store",
    "StoreReceipt",
    "StoreStatus",
    "Subject",
    "now_iso",
    "parse_entity",
]

ENTITY_KEY_COLUMN = "entity_key"
_KEY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^-?[0-9]+$")

StoreStatus = Literal["erased", "clean", "absent", "failed"]


def parse_entity(pairs: Iterable[str]) -> dict[str, int | str]:
    """Parse ``name=value`` arguments (the CLI's ``--entity``); integer literals become int.

    Raises:
        InvalidInputError: a pair without ``=``, an empty value or a repeated name.
    """
    out: dict[str, int | str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value or name in out:
            raise InvalidInputError(
                f"entity {pair!r} must be name=value with a non-empty, unrepeated name",
                details={"field": "entity", "name": name},
            )
        out[name] = int(value) if _INT.match(value) else value
    return out


@dataclass(frozen=True)
class ErasureRequest:
    """A request to erase one data subject everywhere.

    Attributes:
        entity: Join key name to value, e.g. ``{"user_id": 42}`` (int or str values).
        requested_by: Who asked (a principal or ticket reference).
        reason: Why (legal basis, ticket); recorded in the audit log.
    """

    entity: Mapping[str, int | str]
    requested_by: str
    reason: str = "right to erasure"

    def __post_init__(self) -> None:
        if not self.entity:
            raise InvalidInputError("erasure needs an entity", details={"field": "entity"})
        for name, value in self.entity.items():
            if not isinstance(name, str) or not _KEY_NAME.match(name):
                raise InvalidInputError(
                    f"entity key name {name!r} is not a valid column name",
                    details={"field": "entity"},
                )
            if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
                raise InvalidInputError(
                    f"entity value of {name!r} must be an int or a non-empty string",
                    details={"field": f"entity.{name}", "type": type(value).__name__},
                )
        if not self.requested_by.strip():
            raise InvalidInputError(
                "requested_by must name who asked", details={"field": "requested_by"}
            )


@dataclass(frozen=True)
class Subject:
    """The matcher of one data subject (its values never appear in its repr).

    Attributes:
        keys: Join key name to typed value.
        pseudonyms: Join key name to the value's HMAC pseudonym.
        digest: Keyed hash naming the subject in receipts and the audit log.
        tags: Entity keys and request ids found to belong to the subject (filled by
            the coordinator's discovery); stores that tag rows by them use them.
    """

    keys: Mapping[str, int | str]
    pseudonyms: Mapping[str, str]
    digest: str
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entity: Mapping[str, int | str], hmac_key: bytes) -> Subject:
        """The subject of an entity under a pseudonymisation key."""
        keys = dict(ErasureRequest(entity, "-").entity)
        mac = hmac.new(hmac_key, b"entai-erasure\0" + entity_key(keys).encode(), "sha256")
        return cls(
            keys=keys,
            pseudonyms={n: pseudonym(v, hmac_key) for n, v in keys.items()},
            digest="sha256:" + hashlib.sha256(mac.digest()).hexdigest()[:32],
        )

    def __repr__(self) -> str:
        return f"Subject(keys={sorted(self.keys)}, digest={self.digest!r})"

    def own_keys(self) -> list[str]:
        """Every full entity key the subject alone can have (its tags left out)."""
        return Subject(self.keys, self.pseudonyms, self.digest).entity_keys()

    def with_tags(self, tags: Iterable[str]) -> Subject:
        """A copy that also knows ``tags``."""
        return Subject(self.keys, self.pseudonyms, self.digest, self.tags | frozenset(tags))

    def strings(self, name: str) -> list[str]:
        """The string spellings of one key's value: canonical form and pseudonym."""
        return [str(self.keys[name]), self.pseudonyms[name]]

    def components(self, name: str) -> list[str]:
        """The entity-key components (``name=i:42``, ``name=s:"..."``) of one key."""
        out = [f"{name}=s:{json.dumps(s, ensure_ascii=True)}" for s in self.strings(name)]
        value = self.keys[name]
        return [f"{name}=i:{value}", *out] if isinstance(value, int) else out

    def entity_keys(self) -> list[str]:
        """Every full entity key the subject alone can have, plus the known tags."""
        names = sorted(self.keys)
        keys = [""]
        for name in names:
            keys = [f"{k}|{c}" if k else c for k in keys for c in self.components(name)]
        return sorted({*keys, *self.tags})

    def trace_pattern(self) -> str:
        """A regular expression (Python and RE2) matching any written trace of the subject.

        It matches the pseudonyms, every entity-key spelling (raw and JSON-escaped), the
        known tags as JSON strings and JSON fields holding a raw value
        (``"user_id": 42``, ``"user_id":"42"``).
        """
        end = "(?:[^0-9A-Za-z_]|$)"
        alts = {re.escape(p) for p in self.pseudonyms.values()}
        alts |= {re.escape(json.dumps(t)) for t in self.tags}
        for name, value in self.keys.items():
            for comp in self.components(name):
                alts |= {re.escape(comp) + end, re.escape(json.dumps(comp)[1:-1]) + end}
            raw = re.escape(str(value))
            alts.add(rf'"{re.escape(name)}"\s*:\s*\[?\s*"?{raw}"?{end}')
        return "|".join(sorted(alts))

    def key_mask(self, keys: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Which canonical entity keys (a string column) contain all of the subject's keys."""
        strings = _strings(keys)
        found = pa.array(np.ones(len(strings), dtype=bool))
        for name in self.keys:
            hit = pa.array(np.zeros(len(strings), dtype=bool))
            for comp in self.components(name):
                for part in (
                    pc.equal(strings, comp),
                    pc.starts_with(strings, comp + "|"),
                    pc.ends_with(strings, "|" + comp),
                    pc.match_substring(strings, "|" + comp + "|"),
                ):
                    hit = pc.or_(hit, part)
            found = pc.and_(found, hit)
        tagged = pc.is_in(strings, value_set=pa.array(sorted(self.tags), pa.string()))
        return pc.fill_null(pc.or_(found, tagged), False)

    def row_mask(self, table: pa.Table) -> pa.Array:
        """Which rows of a table belong to the subject.

        A row belongs when every subject key column is present and matches, or when its
        ``entity_key`` column is one of the subject's entity keys.
        """
        mask = pa.array(np.zeros(table.num_rows, dtype=bool))
        if all(name in table.column_names for name in self.keys):
            keys = pa.array(np.ones(table.num_rows, dtype=bool))
            for name in self.keys:
                keys = pc.and_(keys, self._column_mask(table.column(name), name))
            mask = keys
        if ENTITY_KEY_COLUMN in table.column_names:
            mask = pc.or_(mask, self.key_mask(table.column(ENTITY_KEY_COLUMN)))
        return pc.fill_null(mask, False)

    def _column_mask(self, column: pa.ChunkedArray, name: str) -> pa.Array:
        value, kind = self.keys[name], column.type
        if (
            pa.types.is_dictionary(kind)
            or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
        ):
            return pc.is_in(_strings(column), value_set=pa.array(self.strings(name)))
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        if numeric and isinstance(value, int):
            return pc.fill_null(pc.equal(column, pa.scalar(value, pa.int64())), False)
        if numeric and isinstance(value, str) and _INT.match(value):
            return pc.fill_null(pc.equal(column, pa.scalar(int(value), pa.int64())), False)
        return pa.array(np.zeros(len(column), dtype=bool))

    def trace_count(self, table: pa.Table) -> int:
        """Rows that belong to the subject or hold one of its traces in a string column."""
        mask = self.row_mask(table)
        pattern = self.trace_pattern()
        for column in table.columns:
            if _is_text(column.type):
                found = pc.match_substring_regex(column, pattern)
                mask = pc.or_(mask, pc.fill_null(found, False))
        return int(pc.sum(mask).as_py() or 0)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.string())


@dataclass(frozen=True)
class StoreReceipt:
    """What one store did for one erasure.

    Attributes:
        store: The store's name.
        status: ``erased`` (rows removed), ``clean`` (nothing held the subject),
            ``absent`` (the store is not there; ``note`` says why) or ``failed``.
        rows_removed: Rows, keys or samples removed.
        files_rewritten: Files rewritten without the subject's rows.
        files_deleted: Files that held only the subject's rows.
        touched: What was touched: file paths or ``view:count`` entries, never values.
        seconds: Time the store took.
        note: A sentence for people.
        tombstones: Entity keys tombstoned against late writes (the online store).
    """

    store: str
    status: StoreStatus
    rows_removed: int = 0
    files_rewritten: int = 0
    files_deleted: int = 0
    touched: tuple[str, ...] = ()
    seconds: float = 0.0
    note: str = ""
    tombstones: int = 0


@dataclass(frozen=True)
class ErasureReceipt:
    """The record of one erasure: returned to the caller and written to the audit log.

    Attributes:
        erasure_id: Unique id of this erasure.
        subject: The subject's digest (never its values).
        requested_by: Who asked; ``principal`` is who was authorised to do it.
        reason: Why.
        started_at: When the erasure started (UTC, ISO 8601).
        finished_at: When it finished.
        stores: One receipt per store.
        retrain_datasets: Immutable training datasets holding the subject, with rows.
        retrain_models: Model versions (``name/version``) trained or validated on them.
        remaining: The verification scan after erasure: store name -> traces left.
    """

    erasure_id: str
    subject: str
    requested_by: str
    principal: str
    reason: str
    started_at: str
    finished_at: str
    stores: tuple[StoreReceipt, ...]
    retrain_datasets: Mapping[str, int] = field(default_factory=dict)
    retrain_models: tuple[str, ...] = ()
    remaining: Mapping[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when no store failed and the verification scan found nothing."""
        failed = any(s.status == "failed" for s in self.stores)
        return not failed and not any(self.remaining.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (what is audited)."""
        out = asdict(self)
        out["retrain_datasets"] = dict(self.retrain_datasets)
        out["remaining"] = dict(self.remaining)
        out["complete"] = self.complete
        return out


@runtime_checkable
class Store(Protocol):
    """Something that holds data about subjects and can erase it."""

    @property
    def name(self) -> str:
        """A short, unique store name (``online``, ``offline``, ...)."""

    def erase(self, subject: Subject) -> StoreReceipt:
        """Remove every trace of ``subject``; idempotent."""

    def scan(self, subject: Subject) -> int:
        """How many traces of ``subject`` remain (0 after a successful erase)."""


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat()
