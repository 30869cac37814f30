"""Hostile HTTP traffic against the Serve application, over real sockets on loopback.

One application for the module (the shipped graph, shadow off) on port 8124, with
failed authentications audited in 5 s windows so the test sees them without waiting a
minute, and breakers that open after 2 failures of 2 s (registry) for 3 s. Big bodies
are sent through a raw socket so a test can see that the answer came before the body
was sent at all. Stalled dependencies are made by occupying every writer thread of the
actor (``__ray_call__`` sleeps). The flood test runs last: it empties the loopback
client's failure budget.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from flood_client import Flood
from test_serve_http import (
    CATEGORIES,
    MODEL,
    USERS,
    Platform,
    deploy_platform,
    predict_body,
    teardown_platform,
)

from entai.shared.settings import AuthGuardSettings

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

PORT = 8124
MIB = 1024 * 1024
FAILURE_WINDOW_S = 5.0
FLOOD_REQUESTS = 2_000
FLOOD_CONCURRENCY = 16
REGISTRY_TIMEOUT_S = 2.0
BREAKER_OPEN_S = 3.0
GOVERNANCE_TIMEOUT_S = 5.0  # the default security.auth_guard.governance_timeout_s


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(
        tmp_path_factory.mktemp("serve-edge"),
        port=PORT,
        shadow=False,
        security={"auth_guard": {"failure_window_s": FAILURE_WINDOW_S}},
        serve_settings={
            "registry_timeout_s": REGISTRY_TIMEOUT_S,
            "breaker_failures": 2,
            "breaker_open_s": BREAKER_OPEN_S,
        },
    )
    yield deployed
    teardown_platform(deployed)


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60.0) as c:
        yield c


# --- raw HTTP/1.1 over a socket -------------------------------------------------------


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{PORT}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of one response (read until its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body[:length])


def _answer_within(sock: socket.socket, timeout_s: float = 60.0) -> float:
    """Seconds until the server's answer is readable (fails after ``timeout_s``)."""
    started = time.monotonic()
    readable, _, _ = select.select([sock], [], [], timeout_s)
    assert readable, f"no answer within {timeout_s}s"
    return time.monotonic() - started


def _send_until_answered(sock: socket.socket, chunks: Iterator[bytes], limit: int) -> int:
    """Send chunks (paced) until the server answers or ``limit`` bytes went out; bytes sent."""
    sent = 0
    for chunk in chunks:
        readable, _, _ = select.select([sock], [], [], 0.002)
        if readable or sent >= limit:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break  # the server answered and closed; the answer is in the buffer
        sent += len(chunk)
    _answer_within(sock)
    return sent


def _json_body_of(size: int) -> Iterator[bytes]:
    """A syntactically valid predict body of exactly ``size`` bytes, in 64 KiB chunks."""
    head = b'{"entities": {"user_id": [1], "category": ["books"]}, "pad": "'
    tail = b'"}'
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        n = min(left, 65536)
        yield b"x" * n
        left -= n
    yield tail


# --- bodies ----------------------------------------------------------------------------


def test_a_20mb_body_without_a_token_is_refused_before_it_is_sent(platform: Platform) -> None:
    size = 20 * MIB
    with socket.create_connection(("127.0.0.1", PORT), timeout=60) as sock:
        sock.sendall(
            _head(
                f"/v1/predict/{MODEL}",
                {"Content-Type": "application/json", "Content-Length": str(size)},
            )
        )
        sock.sendall(next(_json_body_of(size)))  # the body starts; the rest is never sent
        waited_s = _answer_within(sock)
        status, headers, body = _read_response(sock)
    assert status == 401, body
    assert body["error"]["code"] == "unauthenticated"
    assert headers["www-authenticate"] == "Bearer"
    assert headers.get("connection") == "close"
    assert waited_s < 10  # answered while 20 MB minus 64 bytes were still unsent


