"""The HTTP error table and request models, without Serve."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from entai.deployments.http_errors import install_error_handlers, status_for
from entai.deployments.schemas import OnlineFeaturesRequest, PredictRequest
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
        (errors.OverloadedError("lagging", details={"retry_after_s": 2.4}), 429, "2"),
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
