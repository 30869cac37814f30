"""The predict route below FastAPI's routing answers as FastAPI's route would, byte for byte."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, Header, Path
from fastapi.testclient import TestClient

from entai.deployments.http_errors import install_error_handlers
from entai.deployments.predict_route import (
    MODEL_MAX_LENGTH,
    PATH,
    PredictRoute,
    install_predict,
)
from entai.deployments.schemas import PredictRequest, PredictResponse
from entai.shared.core import AuthenticationError, NotFoundError


class Replica:
    """A stand-in for the ingress replica's predict; it records who called it."""

    def __init__(self) -> None:
        self.direct: list[PredictRequest] = []
        self.fallback: list[PredictRequest] = []

    async def predict(
        self, body: PredictRequest, model: str, authorization: str | None
    ) -> PredictResponse:
        if authorization != "Bearer good":
            raise AuthenticationError("missing bearer token", details={"reason": "missing"})
        if model != "churn":
            raise NotFoundError(f"no deployed model {model!r}", details={"model": model})
        n = len(next(iter(body.entities.values())))
        scores = [1 / 3 + i for i in range(n)]
        extra = sum(float(v[0] or 0) for v in body.request_features.values())
        return PredictResponse(
            model=model,
            version=7,
            versions=[7] * n,
            predictions=[s + extra for s in scores],
            request_id="rid-1",
        )


def _app(replica: Replica, direct: bool) -> FastAPI:
    """An app with FastAPI's predict route, and, if ``direct``, the route below it."""
    app = FastAPI()
    install_error_handlers(app)
    if direct:
        app.router.routes.insert(0, PredictRoute())

        async def direct_predict(body: PredictRequest, model: str, auth: str | None) -> Any:
            replica.direct.append(body)
            return await replica.predict(body, model, auth)

        install_predict(app, direct_predict)

    @app.post(PATH, response_model=PredictResponse)
    async def predict(
        body: PredictRequest,
        model: str = Path(max_length=MODEL_MAX_LENGTH),
        authorization: str | None = Header(None),
    ) -> PredictResponse:
        replica.fallback.append(body)
        return await replica.predict(body, model, authorization)

    return app


JSON = {"content-type": "application/json", "authorization": "Bearer good"}
GOOD = b'{"entities": {"user_id": [1, 2], "category": ["a", "b"]}}'

