"""EdgeMiddleware: authentication before the body, and the body limit, over raw ASGI.

The app under the middleware is a real FastAPI app with entai's error handlers; the
tests drive it with hand-made ASGI ``receive``/``send`` so they can see exactly which
body messages the server asked for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import pytest
from fastapi import FastAPI, Request

from entai.deployments.edge_middleware import EdgeMiddleware, EdgePolicy, install_edge
from entai.deployments.http_errors import install_error_handlers
from entai.shared.core import AuthenticationError, RateLimitedError
from entai.shared.governance import Principal

LIMIT = 1024
GOOD = "Bearer good"


class Gate:
    """Admits ``Bearer good``; ``Bearer slow-down`` is rate limited; the rest is 401."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    async def authenticate(self, authorization: str | None, client: str | None) -> Principal:
        self.seen.append((authorization, client))
        if authorization == GOOD:
            return Principal("app", frozenset({"app"}))
        if authorization == "Bearer slow-down":
            raise RateLimitedError("too many", details={"retry_after_s": 7})
        raise AuthenticationError("token is unknown", details={"reason": "unknown"})


def make_app(gate: Gate | None) -> tuple[Any, list[int]]:
    """The middleware over an app whose route reads the whole body; bodies it saw."""
    api = FastAPI()
    install_error_handlers(api)
    api.add_middleware(EdgeMiddleware)
    seen: list[int] = []

    @api.post("/v1/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if gate is not None:
        install_edge(api, EdgePolicy(gate, LIMIT))
    return api, seen


class Exchange:
    """One request: the body chunks to offer, and what the app asked for and answered."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.receives = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        if self.receives > len(self.chunks):
            await asyncio.sleep(3600)  # a client that never sends more
        i = self.receives - 1
        return {
            "type": "http.request",
            "body": self.chunks[i],
            "more_body": i + 1 < len(self.chunks),
        }

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(start["status"])

    @property
    def headers(self) -> dict[str, str]:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def call(
    app: Any,
    path: str,
    *,
    headers: dict[str, str],
    chunks: Iterable[bytes] = (b"",),
    method: str = "POST",
) -> Exchange:
    exchange = Exchange(chunks)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("10.0.0.9", 40000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(app(scope, exchange.receive, exchange.send), timeout=30))
    return exchange


def test_no_token_is_401_before_any_body_is_received() -> None:
    gate = Gate()
    app, seen = make_app(gate)
    twenty_mb = {"content-length": str(20 * 1024 * 1024)}
    answer = call(app, "/v1/echo", headers=twenty_mb, chunks=[b"x" * 65536] * 320)
    assert answer.status == 401
    assert answer.receives == 0
    assert answer.json["error"]["code"] == "unauthenticated"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["connection"] == "close"  # the unread body is not drained
    assert gate.seen == [(None, "10.0.0.9")]
    assert seen == []


def test_a_declared_body_over_the_limit_is_413_before_it_is_received() -> None:
    app, seen = make_app(Gate())
    headers = {"authorization": GOOD, "content-length": str(LIMIT + 1)}
    answer = call(app, "/v1/echo", headers=headers, chunks=[b"x" * (LIMIT + 1)])
    assert answer.status == 413
    assert answer.receives == 0
    error = answer.json["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"field": "body", "max_bytes": LIMIT}
    assert answer.headers["connection"] == "close"
    assert seen == []


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    app, seen = make_app(Gate())
    chunks = [b"x" * 300] * 100  # 30,000 bytes offered, no Content-Length
    answer = call(
        app,
        "/v1/echo",
        headers={"authorization": GOOD, "transfer-encoding": "chunked"},
        chunks=chunks,
    )
    assert answer.status == 413
    assert answer.json["error"]["code"] == "payload_too_large"
    assert answer.receives == 4  # 1,200 bytes > 1,024: nothing after the 4th chunk
    assert seen == []  # the route never got a body
    starts = [m for m in answer.sent if m["type"] == "http.response.start"]
    assert len(starts) == 1  # the app's own answer to the disconnect was dropped


def test_bodies_within_the_limit_reach_the_app_whole() -> None:
    app, seen = make_app(Gate())
    chunked = call(
        app,
        "/v1/echo",
        headers={"authorization": GOOD, "transfer-encoding": "chunked"},
        chunks=[b"x" * 256] * 4,
    )
    assert (chunked.status, chunked.json) == (200, {"bytes": 1024})
    declared = call(
        app,
        "/v1/echo",
        headers={"authorization": GOOD, "content-length": "1000"},
        chunks=[b"y" * 1000],
    )
    assert (declared.status, declared.json) == (200, {"bytes": 1000})
    assert seen == [1024, 1000]


def test_a_declared_body_within_the_limit_passes_without_counting() -> None:
    handed: list[tuple[Any, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        handed.append((receive, send))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    edge = EdgeMiddleware(inner, policy_of=lambda scope: EdgePolicy(Gate(), LIMIT))
    declared = call(edge, "/v1/echo", headers={"authorization": GOOD, "content-length": "10"})
    assert declared.status == 204
    assert handed[0] == (declared.receive, declared.send)  # the server's own, unwrapped
    both = {"authorization": GOOD, "content-length": "10", "transfer-encoding": "chunked"}
    chunked = call(edge, "/v1/echo", headers=both)
    assert handed[1] != (chunked.receive, chunked.send)  # chunked framing wins: counted


def test_a_chunked_body_that_also_declares_a_small_length_is_still_cut_off() -> None:
    app, seen = make_app(Gate())
    headers = {"authorization": GOOD, "content-length": "10", "transfer-encoding": "chunked"}
    answer = call(app, "/v1/echo", headers=headers, chunks=[b"x" * 300] * 100)
    assert answer.status == 413
    assert seen == []


def test_public_paths_need_no_token_and_the_rest_all_do() -> None:
    gate = Gate()
    app, _ = make_app(gate)
    health = call(app, "/healthz", headers={}, method="GET")
    assert (health.status, health.json) == (200, {"status": "ok"})
    assert gate.seen == []
    unknown_route = call(app, "/v1/not-a-route", headers={}, method="GET")
    assert unknown_route.status == 401  # routes are not enumerable without a token
    with_token = call(app, "/v1/not-a-route", headers={"authorization": GOOD}, method="GET")
    assert with_token.status == 404


def test_a_rate_limited_client_gets_429_with_retry_after() -> None:
    app, _ = make_app(Gate())
    answer = call(
        app, "/v1/echo", headers={"authorization": "Bearer slow-down", "content-length": "2"}
    )
    assert answer.status == 429
    assert answer.headers["retry-after"] == "7"
    assert answer.json["error"]["code"] == "rate_limited"
    assert answer.receives == 0


def test_a_replica_without_its_policy_refuses_with_503() -> None:
    app, seen = make_app(None)
    answer = call(app, "/v1/echo", headers={"authorization": GOOD})
    assert answer.status == 503
    assert answer.json["error"]["code"] == "service_unavailable"
    assert seen == []


@pytest.mark.parametrize("root_path", ["", "/autoscale"])
def test_public_paths_are_matched_under_a_route_prefix(root_path: str) -> None:
    app, _ = make_app(Gate())
    exchange = Exchange([b""])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"{root_path}/healthz",
        "raw_path": f"{root_path}/healthz".encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
        "client": ("10.0.0.9", 40000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, exchange.receive, exchange.send))
    assert exchange.status == 200


def test_a_refused_small_body_keeps_the_connection_and_a_large_one_closes_it() -> None:
    app, _ = make_app(Gate())
    small = call(app, "/v1/echo", headers={"content-length": "2000"}, chunks=[b"x" * 2000])
    assert small.status == 401 and "connection" not in small.headers
    chunked = call(app, "/v1/echo", headers={"transfer-encoding": "chunked"})
    assert chunked.status == 401 and chunked.headers["connection"] == "close"
