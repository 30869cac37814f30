"""Data contracts: what a source promises about the rows it sends.

A :class:`DataContract` is declared in Python or YAML. Per column it states the type,
nullability, range, allowed categories, a regular expression (RE2 syntax, matched
against the whole value), the PII class and the masking operator; per source it states
the unique key, the event-time column, retention and purpose. Columns that models
are evaluated by (per-segment metrics, fairness) are marked: ``protected: true`` on a
protected attribute (e.g. an age band), and the contract's ``segments`` list for
business segments; neither needs to be a model input.

Contracts are versioned (see ``entai.shared.data._contract_versions``): a changed contract gets the
next version, and a breaking change (column removed, type narrowed, rule tightened) is
refused unless forced.

Example:
    .. code-block:: yaml

        source: orders
        purpose: fraud detection
        retention_days: 365
        event_time: ts
        key: [order_id]
        columns:
          - {name: order_id, type: string, nullable: false, regex: "o[0-9]+"}
          - {name: user_email, type: string, pii: identifier}
          - {name: amount, type: float64, min: 0}
          - {name: ts, type: timestamp, nullable: false}
          - {name: age_band, type: string, protected: true}
          - {name: region, type: string}
        segments: [region]
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from entai.shared.core import ConfigError, DefinitionError, NotFoundError
from entai.shared.data._masking import MaskingOperator
from entai.shared.data._pii import PiiClass

__all__ = [
    "RESERVED_SOURCE_PREFIX",
    "Column",
    "ColumnType",
    "DataContract",
    "PiiClass",
    "load_contract",
]

logger = logging.getLogger(__name__)


class ColumnType(StrEnum):
    """Logical column types (value-compatible with ``definitions.ValueType``)."""

    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    def arrow_type(self) -> pa.DataType:
        """The Arrow type a validated column of this type has."""
        return _ARROW_TYPES[self]


RESERVED_SOURCE_PREFIX = "entai-"
"""Sources whose name starts with this belong to the platform's own events."""

_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    ColumnType.INT64: pa.int64(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.STRING: pa.string(),
    ColumnType.BOOL: pa.bool_(),
    ColumnType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}

# (old, new) type changes that every old value survives.

_DEFAULT_OPERATOR = {
    PiiClass.NONE: MaskingOperator.NONE,
    PiiClass.IDENTIFIER: MaskingOperator.HMAC,
    PiiClass.QUASI_IDENTIFIER: MaskingOperator.NONE,
    PiiClass.SENSITIVE: MaskingOperator.REDACT,
    PiiClass.FREE_TEXT: MaskingOperator.REDACT,
}
# Classes whose raw values must never be stored: "none" is refused for them.
_MUST_MASK = frozenset({PiiClass.IDENTIFIER, PiiClass.SENSITIVE, PiiClass.FREE_TEXT})
# Operators that keep distinct values distinct, so a masked key is still a key.
_INJECTIVE = frozenset({MaskingOperator.NONE, MaskingOperator.HMAC})
_NUMERIC = frozenset({ColumnType.INT64, ColumnType.FLOAT64})


