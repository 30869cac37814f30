"""Governance: policy (roles, permissions, decisions), API tokens, the hash-chained
audit log, and the pure part of erasure; the state in files (embedded) or in
PostgreSQL (a cluster).
"""

from __future__ import annotations

from entai.shared.governance._audit import (
    GENESIS_HASH,
    KEYED_ACTION,
    AuditEntry,
    AuditLog,
    VerifyReport,
    select_entries,
)
from entai.shared.governance._audit_anchor import (
    AnchorStore,
    FileAnchorStore,
    MemoryAnchorStore,
    parse_anchor,
    sign_anchor,
)
from entai.shared.governance._audit_anchor_postgres import (
    PostgresAnchorStore,
)
from entai.shared.governance._audit_bundle import (
    BUNDLE_FORMAT,
    build_bundle,
    verify_bundle,
)
from entai.shared.governance._audit_chain import (
    Anchor,
    anchor_mac,
    canonical_json,
    check_anchor,
    check_chain,
    derive_key,
    entry_mac,
    legacy_entry_hash,
    line_of,
    parse_entry,
)
from entai.shared.governance._audit_postgres import PostgresAuditLog
from entai.shared.governance._erased_subjects import (
    ERASED_SUBJECTS_DIRECTORY,
    ErasedSubject,
    ErasedSubjects,
    erased_marker,
    record_erased_subject,
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
    SERVICE_PERMISSIONS,
    SERVICE_ROLE,
    Decision,
    Permission,
    Policy,
    Principal,
    Scopes,
    normalise_pii_class,
)
from entai.shared.governance._postgres import PostgresConnection
from entai.shared.governance._service_credentials import (
    SERVICE_PREFIX,
    service_credential,
    service_of,
    service_principal,
)
from entai.shared.governance._state_postgres import (
    PostgresPolicyStore,
    PostgresTokenStore,
)
from entai.shared.governance._tokens import (
    TOKEN_PREFIX,
    TokenRecord,
    TokenStore,
    already_bootstrapped,
    hash_secret,
    parse_token,
    resolve_token,
)

__all__ = [
    "BUNDLE_FORMAT",
    "ENTITY_KEY_COLUMN",
    "ERASED_SUBJECTS_DIRECTORY",
    "GENESIS_HASH",
    "KEYED_ACTION",
    "KNOWN_PII_CLASSES",
    "SERVICE_PERMISSIONS",
    "SERVICE_PREFIX",
    "SERVICE_ROLE",
    "TOKEN_PREFIX",
    "Anchor",
    "AnchorStore",
    "AuditEntry",
    "AuditLog",
    "Decision",
    "ErasedSubject",
    "ErasedSubjects",
    "ErasureReceipt",
    "ErasureRequest",
    "FileAnchorStore",
    "LakeZoneStore",
    "MemoryAnchorStore",
    "Permission",
    "Policy",
    "PostgresAnchorStore",
    "PostgresAuditLog",
    "PostgresConnection",
    "PostgresPolicyStore",
    "PostgresTokenStore",
    "Principal",
    "Scopes",
    "Store",
    "StoreReceipt",
    "StoreStatus",
    "Subject",
    "TokenRecord",
    "TokenStore",
    "VerifyReport",
    "already_bootstrapped",
    "anchor_mac",
    "build_bundle",
    "canonical_json",
    "check_anchor",
    "check_chain",
    "datasets_with_subject",
    "derive_key",
    "entry_mac",
    "erased_marker",
    "hash_secret",
    "lake_traces",
    "legacy_entry_hash",
    "line_of",
    "normalise_pii_class",
    "now_iso",
    "parse_anchor",
    "parse_entity",
    "parse_entry",
    "parse_token",
    "record_erased_subject",
    "resolve_token",
    "select_entries",
    "service_credential",
    "service_of",
    "service_principal",
    "sign_anchor",
    "verify_bundle",
]
