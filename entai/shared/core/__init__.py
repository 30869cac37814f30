"""The domain's base: the exception tree, structured logging, redaction of secrets
and YAML files."""

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
from entai.shared.core._redaction import (
    REDACTED,
    RedactingFilter,
    install_redaction,
    redact,
    redact_hosts,
    redact_url,
    redact_value,
    register_secret,
    register_url_secrets,
)
from entai.shared.core._yaml_files import (
    read_yaml_mapping,
)

__all__ = [
    "REDACTED",
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
    "RedactingFilter",
    "ServiceUnavailableError",
    "configure_logging",
    "install_redaction",
    "new_request_id",
    "read_yaml_mapping",
    "redact",
    "redact_hosts",
    "redact_url",
    "redact_value",
    "register_secret",
    "register_url_secrets",
    "request_context",
    "request_id",
]
