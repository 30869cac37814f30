"""Data: contracts and their versions, batch validation, PII classes and the scanner,
masking, event envelopes, and the lake's layout.
"""

from __future__ import annotations

from entai.shared.data._contract_versions import (
    ContractRegistry,
    breaking_changes,
    evolve,
)
from entai.shared.data._contracts import (
    Column,
    ColumnType,
    DataContract,
    PiiClass,
    load_contract,
)
from entai.shared.data._events import (
    MAX_BATCH_EVENTS,
    Event,
    EventError,
    EventsReceipt,
    ValidatedEvents,
    event_table,
    validate_events,
)
from entai.shared.data._lake import (
    Lake,
)
from entai.shared.data._masking import (
    MaskingOperator,
    Pseudonymiser,
    apply_operator,
    mask,
    mask_text,
    per_distinct,
    pseudonym,
    pseudonymise,
    redact,
)
from entai.shared.data._pii import (
    PiiKind,
    PiiMatch,
    canonical_finding,
    find_pii,
    replace_pii,
    scrub_column,
)
from entai.shared.data._validation import (
    BATCH_ID,
    QUARANTINE_COLUMN,
    QUARANTINE_COLUMNS,
    QUARANTINE_REASON,
    QUARANTINE_RULE,
    RuleFailure,
    accepted_schema,
    check_schema,
    coerce_column,
    mask_table,
    quarantine_schema,
    repeated_keys,
    rule_failures,
    validate_and_mask,
)

__all__ = [
    "BATCH_ID",
    "MAX_BATCH_EVENTS",
    "QUARANTINE_COLUMN",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_REASON",
    "QUARANTINE_RULE",
    "Column",
    "ColumnType",
    "ContractRegistry",
    "DataContract",
    "Event",
    "EventError",
    "EventsReceipt",
    "Lake",
    "MaskingOperator",
    "PiiClass",
    "PiiKind",
    "PiiMatch",
    "Pseudonymiser",
    "RuleFailure",
    "ValidatedEvents",
    "accepted_schema",
    "apply_operator",
    "breaking_changes",
    "canonical_finding",
    "check_schema",
    "coerce_column",
    "event_table",
    "evolve",
    "find_pii",
    "load_contract",
    "mask",
    "mask_table",
    "mask_text",
    "per_distinct",
    "pseudonym",
    "pseudonymise",
    "quarantine_schema",
    "redact",
    "repeated_keys",
    "replace_pii",
    "rule_failures",
    "scrub_column",
    "validate_and_mask",
    "validate_events",
]
