"""Vectorised validation of a batch against its contract, with quarantine and masking.

:func:`validate_and_mask` is the pure core every ingestion path uses (files on Ray
Data, HTTP events, the event bus). For each rule it computes one boolean failure mask
over the whole batch (``pyarrow.compute``/numpy, no loop over rows), then:

- accepted rows: typed per the contract, masked, plus ``_batch_id``;
- quarantined rows: original values as strings, masked the same way and with the PII
  found in unmasked columns redacted (PII never lands unmasked, quarantine included),
  plus ``_quarantine_rule`` and ``_quarantine_column`` (the first failing rule),
  ``_quarantine_reason`` (every failure, ``; ``-joined; it names rules and columns,
  never values) and ``_batch_id``.

Rules, checked in this order per column: ``type``, ``not_null``, ``range``,
``category``, ``regex``; then ``pii`` (PII found in a column the contract stores in the
clear, under the ``quarantine`` policy: :mod:`entai.shared.data._undeclared`); then
``unique`` on the key (rows failing nothing else, duplicates after the first). Always
``rows in = accepted + quarantined``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from entai.shared.core import ContractViolationError, InvalidInputError
from entai.shared.data._contracts import Column, ColumnType, DataContract
from entai.shared.data._masking import MaskingOperator, Pseudonymiser, apply_operator
from entai.shared.data._pii import PiiClass
from entai.shared.data._undeclared import (
    PiiCounts,
    UndeclaredPii,
    UndeclaredScan,
    quarantines,
    scan_undeclared,
    scrub_in_clear,
)

__all__ = [
    "BATCH_ID",
    "QUARANTINE_COLUMN",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_REASON",
    "QUARANTINE_RULE",
    "CheckedBatch",
    "RuleFailure",
    "accepted_schema",
    "check_batch",
    "check_schema",
    "coerce_column",
    "mask_table",
    "quarantine_schema",
    "repeated_keys",
    "rule_failures",
    "validate_and_mask",
]

BATCH_ID = "_batch_id"
QUARANTINE_RULE = "_quarantine_rule"
QUARANTINE_COLUMN = "_quarantine_column"
QUARANTINE_REASON = "_quarantine_reason"
QUARANTINE_COLUMNS = (QUARANTINE_RULE, QUARANTINE_COLUMN, QUARANTINE_REASON, BATCH_ID)
Batch = TypeVar("Batch", pa.Table, pd.DataFrame)
_INT_PATTERN = r"^[+-]?[0-9]{1,18}$"
_INT_LIMIT = 2.0**63
_TRUE = ["true", "t", "1", "yes", "y"]
_FALSE = ["false", "f", "0", "no", "n"]


@dataclass(frozen=True)
class RuleFailure:
    """Rows failing one rule on one column (or on the key)."""

    rule: str
    column: str
    reason: str
    rows: np.ndarray


def _is_stringlike(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _castable(kind: pa.DataType, target: ColumnType) -> bool:
    if pa.types.is_null(kind) or _is_stringlike(kind):
        return True
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if target == ColumnType.STRING:
        return bool(numeric or pa.types.is_boolean(kind) or pa.types.is_temporal(kind))
    if target in (ColumnType.INT64, ColumnType.FLOAT64):
        return bool(numeric)
    if target == ColumnType.BOOL:
        return bool(pa.types.is_boolean(kind))
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date(kind))


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def check_schema(schema: pa.Schema, contract: DataContract, *, where: str) -> None:
    """Refuse input whose columns cannot satisfy the contract at all.

    Args:
        schema: The input's schema.
        contract: The source's contract.
        where: What the input is (a file URI), named in the error.

    Raises:
        ContractViolationError: on a missing column, an undeclared column (unless the
            contract drops extras) or a column whose type cannot hold the contract's.
    """
    names = set(schema.names)
    declared = {c.name for c in contract.columns}
    label = f"contract {contract.source!r} v{contract.version}"
    missing = [c.name for c in contract.columns if c.name not in names]
    if missing:
        raise ContractViolationError(
            f"{where}: missing column(s) {missing} required by {label}",
            details={"where": where, "missing": missing, "source": contract.source},
        )
    extra = sorted(names - declared)
    if extra and contract.extra_columns == "reject":
        raise ContractViolationError(
            f"{where}: column(s) {extra} are not declared in {label}",
            details={"where": where, "extra": extra, "source": contract.source},
        )
    wrong = {
        c.name: str(schema.field(c.name).type)
        for c in contract.columns
        if not _castable(_value_type(schema.field(c.name).type), c.type)
    }
    if wrong:
        expected = {name: str(contract.column(name).type) for name in wrong}
        raise ContractViolationError(
            f"{where}: column types {wrong} cannot hold {label} types {expected}",
            details={"where": where, "types": wrong, "expected": expected},
        )


def _ints(text: pa.Array) -> pa.Array:
    valid = pc.fill_null(pc.match_substring_regex(text, _INT_PATTERN), False)
    return pc.cast(pc.if_else(valid, text, pa.scalar(None, pa.string())), pa.int64())


def _floats(text: pa.Array) -> pa.Array:
    numbers = pd.to_numeric(pd.Series(text.to_pandas()), errors="coerce")
    return pa.array(numbers.to_numpy(dtype=np.float64, na_value=np.nan), from_pandas=True)


def _bools(text: pa.Array) -> pa.Array:
    lower = pc.utf8_lower(text)
    falsy = pc.if_else(pc.is_in(lower, pa.array(_FALSE)), False, pa.scalar(None, pa.bool_()))
    return pc.if_else(pc.is_in(lower, pa.array(_TRUE)), True, falsy)


def _timestamps(text: pa.Array) -> pa.Array:
    arrow_type = ColumnType.TIMESTAMP.arrow_type()
    try:
        return pc.cast(pc.cast(text, pa.timestamp("us")), arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        series = pd.Series(text.to_pandas(), dtype=object)
        stamps = pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce")
        naive = stamps.dt.tz_convert(None)
        return pa.array(naive, type=pa.timestamp("us"), from_pandas=True).cast(arrow_type)


_PARSERS = {
    ColumnType.INT64: _ints,
    ColumnType.FLOAT64: _floats,
    ColumnType.BOOL: _bools,
    ColumnType.TIMESTAMP: _timestamps,
}


def _parse_strings(values: pa.Array, target: ColumnType) -> pa.Array:
    if target == ColumnType.STRING:
        return values
    text = pc.utf8_trim_whitespace(values)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(text, target.arrow_type())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _PARSERS[target](text)


def coerce_column(values: pa.Array | pa.ChunkedArray, target: ColumnType) -> pa.Array:
    """Convert a column to the contract's type; a value that does not convert is null.

    Strings are trimmed and parsed (ISO 8601 timestamps; naive ones are UTC); an empty
    string is null for non-string types. Floats convert to int64 only when integral.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(_value_type(values.type))
    arrow_type = target.arrow_type()
    if values.type == arrow_type:
        return values
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), arrow_type)
    if _is_stringlike(values.type):
        return _parse_strings(values.cast(pa.string()), target)
    if target == ColumnType.STRING and pa.types.is_boolean(values.type):
        return pc.if_else(values, "true", "false")
    if target == ColumnType.INT64 and pa.types.is_floating(values.type):
        integral = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), _INT_LIMIT))
        kept = pc.if_else(pc.fill_null(integral, False), values, pa.scalar(None, values.type))
        return pc.cast(kept, arrow_type, safe=False)
    return pc.cast(values, arrow_type)


