"""Data: contracts and their versions, batch validation, PII classes and the scanner
(PII where the contract did not declare it included), masking, event envelopes, and
the lake's layout.
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
    redact_finding,
)
from entai.shared.data._pii import (
    ColumnScan,
    PiiKind,
    PiiMatch,
    canonical_finding,
    find_pii,
    replace_pii,
    scan_column,
    scrub_column,
)
from entai.shared.data._undeclared import (
    PiiCounts,
    UndeclaredPii,
    merge_pii_counts,
    undeclared_pii_warnings,
)
from entai.shared.data._validation import (
    BATCH_ID,
    QUARANTINE_COLUMN,
    QUARANTINE_COLUMNS,
    QUARANTINE_REASON,
    QUARANTINE_RULE,
    CheckedBatch,
    RuleFailure,
    accepted_schema,
    check_batch,
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
    "CheckedBatch",
    "Column",
    "ColumnScan",
    "ColumnType",
    "ContractRegistry",
    "DataContract",
    "Event",
    "EventError",
    "EventsReceipt",
    "Lake",
    "MaskingOperator",
    "PiiClass",
    "PiiCounts",
    "PiiKind",
    "PiiMatch",
    "Pseudonymiser",
    "RuleFailure",
    "UndeclaredPii",
    "ValidatedEvents",
    "accepted_schema",
    "apply_operator",
    "breaking_changes",
    "canonical_finding",
    "check_batch",
    "check_schema",
    "coerce_column",
    "event_table",
    "evolve",
    "find_pii",
    "mask",
    "mask_table",
    "mask_text",
    "merge_pii_counts",
    "per_distinct",
    "pseudonym",
    "pseudonymise",
    "quarantine_schema",
    "redact",
    "redact_finding",
    "repeated_keys",
    "replace_pii",
    "rule_failures",
    "scan_column",
    "scrub_column",
    "undeclared_pii_warnings",
    "validate_and_mask",
    "validate_events",
]
