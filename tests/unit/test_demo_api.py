"""The demo's one way of POSTing to the platform: bearer token, JSON, one line on failure."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from entai.demo.api import bearer, post_json
from entai.shared.core import ServiceUnavailableError


def _answer(monkeypatch: pytest.MonkeyPatch, status: int, payload: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def post(url: str, **kwargs: Any) -> httpx.Response:
        sent.append({"url": url, **kwargs})
        return httpx.Response(status, json=payload)

    monkeypatch.setattr(httpx, "post", post)
    return sent


def test_the_expected_answer_gives_its_json(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _answer(monkeypatch, 202, {"accepted": 2})
    got = post_json("http://h:1", "/v1/events", "tok", {"events": []}, expect=202, timeout_s=5)
    assert got == {"accepted": 2}
    assert sent == [
        {
            "url": "http://h:1/v1/events",
            "json": {"events": []},
            "headers": bearer("tok"),
            "timeout": 5,
        }
    ]
    assert bearer("tok") == {"Authorization": "Bearer tok"}


def test_another_answer_is_one_line_naming_the_route_and_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _answer(monkeypatch, 503, {"error": {"code": "service_unavailable", "message": "x" * 900}})
    with pytest.raises(ServiceUnavailableError) as caught:
        post_json("http://h:1", "/v1/feedback", "tok", {})
    message = str(caught.value)
    assert message.startswith("POST /v1/feedback answered HTTP 503: {")
    assert "\n" not in message and len(message) < 400
    assert caught.value.details == {"status": 503, "path": "/v1/feedback"}
    _answer(monkeypatch, 200, {})
    with pytest.raises(ServiceUnavailableError, match="HTTP 200"):
        post_json("http://h:1", "/v1/events", "tok", {}, expect=202)
