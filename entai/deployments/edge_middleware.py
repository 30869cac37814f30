"""ASGI middleware: authenticate, then bound the body, before the application reads it.

For every HTTP request except the public paths (``/healthz`` and the API docs),
:class:`EdgeMiddleware` asks the replica's authenticator about the ``Authorization``
header and the peer address first; a refusal (401, 429, 503) is answered here, in the
error envelope, without a single ``receive``: Serve's proxy hands the body to a
replica only when the replica asks for it, so a refused body never reaches the
replica. Then the body limit: a ``Content-Length`` over it is refused with 413 at once
(one within it passes untouched: the server frames the body by it, so no more can
arrive); a body without one (chunked) is counted as it streams in and refused with 413
as soon as it passes the limit, the application seeing a client disconnect (its own answer,
or its error, is dropped). A refusal of a request whose unread body is large (over
:data:`DRAIN_BYTES`, or chunked) closes the connection, so the server does not drain
it; a small one keeps the connection, as a new one would cost more than the drain.

A pure ASGI middleware (no ``BaseHTTPMiddleware``, which would buffer). It finds the
replica's :class:`EdgePolicy` on ``app.state`` (:func:`install_edge`), set when the
ingress replica starts; until then every guarded request is 503. Authentication is timed as
the span ``entai.authenticate`` when the replica traces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from entai.actors.core import span
from entai.deployments.http_errors import error_response
from entai.shared.core import EntaiError, PayloadTooLargeError, ServiceUnavailableError
from entai.shared.governance import Principal

__all__ = [
    "DRAIN_BYTES",
    "PUBLIC_PATHS",
    "Authenticator",
    "EdgeMiddleware",
    "EdgePolicy",
    "install_edge",
    "route_path",
    "scope_header",
]

PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
_STATE_KEY = "edge_policy"
DRAIN_BYTES = 64 * 1024
"""A refused request's body up to this size is drained, keeping the connection open."""

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


class Authenticator(Protocol):
    """Who is calling, from the ``Authorization`` value and the peer address."""

    async def authenticate(self, authorization: str | None, client: str | None) -> Principal:
        """The principal, or an AuthenticationError / RateLimitedError / ServiceUnavailableError."""
        ...


@dataclass(frozen=True)
class EdgePolicy:
    """What the middleware enforces in one replica.

    Attributes:
        authenticator: Decides who is calling (the replica's
            :class:`~entai.deployments.auth_gate.AuthGate`).
        max_body_bytes: Largest request body accepted.
    """

    authenticator: Authenticator
    max_body_bytes: int


def install_edge(app: Any, policy: EdgePolicy) -> None:
    """Make ``policy`` the one :class:`EdgeMiddleware` enforces for ``app`` (a Starlette app)."""
    setattr(app.state, _STATE_KEY, policy)


def _policy_on_app(scope: Scope) -> EdgePolicy | None:
    app = scope.get("app")
    state = getattr(app, "state", None)
    policy = getattr(state, _STATE_KEY, None)
    return policy if isinstance(policy, EdgePolicy) else None


def scope_header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) of an HTTP scope, as Starlette reads it."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path below the app's ``root_path``, as the routes match it."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _unread_body_is_large(scope: Scope) -> bool:
    """Whether a refusal should close the connection rather than let the server drain it.

    A body of at most :data:`DRAIN_BYTES` announced by ``Content-Length`` is cheaper to
    drain than a new connection is to accept; a larger or chunked one is not drained.
    """
    length = scope_header(scope, b"content-length")
    if length is not None:
        length = length.strip()
        return not length.isdigit() or int(length) > DRAIN_BYTES
    return scope_header(scope, b"transfer-encoding") is not None


async def _refuse(send: Send, exc: EntaiError, *, close: bool) -> None:
    """Answer with ``exc`` in the error envelope (closing the connection if asked)."""
    status, body, headers = error_response(exc)
    payload = json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than {limit} bytes",
        details={"field": "body", "max_bytes": limit},
    )


class EdgeMiddleware:
    """Authenticate every non-public request and bound every body, before the app reads it.

    Args:
        app: The wrapped ASGI application.
        policy_of: Finds the :class:`EdgePolicy` for a request (default: the one
            :func:`install_edge` put on the Starlette app in ``scope["app"]``).
    """

    def __init__(
        self, app: Any, *, policy_of: Callable[[Scope], EdgePolicy | None] = _policy_on_app
    ) -> None:
        self.app = app
        self._policy_of = policy_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or run the app with a receive that enforces the body limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self._policy_of(scope)
        unread = _unread_body_is_large(scope)
        if policy is None:
            await _refuse(
                send,
                ServiceUnavailableError("the ingress replica is not ready", details={}),
                close=unread,
            )
            return
        if route_path(scope) not in PUBLIC_PATHS:
            try:
                with span("entai.authenticate"):
                    principal = await policy.authenticator.authenticate(
                        scope_header(scope, b"authorization"), _client(scope)
                    )
            except EntaiError as exc:
                await _refuse(send, exc, close=unread)
                return
            scope.setdefault("state", {})["principal"] = principal.name
        limit = policy.max_body_bytes
        declared = scope_header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit():
            if int(declared) > limit:
                await _refuse(send, _too_large(limit), close=True)
                return
            if scope_header(scope, b"transfer-encoding") is None:
                # The server frames the body by its Content-Length: no more than the
                # declared bytes can arrive, so there is nothing to count.
                await self.app(scope, receive, send)
                return
        await _BoundedBody(self.app, limit)(scope, receive, send)


class _BoundedBody:
    """One request through the app, its body counted as it arrives."""

    def __init__(self, app: Any, limit: int) -> None:
        self._app = app
        self._limit = limit
        self._received = 0
        self._refused = False
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded_receive() -> Message:
            if self._refused:
                return {"type": "http.disconnect"}
            message: Message = await receive()
            if message["type"] == "http.request":
                self._received += len(message.get("body", b""))
                if self._received > self._limit:
                    self._refused = True
                    if not self._started:
                        await _refuse(send, _too_large(self._limit), close=True)
                        self._started = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self._refused:
                return  # the 413 was sent; the app's own answer is dropped
            if message["type"] == "http.response.start":
                self._started = True
            await send(message)

        try:
            await self._app(scope, bounded_receive, guarded_send)
        except Exception:
            if not self._refused:
                raise
            # The app failed on the disconnect it was handed after the 413: expected.
