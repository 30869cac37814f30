"""The entai exception tree.

Every error raised on purpose by entai derives from :class:`EntaiError`. All of
them are picklable with their structured attributes, so Ray can re-raise them in
the caller's process unchanged. Message and details are redacted when the error is
made (:func:`entai.shared.core.redact`): a secret that slips into one never reaches a
traceback, a log or a Ray worker's output.

    EntaiError
    ├── ConfigError                 settings are invalid or insecure
    ├── InvalidInputError           bad input from a caller (names the field)
    │   ├── DefinitionError         a feature definition is invalid
    │   ├── ContractViolationError  data does not satisfy its contract
    │   ├── PointInTimeJoinError    entity dataframe or feature request is unusable
    │   └── PayloadTooLargeError    a request body or message is over its size limit
    ├── NotFoundError               an entity, view, model or version does not exist
    ├── ConflictError               the change contradicts existing state
    ├── AuthenticationError         no, bad, expired or revoked token
    ├── PermissionDeniedError       authenticated, but not allowed
    ├── PromotionRejectedError      a promotion gate failed
    ├── RateLimitedError            one client failed too often; retry after a while
    ├── ModelOutputInvalidError     a model answered with something that is not a score
    ├── ServiceUnavailableError     a backend or actor is not reachable
    │   └── OverloadedError         too much work queued; retry later
    └── AuditIntegrityError         the audit log's hash chain is broken
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entai.shared.core._redaction import redact, redact_value

__all__ = [
    "AuditIntegrityError",
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "ContractViolationError",
    "DefinitionError",
    "EntaiError",
    "InvalidInputError",
    "ModelOutputInvalidError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PointInTimeJoinError",
    "PromotionRejectedError",
    "RateLimitedError",
    "ServiceUnavailableError",
]


class EntaiError(Exception):
    """Base of every error entai raises on purpose.

    Args:
        message: A sentence a person can act on; never contains secrets (any that does
            is redacted).
        details: Structured context (field names, ids, counts), JSON-serialisable.
    """

    code: str = "entai_error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = redact_value(dict(details or {}))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[EntaiError], message: str, details: dict[str, Any]) -> EntaiError:
    err = cls.__new__(cls)
    EntaiError.__init__(err, message, details=details)
    return err


class ConfigError(EntaiError):
    """Settings are missing, invalid or insecure for the chosen mode."""

    code = "config_error"


class InvalidInputError(EntaiError):
    """A caller passed bad input; the message names the offending field."""

    code = "invalid_input"


class DefinitionError(InvalidInputError):
    """A feature definition (entity, view, service) is invalid."""

    code = "invalid_definition"


class ContractViolationError(InvalidInputError):
    """Data does not satisfy its data contract."""

    code = "contract_violation"


class PointInTimeJoinError(InvalidInputError):
    """The entity dataframe or the requested features cannot be joined."""

    code = "invalid_pit_request"


class PayloadTooLargeError(InvalidInputError):
    """A request body (or gRPC message) is larger than the configured limit."""

    code = "payload_too_large"


class NotFoundError(EntaiError):
    """The named object (view, model, version, request id) does not exist."""

    code = "not_found"


class ConflictError(EntaiError):
    """The requested change contradicts existing state."""

    code = "conflict"


class AuthenticationError(EntaiError):
    """The token is missing, malformed, unknown, expired or revoked."""

    code = "unauthenticated"


class PermissionDeniedError(EntaiError):
    """The principal is authenticated but lacks the permission."""

    code = "permission_denied"


class PromotionRejectedError(EntaiError):
    """A model promotion failed one or more governance gates."""

    code = "promotion_rejected"


class RateLimitedError(EntaiError):
    """A client failed too often; ``details["retry_after_s"]`` says when to retry."""

    code = "rate_limited"


class ModelOutputInvalidError(EntaiError):
    """A model returned a score that is not a finite number (NaN, infinity)."""

    code = "model_output_invalid"


class ServiceUnavailableError(EntaiError):
    """A backend (Redis, PostgreSQL, an actor) cannot be reached."""

    code = "service_unavailable"


class OverloadedError(ServiceUnavailableError):
    """The service is at capacity; the caller should retry later."""

    code = "overloaded"


class AuditIntegrityError(EntaiError):
    """The audit log's hash chain does not verify."""

    code = "audit_integrity"
