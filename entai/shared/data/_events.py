"""Event envelopes, and the validation of an event batch against its source's contract.

An :class:`Event` is what travels on the event bus: an id (the idempotency key), the
source it belongs to, its payload (one row of the source's contract) and when the
platform received it. :func:`validate_events` turns what a caller sent (a list of JSON
objects) into accepted, masked events plus per-event errors, with the same rules and
masking as file ingestion: the payloads become one Arrow batch and go through
:func:`entai.shared.data._validation.validate_and_mask`.

Input items take one of two shapes:

- an envelope ``{"event_id": ..., "payload": {...}, "source"?: ..., "received_at"?: ...}``;
- a bare payload ``{...}``: its id is then the contract's key value when the key is one
  unmasked column, else a keyed pseudonym of the payload, so a retried request gets
  the same ids (and the bus drops the repeats).

:func:`event_table` rebuilds the accepted-row table (the raw zone's schema) from
validated events, e.g. after they crossed the bus as JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from entai.shared.core import ContractViolationError, InvalidInputError
from entai.shared.data._contracts import DataContract
from entai.shared.data._masking import MaskingOperator, pseudonym
from entai.shared.data._validation import (
    BATCH_ID,
    QUARANTINE_REASON,
    accepted_schema,
    coerce_column,
    rule_failures,
    validate_and_mask,
)

__all__ = [
    "MAX_BATCH_EVENTS",
    "Event",
    "EventError",
    "EventsReceipt",
    "ValidatedEvents",
    "event_table",
    "validate_events",
]

logger = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 10_000
_SCALARS = (str, int, float, bool, datetime, date)


class Event(BaseModel):
    """One event on the bus.

    Attributes:
        event_id: Idempotency key: an id seen before is not stored again.
        source: The source (and contract) the payload belongs to.
        payload: One row: column name to a JSON scalar (or datetime).
        received_at: When the platform received it (UTC).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    payload: dict[str, Any]
    received_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("received_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class EventError(BaseModel):
    """Why one input item was rejected.

    Attributes:
        index: Position of the item in the request.
        event_id: Its id, when it had (or could be given) one.
        errors: One sentence per failed rule; names fields, never values.
    """

    index: int
    event_id: str | None
    errors: list[str]


class EventsReceipt(BaseModel):
    """The answer to a batch of events: counts and the per-event errors."""

    accepted: int
    rejected: int
    errors: list[EventError]


@dataclass(frozen=True)
class ValidatedEvents:
    """The outcome of :func:`validate_events`.

    Attributes:
        accepted: Accepted events with masked payloads, in input order.
        table: The same rows in the raw zone's schema (``accepted_schema``).
        rejected: One entry per rejected item, in input order.
    """

    accepted: list[Event]
    table: pa.Table
    rejected: list[EventError]


def _text(value: Any) -> str | None:
    """The canonical text of a payload value; contract parsing reads it back."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _derived_id(payload: Mapping[str, Any], contract: DataContract, key: bytes) -> str | None:
    if len(contract.key) == 1:  # the key value, masked as it is stored
        column = contract.column(contract.key[0])
        value = _text(payload.get(column.name))
        if value is None or column.operator == MaskingOperator.NONE:
            return value
        return pseudonym(value, key)
    body = json.dumps(
        {k: _text(v) for k, v in sorted(payload.items())}, sort_keys=True, ensure_ascii=True
    )
    return pseudonym(body, key)


def _envelope(
    item: Any, contract: DataContract, key: bytes, received_at: datetime
) -> tuple[str | None, dict[str, Any] | None, datetime, list[str]]:
    """Parse one input item: its id, payload, receive time and envelope errors."""
    if not isinstance(item, Mapping):
        return None, None, received_at, ["event: not a JSON object"]
    if "payload" not in item:
        return _derived_id(item, contract, key), dict(item), received_at, []
    data = {"source": contract.source, "received_at": received_at, **item}
    try:
        event = Event.model_validate(data)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()]
        raw_id = item.get("event_id")
        return (raw_id if isinstance(raw_id, str) else None), None, received_at, errors
    if event.source != contract.source:
        return event.event_id, None, received_at, [f"source: not {contract.source!r}"]
    return event.event_id, dict(event.payload), event.received_at, []


def _payload_errors(payload: dict[str, Any], contract: DataContract) -> list[str]:
    declared = {c.name for c in contract.columns}
    errors: list[str] = []
    unknown = sorted(str(k) for k in payload if k not in declared)
    if unknown and contract.extra_columns == "reject":
        errors.append(f"payload: field(s) {unknown} are not in contract {contract.source!r}")
    errors.extend(
        f"type({name}): not a scalar"
        for name, value in payload.items()
        if name in declared and value is not None and not isinstance(value, _SCALARS)
    )
    return errors


_Candidate = tuple[int, str, dict[str, Any], datetime]  # index, event id, payload, received


def _contract_check(
    candidates: Sequence[_Candidate],
    contract: DataContract,
    hmac_key: bytes,
    batch_id: str | None,
    errors: dict[int, list[str]],
) -> tuple[pa.Table, list[_Candidate]]:
    """Validate the payloads as one batch; adds failures to ``errors``.

    Returns:
        The accepted rows (masked) and their candidates, in input order.
    """
    if not candidates:  # nothing to validate (validate_and_mask wants rows)
        return accepted_schema(contract).empty_table(), []
    table = pa.table(
        {
            c.name: pa.array([_text(p.get(c.name)) for _, _, p, _ in candidates], pa.string())
            for c in contract.columns
        }
    )
    accepted, quarantined = validate_and_mask(table, contract, hmac_key, batch_id=batch_id)
    failed = np.zeros(table.num_rows, dtype=bool)
    for failure in rule_failures(table, contract)[1]:
        failed |= failure.rows
    if int(failed.sum()) != quarantined.num_rows:
        raise ContractViolationError(
            f"events for {contract.source!r}: rejected rows do not match the quarantine",
            details={"source": contract.source, "rows": table.num_rows},
        )
    reasons = quarantined.column(QUARANTINE_REASON).to_pylist()
    for position, reason in zip(np.flatnonzero(failed).tolist(), reasons, strict=True):
        errors[candidates[position][0]] = str(reason).split("; ")
    return accepted, [c for c, bad in zip(candidates, failed, strict=True) if not bad]


def validate_events(
    items: Sequence[Any],
    contract: DataContract,
    hmac_key: bytes,
    *,
    received_at: datetime | None = None,
    batch_id: str | None = None,
) -> ValidatedEvents:
    """Validate and mask a batch of events against ``contract``.

    Args:
        items: Envelopes or bare payloads (see the module docstring).
        contract: The source's contract.
        hmac_key: Pseudonymisation key for ``hmac`` columns and derived ids.
        received_at: Receive time for items without one (default: now).
        batch_id: Stored in ``_batch_id`` of the accepted rows.

    Returns:
        Accepted (masked) events and their table, and the rejected items' errors.

    Raises:
        InvalidInputError: the batch is empty or holds more than ``MAX_BATCH_EVENTS``.
    """
    if not 0 < len(items) <= MAX_BATCH_EVENTS:
        raise InvalidInputError(
            f"events: a batch holds 1 to {MAX_BATCH_EVENTS} events, got {len(items)}",
            details={"field": "events", "count": len(items)},
        )
    now = (received_at or datetime.now(UTC)).astimezone(UTC)
    errors: dict[int, list[str]] = {}
    ids: dict[int, str | None] = {}
    candidates: list[_Candidate] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        event_id, payload, when, problems = _envelope(item, contract, hmac_key, now)
        ids[index] = event_id
        if payload is not None:
            problems += _payload_errors(payload, contract)
            if event_id is None:
                problems.append("event_id: missing (and no key value to derive it from)")
            elif event_id in seen:
                problems.append("event_id: repeats an earlier event of this batch")
        if problems or event_id is None or payload is None:
            errors[index] = problems
            continue
        seen.add(event_id)
        candidates.append((index, event_id, payload, when))
    accepted, kept = _contract_check(candidates, contract, hmac_key, batch_id, errors)
    rows = accepted.drop_columns([BATCH_ID]).to_pylist()
    events = [
        Event(event_id=event_id, source=contract.source, payload=row, received_at=when)
        for (_, event_id, _, when), row in zip(kept, rows, strict=True)
    ]
    rejected = [EventError(index=i, event_id=ids[i], errors=errors[i]) for i in sorted(errors)]
    logger.info(
        "validated events",
        extra={"source": contract.source, "accepted": len(events), "rejected": len(rejected)},
    )
    return ValidatedEvents(events, accepted, rejected)


def event_table(
    events: Sequence[Event], contract: DataContract, *, batch_id: str | None = None
) -> pa.Table:
    """The raw-zone table of validated events (already masked: nothing is re-masked).

    Raises:
        ContractViolationError: an event belongs to another source or a value no
            longer parses as its column's type.
    """
    foreign = sorted({e.source for e in events} - {contract.source})
    if foreign:
        raise ContractViolationError(
            f"events of source(s) {foreign} cannot be stored as {contract.source!r}",
            details={"source": contract.source, "foreign": foreign},
        )
    schema = accepted_schema(contract)
    columns: dict[str, pa.Array] = {}
    for name in schema.names[:-1]:
        text = pa.array([_text(e.payload.get(name)) for e in events], pa.string())
        column = contract.column(name)
        masked = column.operator != MaskingOperator.NONE
        typed = text if masked else coerce_column(text, column.type)
        if typed.null_count != text.null_count:
            raise ContractViolationError(
                f"events for {contract.source!r}: column {name!r} holds values that are not "
                f"{column.type}",
                details={"source": contract.source, "field": name},
            )
        columns[name] = typed
    columns[BATCH_ID] = pa.repeat(pa.scalar(batch_id, pa.string()), len(events))
    return pa.table(columns).cast(schema)