def test_a_20mb_body_with_a_token_is_413_before_it_is_sent(platform: Platform) -> None:
    size = 20 * MIB
    with socket.create_connection(("127.0.0.1", PORT), timeout=60) as sock:
        sock.sendall(
            _head(
                f"/v1/predict/{MODEL}",
                {
                    "Authorization": f"Bearer {platform.app_token}",
                    "Content-Type": "application/json",
                    "Content-Length": str(size),
                },
            )
        )
        waited_s = _answer_within(sock)  # not one byte of the body sent
        status, _, body = _read_response(sock)
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"] == {"field": "body", "max_bytes": MIB}
    assert waited_s < 10


def test_a_chunked_body_is_refused_once_it_passes_the_limit(platform: Platform) -> None:
    size = 20 * MIB

    def chunked() -> Iterator[bytes]:
        for piece in _json_body_of(size):
            yield b"%x\r\n%s\r\n" % (len(piece), piece)

    with socket.create_connection(("127.0.0.1", PORT), timeout=60) as sock:
        sock.sendall(
            _head(
                f"/v1/predict/{MODEL}",
                {
                    "Authorization": f"Bearer {platform.app_token}",
                    "Content-Type": "application/json",
                    "Transfer-Encoding": "chunked",
                },
            )
        )
        sent = _send_until_answered(sock, chunked(), limit=size)
        status, _, body = _read_response(sock)
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert sent < size / 2, f"the server let {sent} bytes in before refusing"


def _post_raw(client: httpx.Client, platform: Platform, path: str, body: Any) -> httpx.Response:
    """POST a body as Python's json writes it (NaN and Infinity included)."""
    return client.post(
        path,
        content=json.dumps(body).encode(),
        headers={**platform.headers(), "Content-Type": "application/json"},
    )


ONE = {"user_id": [1], "category": ["books"]}
_BAD = "entai_0123456789ab_" + "B" * 43


@pytest.mark.parametrize(
    ("body", "statuses", "field"),
    [
        ({"entities": {"user_id": list(range(100_000))}}, {422}, "body.entities.user_id"),
        (
            {"entities": {"user_id": list(range(100_000)), "category": ["books"] * 100_000}},
            {413},
            None,
        ),
        (
            {"entities": {"user_id": ["x" * 1_000_000], "category": ["books"]}},
            {422},
            "body.entities.user_id.0",
        ),
        ({"entities": {"user_id": ["x" * 2_000_000], "category": ["books"]}}, {413}, None),
        (
            {"entities": ONE, "request_features": {f"f{i}": [1.0] for i in range(10_000)}},
            {422},
            "body.request_features",
        ),
        (
            {"entities": ONE, "request_features": {"discount": [float("nan")]}},
            {422},
            "body.request_features.discount.0",
        ),
        (
            {"entities": ONE, "request_features": {"discount": [float("inf")]}},
            {422},
            "body.request_features.discount.0",
        ),
        (
            {"entities": ONE, "request_features": {"discount": [float("-inf")]}},
            {422},
            "body.request_features.discount.0",
        ),
    ],
    ids=[
        "100k-entities",
        "100k-entities-over-1MiB",
        "1MB-string",
        "2MB-string",
        "10k-feature-keys",
        "nan",
        "infinity",
        "minus-infinity",
    ],
)
def test_oversized_and_non_finite_inputs_are_413_or_422_never_500(
    platform: Platform,
    client: httpx.Client,
    body: dict[str, Any],
    statuses: set[int],
    field: str | None,
) -> None:
    response = _post_raw(client, platform, f"/v1/predict/{MODEL}", body)
    assert response.status_code in statuses, response.text[:500]
    error = response.json()["error"]
    if field is not None:
        fields = [p["field"] for p in error["details"]["errors"]]
        assert any(f == field or f.startswith(f"{field}.") for f in fields), fields