class Column(BaseModel):
    """One column of a contract and the rules its values obey.

    Attributes:
        name: Column name as it appears in the input.
        type: Logical type; values that do not parse fail rule ``type``.
        nullable: Whether nulls (and empty CSV fields) are allowed (rule ``not_null``).
        min: Inclusive lower bound for numeric columns (rule ``range``).
        max: Inclusive upper bound for numeric columns (rule ``range``).
        allowed: The only values allowed (rule ``category``).
        regex: RE2 pattern the whole value must match (rule ``regex``).
        pii: The PII class of the column.
        masking: Operator applied before storage; defaults from ``pii``.
        protected: A protected attribute (e.g. sex, age band): model decisions are
            evaluated for fairness across its values. Its masking must keep distinct
            values distinct (``none`` or ``hmac``).
        pii_scan: Whether ingestion looks for PII in the column's values. Every string
            column stored unmasked is scanned (findings are quarantined or redacted by
            ``security.undeclared_pii``); ``false`` is the explicit opt-out for a column
            that legitimately holds such patterns (e.g. public support phone numbers).
        description: Free text for people.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str | int | bool, ...] | None = None
    regex: str | None = None
    pii: PiiClass = PiiClass.NONE
    masking: MaskingOperator | None = None
    protected: bool = False
    pii_scan: bool = True
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Column:
        where = f"column {self.name!r}"
        if (self.min is not None or self.max is not None) and self.type not in _NUMERIC:
            raise ValueError(f"{where}: min/max need a numeric type, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{where}: min {self.min} is above max {self.max}")
        if self.regex is not None:
            if self.type != ColumnType.STRING:
                raise ValueError(f"{where}: regex needs type string, not {self.type}")
            try:
                pc.match_substring_regex(pa.array([""]), self.regex)
            except pa.ArrowInvalid as exc:
                raise ValueError(f"{where}: regex is not valid RE2: {exc}") from None
        if self.allowed is not None:
            if not self.allowed:
                raise ValueError(f"{where}: allowed must list at least one value")
            try:
                self.allowed_array()
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                raise ValueError(f"{where}: allowed values are not all {self.type}") from None
        if self.masking is None:
            object.__setattr__(self, "masking", _DEFAULT_OPERATOR[self.pii])
        if self.pii in _MUST_MASK and self.masking == MaskingOperator.NONE:
            raise ValueError(f"{where}: pii class {self.pii} cannot use masking 'none'")
        if self.protected and self.masking not in _INJECTIVE:
            raise ValueError(
                f"{where}: protected attribute uses masking {self.masking}, which merges "
                "its groups; use hmac or none"
            )
        if not self.pii_scan and not self.stored_in_clear:
            raise ValueError(
                f"{where}: pii_scan: false only applies to a string column with masking "
                f"'none' (this one is {self.type} with masking {self.masking})"
            )
        return self

    def allowed_array(self) -> pa.Array:
        """The allowed values as an Arrow array of the column's type."""
        values = list(self.allowed or ())
        if self.type == ColumnType.STRING:
            return pa.array([str(v) for v in values], type=pa.string())
        return pa.array(values).cast(self.type.arrow_type())

    @property
    def operator(self) -> MaskingOperator:
        """The resolved masking operator (never None after validation)."""
        return self.masking or MaskingOperator.NONE

    @property
    def stored_in_clear(self) -> bool:
        """Whether the column holds text that is stored as it arrives (no masking)."""
        return self.type == ColumnType.STRING and self.operator == MaskingOperator.NONE

    @property
    def scanned_for_pii(self) -> bool:
        """Whether ingestion looks for undeclared PII in this column's values."""
        return self.stored_in_clear and self.pii_scan


