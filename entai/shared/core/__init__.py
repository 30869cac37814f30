"""The domain's base: the exception tree, structured logging, local trace files and YAML files."""

from __future__ import annotations

from entai.shared.core._errors import (
    AuditIntegrityError,
    AuthenticationError,
    ConfigError,
    ConflictError,
    ContractViolationError,
    DefinitionError,
    EntaiError,
    InvalidInputError,
    ModelOutputInvalidError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PointInTimeJoinError,
    PromotionRejectedError,
    RateLimitedError,
    ServiceUnavailableError,
)
from entai.shared.core._logs import (
    JsonFormatter,
    configure_logging,
    new_request_id,
    request_context,
    request_id,
)
from entai.shared.core._traces import (
    REQUEST_ID_ATTR,
    TRACE_SUFFIX,
    SpanNode,
    SpanRecord,
    read_spans,
    read_trace,
    span_tree,
)
from entai.shared.core._yaml_files import (
    read_yaml_mapping,
)

__all__ = [
    "REQUEST_ID_ATTR",
    "TRACE_SUFFIX",
    "AuditIntegrityError",
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "ContractViolationError",
    "DefinitionError",
    "EntaiError",
    "InvalidInputError",
    "JsonFormatter",
    "ModelOutputInvalidError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PointInTimeJoinError",
    "PromotionRejectedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "SpanNode",
    "SpanRecord",
    "configure_logging",
    "new_request_id",
    "read_spans",
    "read_trace",
    "read_yaml_mapping",
    "request_context",
    "request_id",
    "span_tree",
]
