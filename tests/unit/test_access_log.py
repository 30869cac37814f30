"""The failure access log: a line for each request answered 4xx/5xx or not answered, none
for a served one, and Serve's own line only with ``serve.access_log: all``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from entai.deployments.access_log import (
    FailureLogMiddleware,
    install_failure_log,
    log_failure,
    serve_logging_config,
)
from entai.deployments.http_errors import install_error_handlers
from entai.deployments.request_ids import RequestIdMiddleware
from entai.shared.core import InvalidInputError, request_context
from entai.shared.settings import ServeSettings


class Lines(logging.Handler):
    """The records Serve's logger received."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1  # Serve's own handler is a buffer that waits for 1,000 lines

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger("ray.serve")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def make_client(access_log: str | None) -> TestClient:
    """An app with entai's handlers, the middleware inside the request id; ``access_log``
    None leaves the middleware not installed (a replica not started yet)."""
    api = FastAPI()
    install_error_handlers(api)
    api.add_middleware(FailureLogMiddleware)
    api.add_middleware(RequestIdMiddleware)

    @api.get("/ok")
    async def ok() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/invalid")
    async def invalid() -> None:
        raise InvalidInputError("no such thing", details={"field": "x"})

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    if access_log is not None:
        install_failure_log(api, ServeSettings(access_log=access_log))
    return TestClient(api, raise_server_exceptions=False)


def test_a_served_request_writes_no_line(lines: Lines) -> None:
    client = make_client("failures")
    assert client.get("/ok").status_code == 200
    assert lines.records == []


def test_client_errors_are_one_info_line_with_status_and_request_id(lines: Lines) -> None:
    client = make_client("failures")
    answer = client.get("/invalid")
    missing = client.get("/nothing?user=7")
    assert (answer.status_code, missing.status_code) == (422, 404)
    assert [m.rsplit(" ", 1)[0] for m in lines.messages()] == [
        "GET /invalid 422",
        "GET /nothing 404",  # the path only: a query string may carry personal data
    ]
    assert [r.levelno for r in lines.records] == [logging.INFO, logging.INFO]
    assert lines.records[0].request_id == answer.headers["x-request-id"]  # type: ignore[attr-defined]
    assert lines.records[0].getMessage().endswith("ms")
    assert lines.flushes == 2  # each line reaches the file at once


def test_a_server_error_is_one_warning_line(lines: Lines) -> None:
    client = make_client("failures")
    assert client.get("/boom").status_code == 500
    assert [m.rsplit(" ", 1)[0] for m in lines.messages()] == ["GET /boom 500"]
    assert lines.records[0].levelno == logging.WARNING


@pytest.mark.parametrize("access_log", ["all", None])
def test_no_line_with_serves_access_log_or_before_the_replica_starts(
    lines: Lines, access_log: str | None
) -> None:
    client = make_client(access_log)
    assert client.get("/invalid").status_code == 422
    assert client.get("/boom").status_code == 500
    assert lines.records == []


def test_a_request_cancelled_before_an_answer_is_a_warning_with_no_status(
    lines: Lines,
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise asyncio.CancelledError  # the client went away while the app worked

    middleware = FailureLogMiddleware(app)
    scope = {"type": "http", "method": "POST", "path": "/v1/events", "app": _Started()}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(middleware(scope, None, None))
    assert [m.rsplit(" ", 1)[0] for m in lines.messages()] == ["POST /v1/events -"]
    assert lines.records[0].levelno == logging.WARNING


class _Started:
    """An app object whose replica turned the failure log on."""

    class state:  # noqa: N801 - Starlette's attribute name
        failure_log = True


def test_grpc_codes_log_client_errors_at_info_and_server_errors_at_warning(
    lines: Lines,
) -> None:
    with request_context("rid-1"):
        log_failure("gRPC", "/entai.v1.EntaiInference/Predict", "UNAUTHENTICATED", 0.0)
        log_failure("gRPC", "/entai.v1.EntaiInference/Predict", "UNAVAILABLE", 0.0)
    assert [r.levelno for r in lines.records] == [logging.INFO, logging.WARNING]
    assert lines.records[0].request_id == "rid-1"  # type: ignore[attr-defined]
    assert lines.messages()[0].startswith("gRPC /entai.v1.EntaiInference/Predict UNAUTHENTICATED ")


def test_serves_line_is_on_only_for_all() -> None:
    assert serve_logging_config(ServeSettings()) == {"enable_access_log": False}
    assert serve_logging_config(ServeSettings(access_log="all")) == {"enable_access_log": True}
    with pytest.raises(ValueError, match="access_log"):
        ServeSettings(access_log="some")  # type: ignore[arg-type]