def _mask(expression: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(expression, False)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _any_failed(failures: Sequence[RuleFailure], rows: int) -> np.ndarray:
    failed = np.zeros(rows, dtype=bool)
    for failure in failures:
        failed |= failure.rows
    return failed


def _column_failures(
    column: Column, raw: pa.Array, typed: pa.Array, required: bool
) -> list[RuleFailure]:
    name = column.name
    bad_type = _mask(pc.and_(pc.is_null(typed), pc.is_valid(raw)))
    found = [RuleFailure("type", name, f"type({name}): not a valid {column.type}", bad_type)]
    if required:
        missing = _mask(pc.is_null(raw))
        found.append(RuleFailure("not_null", name, f"not_null({name}): value missing", missing))
    if column.min is not None or column.max is not None:
        low = pc.less(typed, column.min) if column.min is not None else None
        high = pc.greater(typed, column.max) if column.max is not None else None
        # `low or high` would test an (empty) Arrow array's truth value: spell it out.
        either = low if high is None else high if low is None else pc.or_(low, high)
        outside = _mask(either)
        reason = f"range({name}): outside [{column.min}, {column.max}]"
        found.append(RuleFailure("range", name, reason, outside))
    if column.allowed is not None:
        unknown = pc.and_(pc.invert(pc.is_in(typed, column.allowed_array())), pc.is_valid(typed))
        reason = f"category({name}): not an allowed value"
        found.append(RuleFailure("category", name, reason, _mask(unknown)))
    if column.regex is not None:
        matched = pc.match_substring_regex(typed, f"^(?:{column.regex})$")
        reason = f"regex({name}): does not match the pattern"
        found.append(RuleFailure("regex", name, reason, _mask(pc.invert(matched))))
    return [f for f in found if f.rows.any()]


def _first_seen_codes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row, the rank of its value by first appearance (null is a value too)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # Arrow numbers a dictionary in order of first appearance (hashing, no sort).
    encoded = column.dictionary_encode(null_encoding="encode")
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def repeated_keys(keys: pa.Table) -> np.ndarray:
    """True for each row whose key (all columns together) appeared in an earlier row."""
    if keys.num_rows == 0:
        return np.zeros(0, dtype=bool)
    codes = _first_seen_codes(keys.column(0))
    for column in keys.columns[1:]:
        column_codes = _first_seen_codes(column)
        combined = codes * (int(column_codes.max()) + 1) + column_codes
        codes = _first_seen_codes(pa.array(combined))  # stays < rows: no overflow
    # With codes numbered by first appearance, a row is new iff its code exceeds
    # every earlier code.
    seen = np.maximum.accumulate(codes)
    repeated = np.ones(keys.num_rows, dtype=bool)
    repeated[0] = False
    repeated[1:] = codes[1:] <= seen[:-1]
    return repeated


def _checked_rules(
    table: pa.Table, contract: DataContract, unique_key: bool, undeclared_pii: UndeclaredPii
) -> tuple[pa.Table, list[RuleFailure], UndeclaredScan]:
    typed: dict[str, pa.Array] = {}
    failures: list[RuleFailure] = []
    for column in contract.columns:
        raw = table.column(column.name)
        typed[column.name] = coerce_column(raw, column.type)
        required = not column.nullable or column.name == contract.event_time
        failures.extend(_column_failures(column, raw, typed[column.name], required))
    scan = scan_undeclared(pa.table(typed), contract)
    for name, found in scan.columns.items():
        if quarantines(contract.column(name), contract, undeclared_pii):
            failures.extend(
                RuleFailure("pii", name, f"pii({name}): undeclared {kind} found", rows)
                for kind, rows in found.kinds.items()
            )
        else:
            typed[name] = found.scrubbed
    typed_table = pa.table(typed)
    if contract.key and unique_key:
        candidates = np.flatnonzero(~_any_failed(failures, len(table)))
        duplicate = np.zeros(len(table), dtype=bool)
        keys = typed_table.select(list(contract.key)).take(pa.array(candidates))
        duplicate[candidates] = repeated_keys(keys)
        if duplicate.any():
            label = ",".join(contract.key)
            reason = f"unique({label}): duplicate of an earlier row"
            failures.append(RuleFailure("unique", label, reason, duplicate))
    return typed_table, failures, scan


def rule_failures(
    table: pa.Table,
    contract: DataContract,
    *,
    unique_key: bool = True,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> tuple[pa.Table, list[RuleFailure]]:
    """Type the contract's columns and find every rule failure, in rule order.

    ``unique_key=False`` leaves the key's uniqueness to the caller (ingestion checks it
    once over every block). ``undeclared_pii`` says what PII found in a column stored
    in the clear does: fail rule ``pii`` (``quarantine``) or be redacted in the typed
    table (``redact``; a key column's findings fail the rule either way).

    Returns:
        The typed table (contract columns only; unconvertible values null) and the
        failures that hit at least one row.
    """
    typed, failures, _ = _checked_rules(table, contract, unique_key, undeclared_pii)
    return typed, failures


def accepted_schema(contract: DataContract) -> pa.Schema:
    """Schema of accepted rows: contract types after masking, then ``_batch_id``."""
    fields = [
        pa.field(c.name, c.type.arrow_type() if c.operator == MaskingOperator.NONE else pa.string())
        for c in contract.columns
        if c.operator != MaskingOperator.DROP
    ]
    return pa.schema([*fields, pa.field(BATCH_ID, pa.string())])


def quarantine_schema(contract: DataContract) -> pa.Schema:
    """Schema of quarantined rows: masked originals as strings, then the reason columns."""
    names = [c.name for c in contract.columns if c.operator != MaskingOperator.DROP]
    return pa.schema([pa.field(n, pa.string()) for n in [*names, *QUARANTINE_COLUMNS]])


def _first_and_all(failures: Sequence[RuleFailure], rows: np.ndarray) -> list[pa.Array]:
    rule = np.full(rows.size, None, dtype=object)
    column = np.full(rows.size, None, dtype=object)
    reason = np.full(rows.size, "", dtype=object)
    named = np.zeros(rows.size, dtype=bool)
    for failure in failures:
        hit = failure.rows[rows]
        first = hit & ~named
        named |= hit
        rule[first] = failure.rule
        column[first] = failure.column
        reason[hit] = reason[hit] + "; " + failure.reason
    joined = pc.utf8_ltrim(pa.array(reason, type=pa.string()), "; ")
    return [pa.array(rule, pa.string()), pa.array(column, pa.string()), joined]


def _as_text(values: pa.ChunkedArray) -> pa.Array:
    return coerce_column(values, ColumnType.STRING)


@dataclass(frozen=True)
class CheckedBatch:
    """A batch split into accepted and quarantined rows, both masked.

    Attributes:
        accepted: Accepted rows, in :func:`accepted_schema`.
        quarantined: Quarantined rows, in :func:`quarantine_schema`.
        failed: Per input row, whether it was quarantined.
        pii_findings: Per column stored in the clear, per PII kind: the rows holding it
            (whether they were quarantined or redacted).
    """

    accepted: pa.Table
    quarantined: pa.Table
    failed: np.ndarray
    pii_findings: PiiCounts


def check_batch(
    table: pa.Table,
    contract: DataContract,
    hmac_key: bytes,
    *,
    batch_id: str | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    unique_key: bool = True,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> CheckedBatch:
    """Split an Arrow batch into accepted and quarantined rows, both masked.

    Args:
        table: The batch.
        contract: The source's contract.
        hmac_key: Pseudonymisation key for ``hmac`` columns.
        batch_id: Stored in ``_batch_id`` on every output row.
        pseudonymiser: Pseudonymises ``hmac`` columns (made with ``hmac_key``; one kept
            across batches hashes each id once); by default one for this batch.
        unique_key: Quarantine later duplicates of the key within the batch; False
            when the caller checks the key across batches.
        undeclared_pii: What PII found in a column stored in the clear does
            (:class:`~entai.shared.data._undeclared.UndeclaredPii`).

    Raises:
        ContractViolationError: if the batch's columns cannot satisfy the contract.
        ValueError: if ``pseudonymiser`` was made with another key.
    """
    check_schema(table.schema, contract, where="batch")
    typed, failures, scan = _checked_rules(table, contract, unique_key, undeclared_pii)
    failed = _any_failed(failures, len(table))
    rows = np.flatnonzero(failed)
    batch = pa.scalar(batch_id, pa.string())
    pseudonymiser = pseudonymiser or Pseudonymiser(hmac_key)

    kept = mask_table(typed.filter(pa.array(~failed)), contract, hmac_key, pseudonymiser)
    accepted = kept.append_column(BATCH_ID, pa.repeat(batch, kept.num_rows))
    accepted = accepted.cast(accepted_schema(contract))

    originals = table.select([c.name for c in contract.columns]).take(pa.array(rows))
    as_text = pa.table({name: _as_text(originals.column(name)) for name in originals.column_names})
    quarantined = scrub_in_clear(mask_table(as_text, contract, hmac_key, pseudonymiser), contract)
    rule, column, reason = _first_and_all(failures, rows)
    quarantined = (
        quarantined.append_column(QUARANTINE_RULE, rule)
        .append_column(QUARANTINE_COLUMN, column)
        .append_column(QUARANTINE_REASON, reason)
        .append_column(BATCH_ID, pa.repeat(batch, len(rows)))
    )
    quarantined = quarantined.cast(quarantine_schema(contract))

    if accepted.num_rows + quarantined.num_rows != table.num_rows:
        raise ContractViolationError(
            "row count invariant broken while validating a batch",
            details={"rows_in": table.num_rows, "accepted": accepted.num_rows},
        )
    return CheckedBatch(accepted, quarantined, failed, scan.counts())


def validate_and_mask(
    data: Batch,
    contract: DataContract,
    hmac_key: bytes,
    *,
    batch_id: str | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    unique_key: bool = True,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> tuple[Batch, Batch]:
    """Split a batch into accepted and quarantined rows, both masked.

    :func:`check_batch` for Arrow or pandas (the result has the same kind), without
    the per-row outcome and the PII counts.

    Raises:
        ContractViolationError: if the batch's columns cannot satisfy the contract.
        InvalidInputError: if a pandas batch cannot be converted to Arrow.
        ValueError: if ``pseudonymiser`` was made with another key.
    """
    if isinstance(data, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(
                f"batch cannot be read as a table: {type(exc).__name__}",
                details={"columns": [str(c) for c in data.columns]},
            ) from None
    else:
        table = data
    checked = check_batch(
        table,
        contract,
        hmac_key,
        batch_id=batch_id,
        pseudonymiser=pseudonymiser,
        unique_key=unique_key,
        undeclared_pii=undeclared_pii,
    )
    if isinstance(data, pd.DataFrame):
        return checked.accepted.to_pandas(), checked.quarantined.to_pandas()
    return checked.accepted, checked.quarantined


def mask_table(
    table: pa.Table, contract: DataContract, key: bytes, pseudonymiser: Pseudonymiser | None = None
) -> pa.Table:
    """Apply every column's operator; columns the contract does not declare pass through.

    ``pseudonymiser`` (made with ``key``) pseudonymises ``hmac`` columns; by default a
    new one per column.
    """

    for column in contract.columns:
        if column.name not in table.column_names or column.operator == MaskingOperator.NONE:
            continue
        index = table.column_names.index(column.name)
        masked = apply_operator(
            table.column(index),
            column.operator,
            key,
            free_text=column.pii == PiiClass.FREE_TEXT,
            pseudonymiser=pseudonymiser,
        )
        if masked is None:
            table = table.remove_column(index)
        else:
            table = table.set_column(index, pa.field(column.name, masked.type), masked)
    return table
