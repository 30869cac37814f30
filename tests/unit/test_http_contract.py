"""The HTTP error table and request models, without Serve."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from entai.deployments.http_errors import error_response, install_error_handlers, status_for
from entai.deployments.schemas import EventsRequest, OnlineFeaturesRequest, PredictRequest
from entai.shared.core import _errors as errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.AuthenticationError, 401),
        (errors.PermissionDeniedError, 403),
        (errors.NotFoundError, 404),
        (errors.InvalidInputError, 422),
        (errors.ContractViolationError, 422),
        (errors.PointInTimeJoinError, 422),
        (errors.OverloadedError, 429),
        (errors.ServiceUnavailableError, 503),
        (errors.ConflictError, 409),
        (errors.PayloadTooLargeError, 413),
        (errors.RateLimitedError, 429),
        (errors.ModelOutputInvalidError, 502),
    ],
)
def test_status_table(error: type[errors.EntaiError], status: int) -> None:
    assert status_for(error("x")) == status


def test_error_envelope_and_422_for_bad_bodies() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/p")
    def predict(body: PredictRequest) -> dict[str, str]:
        raise errors.AuthenticationError("missing bearer token", details={"reason": "missing"})

    client = TestClient(app)
    denied = client.post("/p", json={"entities": {"user_id": [1]}})
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    assert denied.json()["error"] == {
        "code": "unauthenticated",
        "message": "missing bearer token",
        "details": {"reason": "missing"},
    }
    bad = client.post("/p", json={"entities": {"user_id": [1, 2], "category": ["a"]}})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input"
    assert client.post("/p", content=b"{not json").status_code == 422
    assert client.get("/nowhere").status_code == 404


def test_online_request_needs_exactly_one_feature_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        OnlineFeaturesRequest(entities={"user_id": [1]})
    with pytest.raises(ValidationError, match="exactly one"):
        OnlineFeaturesRequest(feature_service="s", features=["v:f"], entities={"user_id": [1]})
    ok = OnlineFeaturesRequest(features=["v:f"], entities={"user_id": [1, 2]})
    assert ok.entities == {"user_id": [1, 2]}


def test_predict_request_features_must_align_with_entities() -> None:
    with pytest.raises(ValidationError, match="one value per entity row"):
        PredictRequest(entities={"user_id": [1, 2]}, request_features={"hour": [3]})


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (errors.OverloadedError("lagging", details={"retry_after_s": 2.4}), 429, "3"),
        (errors.OverloadedError("lagging"), 429, "1"),
        (errors.ServiceUnavailableError("redis down"), 503, "1"),
    ],
)
def test_overload_and_unavailability_tell_when_to_retry(
    error: errors.EntaiError, status: int, retry_after: str
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/e")
    def fail() -> None:
        raise error

    answer = TestClient(app).get("/e")
    assert answer.status_code == status
    assert answer.headers["retry-after"] == retry_after
    assert answer.json()["error"]["code"] == error.code


def _problems(model: type[Any], body: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(json.loads(body))
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in caught.value.errors()]


ONE = {"user_id": [1]}
LONG_NAME = "n" * 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entities": {"user_id": list(range(100_000))}}, "entities.user_id"),
        ({"entities": {"user_id": ["x" * 1_000_000]}}, "entities.user_id.0"),
        ({"entities": {"user_id": [2**64]}}, "entities.user_id.0"),
        ({"entities": {f"k{i}": [1] for i in range(17)}}, "entities"),
        (
            {"entities": ONE, "request_features": {f"f{i}": [1.0] for i in range(10_000)}},
            "request_features",
        ),
        ({"entities": ONE, "request_features": {"x": [math.nan]}}, "request_features.x.0"),
        ({"entities": ONE, "request_features": {"x": [-math.inf]}}, "request_features.x.0"),
        (
            {"entities": ONE, "request_features": {LONG_NAME: [1]}},
            f"request_features.{LONG_NAME}.[key]",
        ),
    ],
    ids=[
        "100k-entities",
        "1MB-string",
        "int-over-64-bits",
        "17-join-keys",
        "10k-feature-keys",
        "nan",
        "infinity",
        "long-feature-name",
    ],
)
def test_predict_request_limits_name_the_field(body: dict[str, Any], field: str) -> None:
    problems = _problems(PredictRequest, json.dumps(body))
    assert any(f == field or f.startswith(f"{field}.") for f, _ in problems), problems


def test_request_features_are_finite_numbers_or_null() -> None:
    ok = PredictRequest.model_validate_json(
        '{"entities": {"user_id": [1, 2, 3]}, "request_features": {"x": [1, 2.5, null]}}'
    )
    assert ok.request_features == {"x": [1.0, 2.5, None]}
    problems = _problems(
        PredictRequest, '{"entities": {"user_id": [1]}, "request_features": {"x": ["a"]}}'
    )
    assert problems[0][0] == "request_features.x.0"


def test_online_and_event_requests_have_limits_too() -> None:
    refs = json.dumps({"features": [f"v:f{i}" for i in range(1001)], "entities": {"u": [1]}})
    assert "features" in [f for f, _ in _problems(OnlineFeaturesRequest, refs)]
    wide = json.dumps({"source": "events", "events": [{f"c{i}": 1 for i in range(257)}]})
    assert "events.0" in [f for f, _ in _problems(EventsRequest, wide)]
    long_text = json.dumps({"source": "events", "events": [{"q": "x" * 10_001}]})
    assert any(f.startswith("events.0.q") for f, _ in _problems(EventsRequest, long_text))
    nested = json.dumps({"source": "events", "events": [{"q": {"deep": [1]}}]})
    assert any(f.startswith("events.0.q") for f, _ in _problems(EventsRequest, nested))


def test_event_values_keep_their_json_types() -> None:
    body = {"source": "s", "events": [{"a": 1, "b": True, "c": 1.5, "d": "007", "e": None}]}
    (event,) = EventsRequest.model_validate_json(json.dumps(body)).events
    assert event == {"a": 1, "b": True, "c": 1.5, "d": "007", "e": None}
    assert [type(v) for v in event.values()] == [int, bool, float, str, type(None)]


def test_refusals_say_how_to_retry_or_authenticate() -> None:
    status, body, headers = error_response(
        errors.RateLimitedError("too many", details={"retry_after_s": 2.2})
    )
    assert (status, headers) == (429, {"Retry-After": "3"})
    assert body["error"]["code"] == "rate_limited"
    assert error_response(errors.ServiceUnavailableError("down"))[2] == {"Retry-After": "1"}
    assert error_response(errors.AuthenticationError("no"))[2] == {"WWW-Authenticate": "Bearer"}
    assert error_response(errors.ModelOutputInvalidError("nan"))[:2] == (
        502,
        {
            "error": {"code": "model_output_invalid", "message": "nan", "details": {}},
            "request_id": None,
        },
    )