def test_a_request_feature_the_model_does_not_take_is_422_naming_it(
    platform: Platform, client: httpx.Client
) -> None:
    body = {"entities": ONE, "request_features": {"not_an_input": [1.0]}}
    response = _post_raw(client, platform, f"/v1/predict/{MODEL}", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "request_features.not_an_input"


def test_online_features_and_events_have_the_same_limits(
    platform: Platform, client: httpx.Client
) -> None:
    refs = _post_raw(
        client,
        platform,
        "/v1/features/online",
        {"features": [f"v:f{i}" for i in range(10_000)], "entities": ONE},
    )
    assert refs.status_code == 422
    events = _post_raw(
        client, platform, "/v1/events", {"source": "events", "events": [{"q": "x" * 1_000_000}]}
    )
    assert events.status_code == 422


def test_a_token_minted_now_works_at_once(platform: Platform, client: httpx.Client) -> None:
    import ray

    governance = platform.actors[0]
    fresh, _ = ray.get(governance.create_token.remote(platform.admin, "app"), timeout=60)
    response = client.post(
        f"/v1/predict/{MODEL}", json=predict_body(3, "books"), headers=platform.headers(fresh)
    )
    assert response.status_code == 200, response.text


# --- stalled dependencies ----------------------------------------------------------------


def _timed(client: httpx.Client, method: str, path: str, **kwargs: Any) -> tuple[int, float, Any]:
    started = time.perf_counter()
    response = client.request(method, path, **kwargs)
    return response.status_code, time.perf_counter() - started, response


def test_a_stalled_governance_writer_does_not_touch_the_request_path(
    platform: Platform, client: httpx.Client
) -> None:
    """Its writer thread asleep for 15 s: known tokens still served, bad ones still refused."""
    import ray

    governance = platform.actors[0]
    stall = governance.__ray_call__.remote(lambda _: time.sleep(15))
    time.sleep(0.5)
    answers = []
    until = time.monotonic() + 10
    user = 0
    while time.monotonic() < until:
        answers.append(
            _timed(
                client,
                "POST",
                f"/v1/predict/{MODEL}",
                json=predict_body(user % USERS, "tools"),
                headers=platform.headers(),
            )[:2]
        )
        user += 1
    bad = _timed(
        client,
        "POST",
        f"/v1/predict/{MODEL}",
        json=predict_body(1, "tools"),
        headers=platform.headers(_BAD),
    )
    ray.get(stall, timeout=60)
    assert {status for status, _ in answers} == {200}
    assert max(seconds for _, seconds in answers) < GOVERNANCE_TIMEOUT_S  # none waited on it
    assert bad[0] in (401, 503), bad[2].text  # looked up beside the writer, or breaker open
    assert bad[1] < GOVERNANCE_TIMEOUT_S + 1


def test_a_stalled_registry_is_503_fast_with_retry_after_then_recovers(
    platform: Platform, client: httpx.Client
) -> None:
    """Every registry writer thread asleep 15 s: 503 within the timeout, then at once."""
    import ray

    stalls = [platform.registry.__ray_call__.remote(lambda _: time.sleep(15)) for _ in range(4)]
    time.sleep(0.5)
    answers = []
    until = time.monotonic() + 60
    while time.monotonic() < until:
        status, seconds, response = _timed(client, "GET", "/v1/models", headers=platform.headers())
        answers.append((status, seconds, response.headers.get("retry-after")))
        if status == 200:
            break
        time.sleep(0.2)
    ray.get(stalls, timeout=60)
    statuses = [a[0] for a in answers]
    assert set(statuses) <= {200, 503}, answers
    assert statuses[-1] == 200, answers  # recovered by itself
    refused = [a for a in answers if a[0] == 503]
    assert refused, answers
    assert all(seconds < REGISTRY_TIMEOUT_S + 2 for _, seconds, _ in refused), answers
    assert all(retry is not None for _, _, retry in refused), answers
    fast = [a for a in refused if a[1] < 0.5]
    assert fast, f"the breaker never answered without waiting: {answers}"


# --- a flood of bad tokens ---------------------------------------------------------------


def _audit_entries(platform: Platform) -> list[dict[str, Any]]:
    path = Path(platform.settings.lake.root) / "audit" / "audit.jsonl"
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return entries


def _failures_counted(entries: list[dict[str, Any]]) -> int:
    return sum(
        e["details"]["count"]
        for e in entries
        if e["action"] == "authenticate" and e["details"].get("aggregated")
    )


class Legit:
    """A legitimate client sending predictions back to back, recording latencies."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.latencies: list[tuple[float, float]] = []  # (time.time() sent, seconds)
        self.failures: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(11)
        with httpx.Client(base_url=self.platform.url, timeout=60.0) as c:
            while not self.stop.is_set():
                user = int(rng.integers(USERS))
                sent, started = time.time(), time.perf_counter()
                try:
                    r = c.post(
                        f"/v1/predict/{MODEL}",
                        json=predict_body(user, CATEGORIES[user % 3]),
                        headers=self.platform.headers(),
                    )
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1
                elapsed = time.perf_counter() - started
                if status == 200:
                    self.latencies.append((sent, elapsed))
                else:
                    self.failures.append(status)

    def between(self, start: float, end: float) -> np.ndarray:
        return np.array([s for t, s in self.latencies if start <= t < end])


def _percentiles(seconds: np.ndarray) -> dict[str, float]:
    ms = seconds * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


@pytest.mark.parametrize("rate", [None, 60.0], ids=["unpaced", "60-per-s"])
def test_a_flood_of_bad_tokens_leaves_a_legitimate_client_served(
    platform: Platform, rate: float | None
) -> None:
    """2,000 bad-token requests at concurrency 16 (another process) beside a good client.

    Unpaced, the flood's workers send back to back; paced, at the rate seen on main
    (about 60/s, when each bad token cost a governance round trip). Once the client's
    failure budget is spent each 429 is held ``refusal_delay_s`` (the tarpit), so both
    floods run at about 16 connections / 0.5 s = 32 requests/s from then on.
    """
    legit = Legit(platform)
    thread = threading.Thread(target=legit.run, daemon=True)
    thread.start()
    time.sleep(15)  # the "before" phase; failures of earlier tests reach the log meanwhile
    entries_before = _audit_entries(platform)
    counted_before = _failures_counted(entries_before)
    flood = Flood(
        platform.url,
        f"/v1/predict/{MODEL}",
        predict_body(1, "books"),
        FLOOD_REQUESTS,
        FLOOD_CONCURRENCY,
        rate,
    ).wait()
    legit.stop.set()
    thread.join(timeout=60)
    answers: list[int] = flood["statuses"]

    # The failures reach the audit log at the end of their windows.
    deadline = time.monotonic() + 60
    counted = _failures_counted(_audit_entries(platform)) - counted_before
    while counted < len(answers) and time.monotonic() < deadline:
        time.sleep(1)
        counted = _failures_counted(_audit_entries(platform)) - counted_before
    entries_after = _audit_entries(platform)

    flood_s = flood["ended"] - flood["started"]
    figures = {
        "flood_rate_limit": rate,
        "flood_requests": len(answers),
        "flood_statuses": {str(s): answers.count(s) for s in sorted(set(answers))},
        "flood_s": round(flood_s, 1),
        "flood_rps": round(len(answers) / flood_s),
        "legit_before": _percentiles(legit.between(0, flood["started"])),
        "legit_during": _percentiles(legit.between(flood["started"], flood["ended"])),
        "legit_failures": legit.failures,
        "audit_lines_added": len(entries_after) - len(entries_before),
        "failures_audited": counted,
    }
    print(json.dumps(figures))  # the figures, for the report (pytest -s)
    assert len(answers) == FLOOD_REQUESTS
    assert set(answers) <= {401, 429}, figures
    assert answers.count(429) > answers.count(401), figures  # the budget ran out early
    assert answers.count(401) <= 20 + 1.0 * flood_s + 2, figures  # burst + refill, no more
    # Each 429 was held the tarpit's delay (16 connections, fewer than max_delayed): the
    # flood could not go faster than its connections over the delay.
    delay = AuthGuardSettings().refusal_delay_s
    assert flood_s >= 0.9 * answers.count(429) * delay / FLOOD_CONCURRENCY, figures
    assert legit.failures == [], figures
    assert figures["legit_during"]["n"] >= 20, figures
    assert figures["audit_lines_added"] < 100, figures
    assert counted == len(answers), figures  # every failure counted, none twice
