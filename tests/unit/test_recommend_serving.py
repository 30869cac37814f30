"""Serving recommendations without Serve: the request model, one answer, the runtime."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tiny_ranker import CATALOGUE, EVENTS, INDEX, T0, by_price

from entai.deployments.feedback_log import FeedbackLog, ranking_report
from entai.deployments.http_errors import install_error_handlers
from entai.deployments.model_runtime import LoadedModel
from entai.deployments.recommend import RankerRuntime, recommend
from entai.deployments.schemas import (
    MAX_EXCLUDED_ITEMS,
    MAX_RECOMMEND_K,
    FeedbackRequest,
    Interaction,
    RecommendRequest,
)
from entai.deployments.tap import PredictionTap, ServedBatch
from entai.shared.core import ServiceUnavailableError
from entai.shared.data import Lake
from entai.shared.recommend import RANKING_FEATURES, CandidatePolicy, InteractionIndex


def test_answer_is_the_top_k_candidates_by_score() -> None:
    got = recommend(by_price(), INDEX, 1, k=3)
    candidates = INDEX.candidates(1)
    expected = sorted(candidates, key=lambda i: -CATALOGUE["price"][i])[:3]
    assert got.items == expected
    assert got.scores == [CATALOGUE["price"][i] for i in expected]
    assert got.candidates == len(candidates)
    np.testing.assert_allclose(got.features, INDEX.features(1, expected))


def test_excluded_items_are_never_returned() -> None:
    first = recommend(by_price(), INDEX, 1, k=3)
    again = recommend(by_price(), INDEX, 1, k=3, exclude=first.items[:2])
    assert not set(again.items) & set(first.items[:2])
    assert len(again.items) == 3
    everything = recommend(by_price(), INDEX, 1, k=10, exclude=list(range(7)))
    assert everything.items == [7]


def test_short_candidate_lists_are_filled_with_popular_items() -> None:
    got = recommend(by_price(), INDEX, 99, k=8)
    assert sorted(got.items) == list(range(8))
    assert len(got.items) == 8


def test_session_views_bring_their_co_views() -> None:
    # user 2 viewed 2, 5 and 7 the same day: a session view of 7 brings 2 and 5
    books_only = CandidatePolicy(top_categories=1)
    # without the session: books' 2, then 4 (co-viewed with the user's own 1)
    assert INDEX.candidates(1, policy=books_only, exclude=[0, 1, 3]) == [2, 4]
    got = INDEX.candidates(1, policy=books_only, exclude=[0, 1, 3], session=[7])
    assert got == [2, 5, 4]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 1, "k": 0}, "k"),
        ({"user_id": 1, "k": MAX_RECOMMEND_K + 1}, "k"),
        ({"user_id": 1, "exclude": list(range(MAX_EXCLUDED_ITEMS + 1))}, "exclude"),
        ({"user_id": 1, "exclude": [-1]}, "exclude.0"),
        ({"user_id": 2**64}, "user_id"),
        ({"user_id": 1, "context": {"recent_views": list(range(51))}}, "context.recent_views"),
        ({"user_id": 1, "context": {"weather": "rain"}}, "context.weather"),
        ({"k": 3}, "user_id"),
    ],
)
def test_recommend_request_bounds_are_422_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/r")
    def route(request: RecommendRequest) -> dict[str, int]:
        return {"k": request.k}

    client = TestClient(app)
    answer = client.post("/r", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"
    assert field in json.dumps(answer.json()["error"]["details"])
    assert client.post("/r", json={"user_id": 1}).json() == {"k": 10}
    assert client.post("/r", json={"user_id": 1, "k": MAX_RECOMMEND_K}).status_code == 200


def test_feedback_takes_labels_or_interactions() -> None:
    ok = FeedbackRequest.model_validate(
        {"model": "r", "interactions": [{"request_id": "a1", "item_id": 3, "kind": "click"}]}
    )
    assert ok.interactions[0].kind == "click"
    with pytest.raises(ValueError, match="labels or interactions"):
        FeedbackRequest.model_validate({"model": "r"})
    with pytest.raises(ValueError):
        FeedbackRequest.model_validate(
            {"model": "r", "interactions": [{"request_id": "a", "item_id": 3, "kind": "like"}]}
        )


def test_feedback_log_writes_one_file_per_call(tmp_path: Path) -> None:
    log = FeedbackLog(Lake(str(tmp_path)))
    wrote = log.append(
        "ranker",
        [
            Interaction(request_id="r1", item_id=4, kind="click"),
            Interaction(request_id="r1", item_id=4, kind="purchase"),
        ],
    )
    assert wrote == 2
    (file,) = (tmp_path / "feedback" / "model=ranker").rglob("*.parquet")
    table = pq.read_table(file).to_pydict()
    assert table["request_id"] == ["r1", "r1"]
    assert table["kind"] == ["click", "purchase"]
    assert log.append("ranker", []) == 0


class _Watcher:
    def __init__(self, version: int) -> None:
        self.aliases = {"champion": version}
        self.revision = 1
        self._cond = threading.Condition()

    def move(self, version: int) -> None:
        with self._cond:
            self.aliases = {"champion": version}
            self.revision += 1
            self._cond.notify_all()

    def subscribe(self, name: str) -> Mapping[str, Any]:
        return {"revision": self.revision, "aliases": dict(self.aliases)}

    def wait_for_change(self, name: str, known: int, timeout_s: float) -> Mapping[str, Any]:
        with self._cond:
            self._cond.wait_for(lambda: self.revision != known, timeout=timeout_s)
            return self.subscribe(name)


def test_runtime_swaps_model_and_index_together() -> None:
    cheaper = CATALOGUE.assign(price=CATALOGUE["price"].where(CATALOGUE["product_id"] != 7, 1.0))
    later = InteractionIndex.from_events(EVENTS, cheaper, as_of=T0 + timedelta(days=1))
    loads: list[int] = []

    def loader(name: str, version: int) -> tuple[LoadedModel, InteractionIndex]:
        loads.append(version)
        return by_price(version), INDEX if version == 1 else later

    watcher = _Watcher(1)
    runtime = RankerRuntime("ranker", watcher, loader)
    assert runtime.recommend(1, k=2).version == 1
    runtime._runtime.apply({"revision": 2, "aliases": {"champion": 2}})
    answer = runtime.recommend(1, k=2)
    assert answer.version == 2
    assert answer.items == recommend(by_price(2), later, 1, k=2).items  # from index 2
    assert answer.items != recommend(by_price(1), INDEX, 1, k=2).items
    runtime._runtime.apply({"revision": 3, "aliases": {"champion": 3}})
    assert runtime.recommend(1, k=2).version == 3
    # the replaced version's index is kept until the next load, then let go
    assert set(runtime._indexes) == {2, 3}
    assert loads == [1, 2, 3]


def test_runtime_without_champion_is_unavailable() -> None:
    runtime = RankerRuntime("ranker", _Watcher(1), lambda n, v: (by_price(v), INDEX))
    runtime._indexes.clear()
    with pytest.raises(ServiceUnavailableError):
        runtime.recommend(1, k=2)


def test_ranking_report_joins_the_tap_impressions_and_the_feedback_log(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    tap = PredictionTap(lake, None, prediction_column="score")
    items = [4, 2, 9]
    features = np.column_stack(
        [np.zeros((3, len(RANKING_FEATURES))), [1.0, 2.0, 3.0], np.asarray(items, float)]
    )
    tap.submit(
        ServedBatch(
            request_id="req-1",
            model="ranker",
            aliases=["champion"] * 3,
            versions=[1] * 3,
            entity_keys=["a", "b", "c"],
            feature_names=(*RANKING_FEATURES, "rank", "item_id"),
            features=features,
            predictions=[0.9, 0.5, 0.1],
        )
    )
    assert tap.flush() == 3
    FeedbackLog(lake).append("ranker", [Interaction(request_id="req-1", item_id=2, kind="click")])
    report = ranking_report(lake, "ranker", window_s=3600.0, k=2)
    (window,) = report["windows"]
    assert (window["requests"], window["impressions"], window["clicked"]) == (1, 3, 1)
    assert window["ctr"] == pytest.approx(1 / 3)
    assert window["precision"] == pytest.approx(0.5)
    assert window["recall"] == 1.0
    assert window["ndcg"] == pytest.approx(1 / math.log2(3))  # the click was at rank 2
    assert ranking_report(lake, "other", window_s=3600.0)["windows"] == []