# (name, method, model, headers, body, taken by the route below FastAPI)
CASES: list[tuple[str, str, str, dict[str, str], bytes, bool]] = [
    ("good", "POST", "churn", JSON, GOOD, True),
    ("request features", "POST", "churn", JSON,
     b'{"entities": {"user_id": [3]}, "request_features": {"x": [0.25]}}', True),
    ("vendor json with charset", "POST", "churn",
     {**JSON, "content-type": "application/vnd.entai+json; charset=utf-8"}, GOOD, True),
    ("not json", "POST", "churn", JSON, b"{not json", True),
    ("not utf-8", "POST", "churn", JSON, b'{"entities": "\xff\xfe"}', True),
    ("empty", "POST", "churn", JSON, b"", True),
    ("a list", "POST", "churn", JSON, b"[1, 2]", True),
    ("rows disagree", "POST", "churn", JSON,
     b'{"entities": {"user_id": [1, 2], "category": ["a"]}}', True),
    ("unknown field", "POST", "churn", JSON, b'{"entities": {"user_id": [1]}, "x": 1}', True),
    ("request feature not a number", "POST", "churn", JSON,
     b'{"entities": {"user_id": [1]}, "request_features": {"x": ["no"]}}', True),
    ("no token", "POST", "churn", {"content-type": "application/json"}, GOOD, True),
    ("unknown model", "POST", "fraud", JSON, GOOD, True),
    ("text/plain", "POST", "churn", {**JSON, "content-type": "text/plain"}, GOOD, False),
    ("no content type", "POST", "churn", {"authorization": "Bearer good"}, GOOD, False),
    ("model name too long", "POST", "m" * (MODEL_MAX_LENGTH + 1), JSON, GOOD, False),
    ("longest model name", "POST", "m" * MODEL_MAX_LENGTH, JSON, GOOD, True),
    ("GET", "GET", "churn", JSON, b"", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "model", "headers", "body", "direct"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_answers_equal_fastapis_route(
    method: str, model: str, headers: dict[str, str], body: bytes, direct: bool
) -> None:
    fast, plain = Replica(), Replica()
    url = f"/v1/predict/{model}"
    with TestClient(_app(fast, direct=True)) as a, TestClient(_app(plain, direct=False)) as b:
        got = a.request(method, url, headers=headers, content=body)
        expected = b.request(method, url, headers=headers, content=body)
    assert got.status_code == expected.status_code
    assert got.content == expected.content
    for header in ("content-type", "content-length", "www-authenticate", "allow"):
        assert got.headers.get(header) == expected.headers.get(header)
    # Who answered: the route below FastAPI's routing, or FastAPI's route behind it.
    assert fast.fallback == [] if direct else fast.direct == []
    if got.status_code == 200:
        assert (fast.direct if direct else fast.fallback) == plain.fallback


def test_statuses_of_the_cases() -> None:
    """The parity test compares the two routes; this pins what both answer."""
    replica = Replica()
    statuses = {}
    with TestClient(_app(replica, direct=True)) as client:
        for name, method, model, headers, body, _ in CASES:
            response = client.request(method, f"/v1/predict/{model}", headers=headers, content=body)
            statuses[name] = response.status_code
    assert statuses == {
        "good": 200, "request features": 200, "vendor json with charset": 200,
        "not json": 422, "not utf-8": 400, "empty": 422, "a list": 422,
        "rows disagree": 422, "unknown field": 422, "request feature not a number": 422,
        "no token": 401, "unknown model": 404, "text/plain": 422, "no content type": 422,
        "model name too long": 422, "longest model name": 404, "GET": 405,
    }  # fmt: skip


def test_a_chunked_body_is_read_whole() -> None:
    replica = Replica()
    chunks = [GOOD[:10], GOOD[10:30], GOOD[30:]]
    with TestClient(_app(replica, direct=True)) as client:
        response = client.post("/v1/predict/churn", headers=JSON, content=iter(chunks))
    assert response.status_code == 200
    assert response.json()["predictions"] == [1 / 3, 1 + 1 / 3]
    assert len(replica.direct) == 1


def test_without_an_installed_replica_fastapis_route_answers() -> None:
    """Before the replica installs its handler, the route does not match."""
    replica = Replica()
    app = _app(replica, direct=False)
    app.router.routes.insert(0, PredictRoute())
    with TestClient(app) as client:
        assert client.post("/v1/predict/churn", headers=JSON, content=GOOD).status_code == 200
    assert len(replica.fallback) == 1


def test_the_route_is_left_out_of_the_openapi_document() -> None:
    with TestClient(_app(Replica(), direct=True)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert list(paths[PATH]) == ["post"]


def test_a_client_gone_mid_body_is_answered_as_fastapis_route_answers_it() -> None:
    """A disconnect before the body is read whole: FastAPI's 400, from both routes."""

    async def call(app: FastAPI) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        messages = iter(
            [{"type": "http.request", "body": GOOD[:5], "more_body": True},
             {"type": "http.disconnect"}]
        )  # fmt: skip

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(k.encode(), v.encode()) for k, v in JSON.items()]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/predict/churn",
            "raw_path": b"/v1/predict/churn", "root_path": "", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
        }  # fmt: skip
        await app(scope, receive, send)
        return sent

    fast, plain = Replica(), Replica()
    got = asyncio.run(call(_app(fast, direct=True)))
    expected = asyncio.run(call(_app(plain, direct=False)))
    assert got == expected
    assert got[0]["status"] == 400
    assert fast.direct == fast.fallback == []
