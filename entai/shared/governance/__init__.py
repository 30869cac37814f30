"""Governance: policy (roles, permissions, decisions), API tokens, the hash-chained
audit log, and the pure part of erasure.
"""

from __future__ import annotations

from entai.shared.governance._audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    VerifyReport,
)
from entai.shared.governance._audit_chain import (
    canonical_json,
    check_line,
    entry_hash,
    line_of,
)
from entai.shared.governance._erasure import (
    ENTITY_KEY_COLUMN,
    ErasureReceipt,
    ErasureRequest,
    Store,
    StoreReceipt,
    StoreStatus,
    Subject,
    now_iso,
    parse_entity,
)
from entai.shared.governance._erasure_files import (
    LakeZoneStore,
    datasets_with_subject,
    lake_traces,
)
from entai.shared.governance._policy import (
    KNOWN_PII_CLASSES,
    Decision,
    Permission,
    Policy,
    Principal,
    Scopes,
    normalise_pii_class,
)
from entai.shared.governance._tokens import (
    TOKEN_PREFIX,
    TokenRecord,
    TokenStore,
    hash_secret,
    parse_token,
)

__all__ = [
    "ENTITY_KEY_COLUMN",
    "GENESIS_HASH",
    "KNOWN_PII_CLASSES",
    "TOKEN_PREFIX",
    "AuditEntry",
    "AuditLog",
    "Decision",
    "ErasureReceipt",
    "ErasureRequest",
    "LakeZoneStore",
    "Permission",
    "Policy",
    "Principal",
    "Scopes",
    "Store",
    "StoreReceipt",
    "StoreStatus",
    "Subject",
    "TokenRecord",
    "TokenStore",
    "VerifyReport",
    "canonical_json",
    "check_line",
    "datasets_with_subject",
    "entry_hash",
    "hash_secret",
    "lake_traces",
    "line_of",
    "normalise_pii_class",
    "now_iso",
    "parse_entity",
    "parse_token",
]
