"""Event envelopes, and the validation of an event batch against its source's contract.

An :class:`Event` is what travels on the event bus: an id (the idempotency key), the
source it belongs to, its payload (one row of the source's contract) and when the
platform received it. :func:`validate_events` turns what a caller sent (a list of JSON
objects) into accepted, masked events plus per-event errors, with the same rules and
masking as file ingestion: the payloads become one Arrow batch and go through
:func:`entai.shared.data._validation.check_batch`.

Input items take one of two shapes:

- an envelope ``{"event_id": ..., "payload": {...}, "source"?: ..., "received_at"?: ...}``;
- a bare payload ``{...}``: its id is then the contract's key value when the key is one
  unmasked column, else a keyed pseudonym of the payload, so a retried request gets
  the same ids (and the bus drops the repeats).

PII found in a payload column the contract stores in the clear is handled as in file
ingestion (:mod:`entai.shared.data._undeclared`): under ``quarantine`` the event is
rejected with a ``pii(<column>): undeclared <kind> found`` error (rejected events are
never stored), under ``redact`` the finding is redacted in the accepted payload; the
receipt counts the findings per column and kind and warns, naming the column. An
event id never carries PII: one derived from a key value holding PII is a pseudonym,
and a caller's ``event_id`` holding PII is rejected.

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
from entai.shared.data._pii import find_pii
from entai.shared.data._undeclared import (
    PiiCounts,
    UndeclaredPii,
    undeclared_pii_warnings,
)
from entai.shared.data._validation import (
    BATCH_ID,
    QUARANTINE_REASON,
    accepted_schema,
    check_batch,
    coerce_column,
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
        trace: W3C trace context (``traceparent``) of the request that published it,
            so its consumers' spans join that request's trace; None when untraced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    payload: dict[str, Any]
    received_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    trace: dict[str, str] | None = Field(None, max_length=4)

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
    """The answer to a batch of events: counts, the per-event errors and PII findings.

    Attributes:
        accepted: Events accepted (and published).
        rejected: Events rejected; ``accepted + rejected`` is the batch's size.
        errors: One entry per rejected event.
        pii_findings: Per payload column stored in the clear, per PII kind: the events
            holding it (rejected or redacted, by ``security.undeclared_pii``).
        warnings: One per column with findings, naming it: declare it PII.
    """

    accepted: int
    rejected: int
    errors: list[EventError]
    pii_findings: dict[str, dict[str, int]] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class ValidatedEvents:
    """The outcome of :func:`validate_events`.

    Attributes:
        accepted: Accepted events with masked payloads, in input order.
        table: The same rows in the raw zone's schema (``accepted_schema``).
        rejected: One entry per rejected item, in input order.
        pii_findings: Per column stored in the clear, per PII kind: the events holding it.
        warnings: One per column with findings, naming it.
    """

    accepted: list[Event]
    table: pa.Table
    rejected: list[EventError]
    pii_findings: PiiCounts
    warnings: list[str]

    def receipt(self) -> EventsReceipt:
        """The answer to the caller: counts, per-event errors, PII findings, warnings."""
        return EventsReceipt(
            accepted=len(self.accepted),
            rejected=len(self.rejected),
            errors=self.rejected,
            pii_findings=self.pii_findings,
            warnings=self.warnings,
        )


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
        if value is None:
            return value
        clear = column.operator == MaskingOperator.NONE
        if clear and not (column.scanned_for_pii and find_pii(value)):
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
    found = sorted({str(m.kind) for m in find_pii(event.event_id)})
    if found:  # the id travels with the event and is never masked: refuse it
        return None, None, received_at, [f"event_id: holds PII ({', '.join(found)})"]
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
    errors: dict[int, list[str]],
    *,
    batch_id: str | None,
    undeclared_pii: UndeclaredPii,
) -> tuple[pa.Table, list[_Candidate], PiiCounts]:
    """Validate the payloads as one batch; adds failures to ``errors``.

    Returns:
        The accepted rows (masked) and their candidates, in input order, and the PII
        found in columns stored in the clear.
    """
    if not candidates:  # nothing to validate (check_batch wants rows)
        return accepted_schema(contract).empty_table(), [], {}
    table = pa.table(
        {
            c.name: pa.array([_text(p.get(c.name)) for _, _, p, _ in candidates], pa.string())
            for c in contract.columns
        }
    )
    checked = check_batch(
        table, contract, hmac_key, batch_id=batch_id, undeclared_pii=undeclared_pii
    )
    reasons = checked.quarantined.column(QUARANTINE_REASON).to_pylist()
    for position, reason in zip(np.flatnonzero(checked.failed).tolist(), reasons, strict=True):
        errors[candidates[position][0]] = str(reason).split("; ")
    kept = [c for c, bad in zip(candidates, checked.failed, strict=True) if not bad]
    return checked.accepted, kept, checked.pii_findings


def validate_events(
    items: Sequence[Any],
    contract: DataContract,
    hmac_key: bytes,
    *,
    received_at: datetime | None = None,
    batch_id: str | None = None,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> ValidatedEvents:
    """Validate and mask a batch of events against ``contract``.

    Args:
        items: Envelopes or bare payloads (see the module docstring).
        contract: The source's contract.
        hmac_key: Pseudonymisation key for ``hmac`` columns and derived ids.
        received_at: Receive time for items without one (default: now).
        batch_id: Stored in ``_batch_id`` of the accepted rows.
        undeclared_pii: What PII found in a payload column stored in the clear does:
            reject the event (``quarantine``) or redact the finding (``redact``).

    Returns:
        Accepted (masked) events and their table, the rejected items' errors, and
        the PII findings with their warnings.

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
    accepted, kept, findings = _contract_check(
        candidates, contract, hmac_key, errors, batch_id=batch_id, undeclared_pii=undeclared_pii
    )
    rows = accepted.drop_columns([BATCH_ID]).to_pylist()
    events = [
        Event(event_id=event_id, source=contract.source, payload=row, received_at=when)
        for (_, event_id, _, when), row in zip(kept, rows, strict=True)
    ]
    rejected = [EventError(index=i, event_id=ids[i], errors=errors[i]) for i in sorted(errors)]
    warnings = undeclared_pii_warnings(contract, findings, undeclared_pii)
    for warning in warnings:
        logger.warning(warning, extra={"source": contract.source, "pii_findings": findings})
    logger.info(
        "validated events",
        extra={"source": contract.source, "accepted": len(events), "rejected": len(rejected)},
    )
    return ValidatedEvents(events, accepted, rejected, findings, warnings)


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
