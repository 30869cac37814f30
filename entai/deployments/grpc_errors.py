"""The one table mapping entai errors to gRPC status codes, and how a failed call ends.

The gRPC twin of :mod:`entai.deployments.http_errors`: the same errors, the same
order (most specific class first), a gRPC code where HTTP has a status. A failed call
ends with the code and the error's message as the status details, entai's error code
in the trailing metadata ``entai-error-code``, and an empty response message; Serve
adds the request id (``request_id``) to the trailing metadata. Serve's own overload
signals raised inside the ingress (a Model queue that is full, an unavailable
deployment) map like their HTTP counterparts (429/503). Anything else is INTERNAL,
logged, with a generic message.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from entai.shared import core

__all__ = ["CODE_BY_ERROR", "ERROR_CODE_KEY", "code_for", "end_with_error"]

log = logging.getLogger(__name__)

ERROR_CODE_KEY = "entai-error-code"

CODE_BY_ERROR: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (core.AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (core.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (core.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (core.ConflictError, grpc.StatusCode.ABORTED),
    (core.PromotionRejectedError, grpc.StatusCode.FAILED_PRECONDITION),
    (core.PayloadTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (core.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (core.RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (core.OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (core.ServiceUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (core.ConfigError, grpc.StatusCode.INTERNAL),
    (core.AuditIntegrityError, grpc.StatusCode.INTERNAL),
    (core.ModelOutputInvalidError, grpc.StatusCode.INTERNAL),
    (BackPressureError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeploymentUnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def code_for(exc: Exception) -> grpc.StatusCode:
    """The gRPC status code for an error (INTERNAL for anything not in the table)."""
    for cls, code in CODE_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def end_with_error(context: Any, exc: Exception) -> grpc.StatusCode:
    """Set the status of a failed call on Serve's gRPC context; return its code.

    Args:
        context: The ``grpc_context`` Serve passes to the deployment method.
        exc: What the call raised.
    """
    code = code_for(exc)
    if isinstance(exc, core.EntaiError):
        entai_code, message = exc.code, exc.message
    elif isinstance(exc, BackPressureError):
        entai_code, message = "overloaded", "the service is at capacity; retry later"
    elif isinstance(exc, DeploymentUnavailableError):
        entai_code, message = "service_unavailable", "a serving deployment is unavailable"
    else:
        entai_code, message = "internal_error", "the request failed unexpectedly"
    if code == grpc.StatusCode.INTERNAL:
        log.error("grpc request failed", exc_info=exc, extra={"code": entai_code})
    message = core.redact(message)
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        if message != (plain := core.redact_hosts(message)):
            log.warning("service address left out of the status", extra={"error": message})
        message = plain
    context.set_code(code)
    context.set_details(message)
    context.set_trailing_metadata([(ERROR_CODE_KEY, entai_code)])
    return code