class DataContract(BaseModel):
    """What one source promises about its rows.

    Attributes:
        source: Source name; also the lake partition name.
        version: Contract version, raised by :func:`evolve`.
        columns: The declared columns, in output order.
        key: Columns whose combined value is unique per row (rule ``unique``).
        event_time: The timestamp column rows are partitioned by (never null).
        retention_days: How long rows may be kept.
        purpose: Why the data is collected (purpose limitation).
        owner: Team or person accountable for the source.
        extra_columns: ``reject`` refuses input with undeclared columns; ``drop``
            discards them (their content is never stored).
        segments: Columns that models are evaluated by, per value (e.g. region);
            protected columns are evaluated by without being listed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    version: int = Field(1, ge=1)
    columns: tuple[Column, ...] = Field(min_length=1)
    key: tuple[str, ...] = ()
    event_time: str
    retention_days: int = Field(ge=1)
    purpose: str = Field(min_length=1)
    owner: str = ""
    extra_columns: Literal["reject", "drop"] = "reject"
    segments: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> DataContract:
        if self.source.startswith(RESERVED_SOURCE_PREFIX):
            raise ValueError(
                f"source names starting with {RESERVED_SOURCE_PREFIX!r} are reserved for "
                "the platform's own events"
            )
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"columns declared twice: {duplicated}")
        by_name = {c.name: c for c in self.columns}
        event = by_name.get(self.event_time)
        if event is None or event.type != ColumnType.TIMESTAMP:
            raise ValueError(f"event_time {self.event_time!r} must name a timestamp column")
        if event.operator != MaskingOperator.NONE:
            raise ValueError(f"event_time {self.event_time!r} cannot be masked")
        for name in self.key:
            column = by_name.get(name)
            if column is None:
                raise ValueError(f"key column {name!r} is not declared")
            if column.operator not in _INJECTIVE:
                raise ValueError(
                    f"key column {name!r} uses masking {column.operator}, "
                    "which merges distinct values; use hmac or none"
                )
        for name in self.segments:
            column = by_name.get(name)
            if column is None:
                raise ValueError(f"segment column {name!r} is not declared")
            if column.operator not in _INJECTIVE:
                raise ValueError(
                    f"segment column {name!r} uses masking {column.operator}, "
                    "which merges its segments; use hmac or none"
                )
        if len(set(self.segments)) != len(self.segments):
            raise ValueError(f"segments lists a column twice: {list(self.segments)}")
        return self

    @property
    def evaluation_attributes(self) -> tuple[str, ...]:
        """Columns models are evaluated by: protected columns and segments, in column order."""
        marked = set(self.segments)
        return tuple(c.name for c in self.columns if c.protected or c.name in marked)

    def column(self, name: str) -> Column:
        """The column called ``name``.

        Raises:
            NotFoundError: if the contract declares no such column.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise NotFoundError(
            f"contract {self.source!r} has no column {name!r}",
            details={"source": self.source, "column": name},
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the contract's content, version excluded.

        The evaluation marks (``protected``, ``segments``) and the PII scan opt-out
        (``pii_scan: false``) count only when set, so a contract that uses none keeps
        the fingerprint it had before they existed.
        """
        body = self.model_dump(mode="json", exclude={"version"})
        if not self.segments:
            del body["segments"]
        for column in body["columns"]:
            if not column["protected"]:
                del column["protected"]
            if column["pii_scan"]:
                del column["pii_scan"]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any) -> DataContract:
        """Build a contract from plain data (e.g. parsed YAML).

        Raises:
            DefinitionError: naming every invalid field.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            fields = [".".join(str(p) for p in e["loc"]) or "contract" for e in exc.errors()]
            messages = [f"{f}: {e['msg']}" for f, e in zip(fields, exc.errors(), strict=True)]
            raise DefinitionError(
                "invalid data contract: " + "; ".join(messages),
                details={"fields": fields},
            ) from None

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> DataContract:
        """Load a contract from a YAML file path or YAML text.

        Raises:
            DefinitionError: if the YAML is unreadable or the contract invalid.
        """
        text = text_or_path
        if isinstance(text_or_path, Path):
            try:
                text = text_or_path.read_text()
            except OSError as exc:
                raise DefinitionError(
                    f"contract file {text_or_path} cannot be read: {exc.strerror}",
                    details={"path": str(text_or_path)},
                ) from exc
        try:
            data = yaml.safe_load(str(text))
        except yaml.YAMLError as exc:
            raise DefinitionError(f"contract is not valid YAML: {exc}") from exc
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        """The contract as YAML that :meth:`from_yaml` reads back unchanged."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["columns"] = [c.model_dump(mode="json", exclude_defaults=True) for c in self.columns]
        return yaml.safe_dump(data, sort_keys=False)


def load_contract(import_path: str) -> DataContract:
    """A contract from ``"package.module:NAME"`` or a YAML file path."""
    if ":" in import_path and not import_path.endswith((".yaml", ".yml")):
        module, _, attr = import_path.partition(":")
        contract = getattr(importlib.import_module(module), attr, None)
        if not isinstance(contract, DataContract):
            raise ConfigError(
                f"{import_path} is not a DataContract", details={"contract": import_path}
            )
        return contract
    return DataContract.from_yaml(Path(import_path))
