"""The serving replicas' access log: one line per failed request by default, or Serve's.

Ray Serve writes one access line per request to the replica's log file. That line
costs a served request about 19 µs of the replica's CPU (``bench/access_log.py``),
2-3 % of what the cluster's predict path spends in the ingress replica, and it
repeats what is already kept: every served prediction is in the prediction log with
its request id, and Serve's and entai's metrics count every request by route and
status. ``serve.access_log`` chooses:

- ``"failures"`` (the default): Serve's line is off (its deployments' ``LoggingConfig``
  ``enable_access_log=False``) and :class:`FailureLogMiddleware` writes one line for
  each HTTP request answered 4xx or 5xx (an error the app raised counts as the 500
  Starlette answers for it) or not answered at all (cancelled: the client went away),
  and :func:`log_failure` one for each failed gRPC call;
- ``"all"``: Serve's line for every request, and nothing from entai.

The line goes to Serve's logger (``ray.serve``), so it lands in the replica's log file
in Serve's format, next to Serve's own lines, with the request's id (Serve's, bound by
:class:`~entai.deployments.request_ids.RequestIdMiddleware`):
``POST /v1/predict/churn 401 0.8ms``, written to the file at once. 4xx is logged at
INFO, 5xx and an unanswered request at WARNING. The client's address is not logged.
Serve's own refusals, which happen before the replica's app sees the request (its
queue limits, its timeouts), are not lines here; Serve's request metrics count them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from entai.shared.core import request_id
from entai.shared.settings import ServeSettings

__all__ = [
    "FailureLogMiddleware",
    "install_failure_log",
    "log_failure",
    "logs_failures",
    "serve_logging_config",
]

log = logging.getLogger("ray.serve")  # Serve's: the replica's log file and format

_STATE_KEY = "failure_log"

Scope = dict[str, Any]
Message = dict[str, Any]
Send = Callable[[Message], Any]


def serve_logging_config(serve: ServeSettings) -> dict[str, Any]:
    """The ``logging_config`` of entai's Serve deployments for ``serve.access_log``."""
    return {"enable_access_log": serve.access_log == "all"}


def logs_failures(serve: ServeSettings) -> bool:
    """Whether entai writes the failure lines (``serve.access_log: failures``)."""
    return serve.access_log == "failures"


def install_failure_log(app: Any, serve: ServeSettings) -> None:
    """Turn :class:`FailureLogMiddleware` on in ``app`` (a Starlette app) for ``"failures"``."""
    setattr(app.state, _STATE_KEY, logs_failures(serve))


def log_failure(method: str, target: str, status: int | str | None, started: float) -> None:
    """One access line for a failed request: ``status`` an HTTP status, a gRPC code's
    name, or None when no answer was sent; ``started`` a ``perf_counter`` time."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    shown = "-" if status is None else status
    log.log(
        _level(status),
        "%s %s %s %.1fms",
        method,
        target,
        shown,
        elapsed_ms,
        extra={
            "request_id": request_id(),  # Serve's format shows it, as on its own lines
            "access_status": shown,
            "duration_ms": round(elapsed_ms, 3),
        },
    )
    # Throughput-optimized Serve buffers its replicas' lines (1,000 records, or an ERROR)
    # for its own access lines; a failure line should be in the file now.
    for handler in log.handlers:
        handler.flush()


_GRPC_SERVER_CODES = frozenset({"INTERNAL", "UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED"})
"""The gRPC codes that say the server failed (HTTP's 5xx)."""


def _level(status: int | str | None) -> int:
    """WARNING when the server failed or sent nothing, INFO for the client's errors."""
    if status is None:
        return logging.WARNING
    if isinstance(status, str):
        return logging.WARNING if status in _GRPC_SERVER_CODES else logging.INFO
    return logging.WARNING if status >= 500 else logging.INFO


def _on(scope: Scope) -> bool:
    return getattr(getattr(scope.get("app"), "state", None), _STATE_KEY, False) is True


class FailureLogMiddleware:
    """Log each HTTP request answered 4xx/5xx, or not answered, once the app is done.

    Inert until :func:`install_failure_log` turns it on for the app (the ingress
    replica does at start, from ``serve.access_log``). Place it inside the middleware
    that binds the request id, so the line carries it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        """Run the app, watching the response's status."""
        if scope["type"] != "http" or not _on(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        failed = True  # until the app returns; cancelled (the client went away): no status
        try:
            await self.app(scope, receive, watched)
            failed = False
        except Exception:
            # Starlette's outermost middleware answers 500 for it, unless a response began
            status = 500 if status is None else status
            raise
        finally:
            if failed or status is None or status >= 400:
                log_failure(scope.get("method", "-"), scope.get("path", "-"), status, started)
