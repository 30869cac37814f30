"""ASGI middleware: one request id per HTTP request, bound for logs and returned.

Inside Serve the id is Serve's own request id (Serve already returns it as
``X-Request-ID`` on every response and accepts a client's ``X-Request-ID``); outside
Serve a fresh id is made and the header added here. The id is bound with
:func:`entai.shared.core._logs.request_context`, so log records and the error envelope of
that request name it. A pure ASGI middleware (no ``BaseHTTPMiddleware``) to keep the
per-request cost small.
"""

from __future__ import annotations

from typing import Any

from entai.shared.core import new_request_id, request_context

__all__ = ["HEADER", "RequestIdMiddleware"]

HEADER = "x-request-id"

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestIdMiddleware:
    """Bind and return a request id for every HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Run the wrapped app with a request id bound; add it to the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        serve_rid = _serve_request_id()
        rid = serve_rid or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        if serve_rid is not None:  # Serve returns its id itself
            with request_context(rid):
                await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with request_context(rid):
            await self.app(scope, receive, send_with_id)


def _serve_request_id() -> str | None:
    """Serve's id of the request being handled, or None outside a Serve replica."""
    from ray.serve.context import _get_serve_request_context

    return _get_serve_request_context().request_id or None
