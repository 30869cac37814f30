"""Alert sinks: the webhook against a real local HTTP server, log and fan-out sinks."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from entai.actors.monitoring import (
    FanoutSink,
    GovernanceAuditor,
    LogSink,
    WebhookSink,
    configured_sink,
)
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.settings import load_settings

EVENT = {"model": "churn", "feature": "x", "method": "ks", "level": "alert", "window_id": "w1"}


class Receiver:
    """What the local server saw, and the statuses it answers with, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Receiver]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            receiver.bodies.append(json.loads(self.rfile.read(length)))
            receiver.headers.append(dict(self.headers))
            status = receiver.statuses.pop(0) if receiver.statuses else 204
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll: shutdown() waits for the loop to notice (0.5 s by default)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hooks/drift", receiver
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_webhook_posts_the_event_as_json_with_headers(server: tuple[str, Receiver]) -> None:
    url, receiver = server
    WebhookSink(url, headers={"Authorization": "Bearer s3cret"}).send(EVENT)
    assert receiver.bodies == [EVENT]
    assert receiver.headers[0]["Authorization"] == "Bearer s3cret"
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_webhook_retries_retryable_statuses_then_succeeds(server: tuple[str, Receiver]) -> None:
    url, receiver = server
    receiver.statuses = [503, 429]
    WebhookSink(url, retries=2, backoff_s=0.0).send(EVENT)
    assert len(receiver.bodies) == 3


def test_webhook_gives_up_after_bounded_retries(server: tuple[str, Receiver]) -> None:
    url, receiver = server
    receiver.statuses = [500] * 10
    with pytest.raises(ServiceUnavailableError) as info:
        WebhookSink(url, retries=2, backoff_s=0.0).send(EVENT)
    assert len(receiver.bodies) == 3
    assert info.value.details["attempts"] == 3
    assert "hooks" not in info.value.message  # only scheme and host, never the path


def test_webhook_does_not_retry_a_client_error(server: tuple[str, Receiver]) -> None:
    url, receiver = server
    receiver.statuses = [400]
    with pytest.raises(ServiceUnavailableError):
        WebhookSink(url, retries=3, backoff_s=0.0).send(EVENT)
    assert len(receiver.bodies) == 1


def test_webhook_to_a_closed_port_fails_with_service_unavailable() -> None:
    sink = WebhookSink("http://127.0.0.1:9/x", timeout_s=0.5, retries=1, backoff_s=0.0)
    with pytest.raises(ServiceUnavailableError):
        sink.send(EVENT)


def test_webhook_refuses_non_http_urls_and_hides_secrets_in_repr() -> None:
    with pytest.raises(InvalidInputError):
        WebhookSink("file:///etc/passwd")
    assert "token" not in repr(WebhookSink("https://hooks.example/x?token=abc"))


def test_log_sink_logs_the_event(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="entai"):
        LogSink().send(EVENT)
    assert caplog.records[-1].alert == EVENT  # type: ignore[attr-defined]


class Failing:
    def send(self, event: Mapping[str, Any]) -> None:
        raise ServiceUnavailableError("down")


class Keeping:
    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    def send(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)


def test_fanout_delivers_to_every_sink_and_reports_failures() -> None:
    kept = Keeping()
    with pytest.raises(ServiceUnavailableError) as info:
        FanoutSink([Failing(), kept]).send(EVENT)
    assert kept.events == [EVENT]
    assert len(info.value.details["failed"]) == 1


def test_governance_auditor_without_a_governance_service_audits_nothing() -> None:
    assert GovernanceAuditor(None).audit("monitoring:alert", "me", "model:x", "allow") is False


def test_the_configured_sink_logs_and_posts_to_each_webhook_of_the_settings(
    server: tuple[str, Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    url, receiver = server
    assert isinstance(configured_sink(load_settings().monitoring), LogSink)
    secret_url = f"{url}/T0SECRET/hook-path-s3cret"
    settings = load_settings(
        monitoring={
            "webhooks": [
                {"url": secret_url, "headers": {"Authorization": "Bearer hook-bearer-0123456789"}}
            ]
        }
    )
    sink = configured_sink(settings.monitoring)
    with caplog.at_level(logging.WARNING, logger="entai"):
        sink.send(EVENT)
    assert receiver.bodies == [EVENT]
    assert receiver.headers[0]["Authorization"] == "Bearer hook-bearer-0123456789"
    assert caplog.records[-1].alert == EVENT  # type: ignore[attr-defined]
    assert "s3cret" not in repr(sink) and "hook-bearer" not in repr(sink)


def test_a_failing_webhook_names_its_host_only(caplog: pytest.LogCaptureFixture) -> None:
    url = "http://127.0.0.1:9/T0SECRET/closed-port-s3cret?token=t0ken-value"
    sink = WebhookSink(url, timeout_s=0.5, retries=1, backoff_s=0.0, headers={"X-Key": "xk3y"})
    with (
        caplog.at_level(logging.INFO, logger="entai"),
        pytest.raises(ServiceUnavailableError) as info,
    ):
        sink.send(EVENT)
    shown = f"{info.value.message} {info.value.details} {caplog.text}"
    assert "http://127.0.0.1" in shown
    for secret in ("T0SECRET", "closed-port-s3cret", "t0ken-value", "xk3y"):
        assert secret not in shown
