"""Error answers carry no secret and, for 5xx, no address of the service that failed:
over HTTP (the JSON envelope) and gRPC (the status details). The log keeps the address."""

from __future__ import annotations

import logging

import grpc
import pytest

from entai.actors.backends import RedisOnlineStore
from entai.deployments.grpc_errors import end_with_error
from entai.deployments.http_errors import error_response
from entai.shared.core import InvalidInputError, ServiceUnavailableError, register_secret

TOKEN = "entai_00112233aabb_" + "z" * 43


class Context:
    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, metadata: object) -> None:
        self.metadata = metadata


def test_a_redis_failure_names_no_host_or_password_and_logs_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "redis://:body-test-Pa55@127.0.0.1:1/0"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING), pytest.raises(ServiceUnavailableError) as info:
        RedisOnlineStore(url, "unit-bodies")
    status, body, headers = error_response(info.value)
    assert status == 503 and headers["Retry-After"] == "1"
    assert body["error"]["code"] == info.value.code
    assert body["error"]["message"] == "Redis online store connect failed: ConnectionError"
    text = str(body)
    assert "127.0.0.1:1" not in text and "body-test-Pa55" not in text
    assert "127.0.0.1:1" in caplog.text  # the operator still finds it in the log
    assert "body-test-Pa55" not in caplog.text


def test_5xx_bodies_lose_host_port_and_every_body_loses_secrets() -> None:
    register_secret("hmac-in-a-message-0123")
    down = ServiceUnavailableError(
        "registry at pg.entai.svc:5432 (postgresql://mlflow:pw-in-uri@pg.entai.svc:5432/m) down",
        details={"peer": "10.0.0.7:6379", "key": "hmac-in-a-message-0123"},
    )
    status, body, _ = error_response(down)
    assert status == 503
    assert body["error"]["message"] == (
        "registry at <host> (postgresql://mlflow:***@<host>/m) down"
    )
    assert body["error"]["details"] == {"peer": "<host>", "key": "***"}
    bad = InvalidInputError(f"token {TOKEN} is malformed", details={"field": "127.0.0.1:80"})
    status, body, _ = error_response(bad)
    assert status == 422  # a 4xx keeps what the client sent (no service address of ours)
    assert body["error"]["message"] == "token entai_00112233aabb_*** is malformed"
    assert body["error"]["details"] == {"field": "127.0.0.1:80"}


def test_grpc_status_details_are_redacted_the_same_way() -> None:
    context = Context()
    end_with_error(
        context, ServiceUnavailableError("Error 111 connecting to 127.0.0.1:6379 as " + TOKEN)
    )
    assert context.code == grpc.StatusCode.UNAVAILABLE
    assert context.details == "Error 111 connecting to <host> as entai_00112233aabb_***"
