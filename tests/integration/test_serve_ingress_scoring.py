"""The Serve application with ``score_in_ingress``: the ingress scores in-process.

Same checks as the Model-deployment path where they apply (canary routing happens
before scoring, the same in both paths, and is tested there): predictions equal the
model called directly, shadow predictions are logged and never returned,
``/v1/models/{name}`` names the versions the ingress serves, and promoting and rolling
back twice under a steady stream fails no request and answers only with versions
that held ``champion``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from test_serve_http import (
    CATEGORIES,
    MODEL,
    Platform,
    deploy_platform,
    predict_body,
    teardown_platform,
)
from test_serve_zero_downtime import assert_swaps_without_downtime


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(
        tmp_path_factory.mktemp("serve-in-ingress"),
        port=8123,
        score_in_ingress=True,
    )
    yield deployed
    teardown_platform(deployed)


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60.0) as c:
        yield c


def test_predictions_equal_the_model_and_shadow_is_only_logged(
    platform: Platform, client: httpx.Client
) -> None:
    users = list(range(60))
    cats = [CATEGORIES[u % 3] for u in users]
    body = {"entities": {"user_id": users, "category": cats}}
    response = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers())
    assert response.status_code == 200, response.text
    payload = response.json()
    assert set(payload["versions"]) == {platform.aliases["champion"]}
    for u, c, v, p in zip(users, cats, payload["versions"], payload["predictions"], strict=True):
        assert p == pytest.approx(platform.expected(v, u, c), rel=1e-6)
    shadow = platform.aliases["shadow"]
    assert shadow not in payload["versions"]
    root = Path(platform.settings.lake.root) / "predictions" / f"model={MODEL}"
    deadline = time.monotonic() + 60
    logged = pd.DataFrame()
    while time.monotonic() < deadline and logged.empty:
        files = list(root.rglob("*.parquet"))
        if files:
            log = pd.concat([pd.read_parquet(f) for f in files])
            logged = log[(log["request_id"] == payload["request_id"]) & (log["alias"] == "shadow")]
        time.sleep(0.3)
    assert len(logged) == len(users)
    assert set(logged["version"]) == {shadow}
    first = logged.iloc[0]
    user = int(first["entity_key"].split("user_id=i:")[1])
    expected = platform.expected(shadow, user, CATEGORIES[user % 3])
    assert first["prediction"] == pytest.approx(expected, rel=1e-6)


def test_model_detail_names_the_versions_the_ingress_serves(
    platform: Platform, client: httpx.Client
) -> None:
    detail = client.get(f"/v1/models/{MODEL}", headers=platform.headers())
    assert detail.status_code == 200, detail.text
    assert detail.json()["serving"] == platform.aliases
    one = client.post(f"/v1/predict/{MODEL}", json=predict_body(1, "books"), headers={})
    assert one.status_code == 401


def test_promote_and_rollback_twice_under_load_scoring_in_ingress(platform: Platform) -> None:
    assert_swaps_without_downtime(platform)
