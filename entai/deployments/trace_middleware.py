"""ASGI middleware: the server span of every HTTP request, the root of its trace.

It sits inside :class:`~entai.deployments.request_ids.RequestIdMiddleware` (so the span
carries the request id) and outside :class:`~entai.deployments.edge_middleware.
EdgeMiddleware` (so authentication is a child span). A caller's W3C ``traceparent``
header continues the caller's trace. The span is named by the matched route's
template (``POST /v1/predict/{model}``), which FastAPI leaves in the scope once it
routed the request, and records the response status. Without tracing in this process
(:func:`~entai.actors.core.tracing_enabled`) the request passes straight through.
"""

from __future__ import annotations

from typing import Any

from entai.actors.core import span, tracing_enabled

__all__ = ["TracingMiddleware"]

Scope = dict[str, Any]
Message = dict[str, Any]

_ERROR_STATUS = 500


class TracingMiddleware:
    """Time every HTTP request as a SERVER span."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Run the wrapped app inside a server span (or untouched when not tracing)."""
        if scope["type"] != "http" or not tracing_enabled():
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", ""))
        status: list[int] = []

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        attributes = {"http.request.method": method, "url.path": path}
        with span(f"{method} {path}", attributes, parent=_carrier(scope), server=True) as current:
            try:
                await self.app(scope, receive, send_recording)
            finally:
                if current is not None:
                    route = getattr(scope.get("route"), "path", None)
                    if route:
                        current.update_name(f"{method} {route}")
                        current.set_attribute("http.route", str(route))
                    code = status[0] if status else _ERROR_STATUS
                    current.set_attribute("http.response.status_code", code)


def _carrier(scope: Scope) -> dict[str, str] | None:
    """The request's W3C trace context headers, if it has any."""
    found = {
        key.decode("latin-1").lower(): bytes(value).decode("latin-1")
        for key, value in scope.get("headers", ())
        if key.lower() in (b"traceparent", b"tracestate")
    }
    return found or None
