"""Explanations over real HTTP: /v1/explain and predict's "explain": true (issue 19).

One application for the module (the shipped graph: the Ingress scores in-process; no
canary, no shadow) on port 8126 (gRPC on 9126), over the real governance, shard and registry actors
and an MLflow registry holding XGBoost versions (:func:`deploy_platform`). The demo's
feature service has no PII feature; withholding PII values is tested in
``tests/unit/test_serve_explain.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc_client
import httpx
import numpy as np
import pytest
from test_serve_http import (
    MODEL,
    Platform,
    assert_refused,
    deploy_platform,
    post_users,
    predict_body,
    refusal_cases,
    refusal_target,
    teardown_platform,
)

from entai.demo import features as demo

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

PORT = 8126
GRPC_TARGET = "127.0.0.1:9126"


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(
        tmp_path_factory.mktemp("serve-explain"), port=PORT, grpc_port=9126, shadow=False
    )
    yield deployed
    teardown_platform(deployed)


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60.0) as c:
        yield c


def _margin(platform: Platform, version: int, user: int, category: str) -> float:
    row = platform.features[(user, category)][None, :].astype(np.float32)
    return float(platform.boosters[version].inplace_predict(row, predict_type="margin")[0])


def test_explain_sums_to_the_served_versions_margin_and_names_its_sources(
    platform: Platform, client: httpx.Client
) -> None:
    users, cats, payload = post_users(client, platform, f"/v1/explain/{MODEL}", 6)
    assert payload["model"] == MODEL and payload["output"] == "margin"
    champion = platform.aliases["champion"]
    assert len(payload["explanations"]) == len(users)
    for u, c, row in zip(users, cats, payload["explanations"], strict=True):
        assert (row["version"], row["alias"], row["method"]) == (champion, "champion", "tree_shap")
        margin = _margin(platform, champion, u, c)
        assert row["margin"] == pytest.approx(margin, abs=1e-5)
        total = row["base_value"] + sum(f["contribution"] for f in row["features"])
        assert total == pytest.approx(margin, abs=1e-4)
        assert row["prediction"] == pytest.approx(platform.expected(champion, u, c), rel=1e-6)
        names = [f["name"] for f in row["features"]]
        assert names == list(demo.MODEL_FEATURES)
        values = np.array([f["value"] for f in row["features"]])
        np.testing.assert_allclose(values, platform.features[(u, c)])
        views = {f["source"] for f in row["features"]}
        assert views == {"user_category_stats", "user_stats"}
        assert {f["status"] for f in row["features"]} == {"PRESENT"}
        assert not any(f["masked"] for f in row["features"])
        stamps = {datetime.fromisoformat(f["event_timestamp"]) for f in row["features"]}
        assert len(stamps) <= 2  # one event time per view's stored row


def test_predict_with_explain_answers_the_same_predictions_plus_explanations(
    platform: Platform, client: httpx.Client
) -> None:
    body = {"entities": {"user_id": [3, 4], "category": ["books", "tools"]}}
    plain = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers()).json()
    assert plain["explanations"] is None
    explained = client.post(
        f"/v1/predict/{MODEL}", json={**body, "explain": True}, headers=platform.headers()
    )
    assert explained.status_code == 200, explained.text
    payload = explained.json()
    assert payload["predictions"] == pytest.approx(plain["predictions"], rel=1e-6)
    rows = payload["explanations"]
    assert [r["prediction"] for r in rows] == pytest.approx(payload["predictions"], rel=1e-6)
    for r in rows:
        total = r["base_value"] + sum(f["contribution"] for f in r["features"])
        assert total == pytest.approx(r["margin"], abs=1e-4)


def test_an_entity_without_features_is_explained_with_its_statuses(
    platform: Platform, client: httpx.Client
) -> None:
    body = predict_body(10_000_000, "books")  # never written
    response = client.post(f"/v1/explain/{MODEL}", json=body, headers=platform.headers())
    assert response.status_code == 200, response.text
    (row,) = response.json()["explanations"]
    assert {f["status"] for f in row["features"]} == {"NOT_FOUND"}
    assert {f["value"] for f in row["features"]} == {None}
    assert {f["event_timestamp"] for f in row["features"]} == {None}
    total = row["base_value"] + sum(f["contribution"] for f in row["features"])
    assert total == pytest.approx(row["margin"], abs=1e-4)


@refusal_cases(
    ("unknown_request_feature", 422, "invalid_input"),
    ("too_many_rows", 422, "invalid_input"),
)
def test_explain_errors_have_predicts_statuses(
    platform: Platform, client: httpx.Client, case: str, status: int, code: str
) -> None:
    path, headers = refusal_target(
        platform, case, f"/v1/explain/{MODEL}", "/v1/explain/no_such_model"
    )
    body = predict_body(1, "books")
    if case == "unknown_request_feature":
        body = {**body, "request_features": {"not_an_input": [1.0]}}
    elif case == "too_many_rows":
        body = {"entities": {"user_id": list(range(1001)), "category": ["books"] * 1001}}
    assert_refused(client.post(path, json=body, headers=headers), status, code)


def test_grpc_explain_equals_the_http_answer(
    platform: Platform, client: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    stubs: Path = grpc_client.compile_stubs(tmp_path_factory.mktemp("grpc-client"))
    grpc_client.wait_for_route(GRPC_TARGET, platform.app_name)
    entities = {"user_id": [5, 10_000_001], "category": ["games", "books"]}
    response = client.post(
        f"/v1/explain/{MODEL}", json={"entities": entities}, headers=platform.headers()
    )
    assert response.status_code == 200, response.text
    expected = response.json()["explanations"]
    request = {"model": MODEL, "entities": grpc_client.columns(entities)}
    metadata = [
        ["application", platform.app_name],
        ["authorization", f"Bearer {platform.app_token}"],
    ]
    (answer,) = grpc_client.call(
        stubs, GRPC_TARGET, [{"method": "Explain", "request": request, "metadata": metadata}]
    )
    assert answer["code"] == "OK", answer["details"]
    got = answer["response"]
    assert got["output"] == "margin" and got["request_id"] == answer["trailing"]["request_id"]
    for mine, theirs in zip(got["explanations"], expected, strict=True):
        assert int(mine["version"]) == theirs["version"]
        assert mine["method"] == theirs["method"] == "tree_shap"
        assert mine["margin"] == pytest.approx(theirs["margin"])
        assert mine["base_value"] == pytest.approx(theirs["base_value"])
        for f, g in zip(mine["features"], theirs["features"], strict=True):
            assert (f["name"], f["source"], f["masked"]) == (g["name"], g["source"], g["masked"])
            assert f["contribution"] == pytest.approx(g["contribution"])
            assert f.get("value") == g["value"]  # absent in proto JSON where HTTP says null
            assert (f["status"] or None) == g["status"]
            assert grpc_client.instant(f.get("event_timestamp"), null=None) == (
                grpc_client.instant(g["event_timestamp"], null=None)
            )
