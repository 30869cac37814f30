"""The one table mapping entai errors to HTTP statuses, and the error body shape.

Every error response is ``{"error": {"code", "message", "details"}}``. Bad input is
never a 500: request validation errors become 422 with the offending fields, a body
over the limit 413. A 401 carries ``WWW-Authenticate``; a 429 or 503 carries
``Retry-After`` (the error's ``details["retry_after_s"]``, else 1 s). Bodies are
redacted (:func:`entai.shared.core.redact`: secrets, URL passwords, tokens), and a 5xx
body names no ``host:port`` of the service that failed (the log keeps it). Serve's
own overload signals (``BackPressureError`` when a handle's ``max_queued_requests`` is
exceeded, an unavailable deployment) become 503/429 in the same envelope. An error
answered on the predict route is counted in ``entai_prediction_errors`` by model and
code (a model name the route does not serve is counted as ``_unknown``, so the label
stays bounded).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException

from entai.actors.core import Metrics
from entai.shared import core
from entai.shared.core import redact, redact_hosts, redact_value, request_id

__all__ = [
    "STATUS_BY_ERROR",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[core.EntaiError], int], ...] = (
    (core.AuthenticationError, 401),
    (core.PermissionDeniedError, 403),
    (core.NotFoundError, 404),
    (core.ConflictError, 409),
    (core.PromotionRejectedError, 409),
    (core.PayloadTooLargeError, 413),
    (core.InvalidInputError, 422),
    (core.RateLimitedError, 429),
    (core.OverloadedError, 429),
    (core.ServiceUnavailableError, 503),
    (core.ModelOutputInvalidError, 502),
    (core.ConfigError, 500),
    (core.AuditIntegrityError, 500),
)


def status_for(exc: core.EntaiError) -> int:
    """The HTTP status for an entai error (most specific class first)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error envelope, with the request id when one is bound; message and details
    redacted."""
    return {
        "error": {"code": code, "message": redact(message), "details": redact_value(details or {})},
        "request_id": request_id(),
    }


def error_response(exc: core.EntaiError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, envelope and headers of the answer to ``exc``."""
    status = status_for(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif status in (429, 503):
        retry = exc.details.get("retry_after_s")
        seconds = float(retry) if isinstance(retry, int | float) else 1.0
        headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    body = error_body(exc.code, exc.message, exc.details)
    if status >= 500:
        plain = redact_value(body, redact_hosts)
        if plain != body:  # the address stays in the log, out of the answer
            log.warning(
                "service address left out of the error body",
                extra={"code": exc.code, "error": body["error"]["message"]},
            )
        body = plain
    return status, body, headers


_PREDICT_ROUTE = "/v1/predict/{model}"
_MODEL_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _count(request: Request, code: str) -> None:
    """Count an error answered on the predict route, by model and code."""
    route = getattr(request.scope.get("route"), "path", None)
    if route != _PREDICT_ROUTE:
        return
    model = str(request.path_params.get("model", ""))
    if code == "not_found" or not _MODEL_LABEL.fullmatch(model):
        model = "_unknown"  # bounded labels: a caller's path is not a metric label
    try:
        Metrics.prediction_error(model, code)
    except Exception:  # noqa: BLE001 - counting must never turn an answer into a 500
        log.warning("prediction error not counted", extra={"code": code})


def install_error_handlers(app: FastAPI) -> None:
    """Route entai errors, validation errors and HTTP errors into the envelope."""

    @app.exception_handler(core.EntaiError)
    async def _entai(request: Request, exc: core.EntaiError) -> JSONResponse:
        _count(request, exc.code)
        status, body, headers = error_response(exc)
        if status >= 500:
            log.error("request failed", extra={"code": exc.code})
        return JSONResponse(body, status_code=status, headers=headers or None)

    @app.exception_handler(BackPressureError)
    async def _backpressure(request: Request, exc: BackPressureError) -> JSONResponse:
        _count(request, "overloaded")
        status = exc.status_code if exc.status_code in (429, 503) else 503
        retry = exc.retry_after_s if exc.retry_after_s is not None else 1.0
        return JSONResponse(
            error_body("overloaded", "the service is at capacity; retry later", {}),
            status_code=status,
            headers={"Retry-After": str(max(1, round(retry)))},
        )

    @app.exception_handler(DeploymentUnavailableError)
    async def _unavailable(request: Request, exc: DeploymentUnavailableError) -> JSONResponse:
        _count(request, "service_unavailable")
        log.error("deployment unavailable", extra={"error": exc.message})
        return JSONResponse(
            error_body("service_unavailable", "a serving deployment is unavailable", {}),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count(request, "invalid_input")
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "request body is invalid", {"errors": problems}),
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _count(request, "internal_error")
        log.exception("unexpected error", extra={"error": type(exc).__name__})
        return JSONResponse(
            error_body("internal_error", "the request failed unexpectedly", {}), status_code=500
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
