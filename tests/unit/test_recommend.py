"""Recommendation domain: metrics on hand-made lists, the index, candidates, examples."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from entai.demo.generator import CATEGORIES, EcommerceWorld, WorldConfig
from entai.shared.core import InvalidInputError
from entai.shared.recommend import (
    RANKING_FEATURES,
    CandidatePolicy,
    InteractionIndex,
    evaluate_ranking,
    mean_ranking_metrics,
    ndcg_at_k,
    precision_at_k,
    rank_items,
    ranking_examples,
    ranking_windows,
    recall_at_k,
)

T0 = datetime(2026, 9, 1, tzinfo=UTC)
AS_OF = T0 + timedelta(days=6)


def _at(day: int, hour: int) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(days=day, hours=hour))


CATALOGUE = pd.DataFrame(
    {
        "product_id": [0, 1, 2, 3, 4, 5],
        "category": ["books", "books", "books", "toys", "toys", "home"],
        "price": [10.0, 11.0, 12.0, 20.0, 21.0, 30.0],
    }
)
EVENTS = pd.DataFrame(
    [
        (1, 0, "view", _at(1, 10)),
        (1, 1, "view", _at(1, 11)),
        (1, 0, "cart", _at(1, 12)),
        (1, 3, "view", _at(2, 10)),
        (2, 0, "view", _at(3, 10)),
        (2, 2, "view", _at(3, 11)),
        (2, 2, "purchase", _at(3, 12)),
        (3, 5, "view", _at(4, 10)),
        (4, 5, "view", _at(5, 10)),
        (4, 4, "view", _at(5, 11)),
        (1, 4, "purchase", _at(7, 10)),  # after AS_OF: invisible to the index
    ],
    columns=["user_id", "product_id", "event_type", "event_timestamp"],
)


@pytest.fixture
def index() -> InteractionIndex:
    return InteractionIndex.from_events(EVENTS, CATALOGUE, as_of=AS_OF)


# --- metrics -----------------------------------------------------------------------


def test_binary_metrics_exact() -> None:
    ranked = ["a", "b", "c", "d"]
    relevant = {"b", "d"}
    ideal = 1.0 + 1.0 / math.log2(3)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx((1.0 / math.log2(3)) / ideal)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(0.386853, abs=1e-6)
    assert precision_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1 / 2)
    assert ndcg_at_k(["b", "d", "a"], relevant, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "c"], relevant, 2) == 0.0


def test_graded_ndcg_and_short_lists() -> None:
    # gains: y=2 (a cart), x=1 (a view); the list puts the weaker one first
    got = ndcg_at_k(["x", "y"], {"x": 1.0, "y": 2.0}, 2)
    assert got == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert got == pytest.approx(0.796708, abs=1e-6)
    # a list shorter than k still divides precision by k; a repeat counts once
    assert precision_at_k(["x", "x"], {"x"}, 4) == pytest.approx(0.25)
    assert recall_at_k(["x", "x", "y"], {"x": 1.0, "z": 0.0}, 2) == 1.0


def test_metrics_refuse_undefined_cases() -> None:
    with pytest.raises(InvalidInputError):
        ndcg_at_k(["a"], set(), 10)
    with pytest.raises(InvalidInputError):
        recall_at_k(["a"], {"a": 0.0}, 10)
    with pytest.raises(InvalidInputError):
        precision_at_k(["a"], {"a"}, 0)


def test_mean_metrics_skip_lists_without_relevant_items() -> None:
    got = mean_ranking_metrics(
        {"u1": [1, 2], "u2": [3, 4], "u3": [5]},
        {"u1": {1}, "u2": {9}, "u3": set()},
        2,
    )
    assert got.lists == 2
    assert got.ndcg == pytest.approx(0.5)  # 1.0 and 0.0
    assert got.precision == pytest.approx(0.25)  # 1/2 and 0
    assert got.recall == pytest.approx(0.5)
    assert got.as_dict()["ndcg_at_2"] == pytest.approx(0.5)


# --- the index, candidates and the popularity baseline ------------------------------


def test_index_counts_only_events_before_as_of(index: InteractionIndex) -> None:
    # views 1, carts 2, purchases 3; user 1's purchase of item 4 is after as_of
    assert index.item_popularity == {0: 4.0, 1: 1.0, 2: 4.0, 3: 1.0, 4: 1.0, 5: 2.0}
    assert index.category_items == {"books": [0, 2, 1], "toys": [3, 4], "home": [5]}
    assert index.user_categories[1] == {"books": 4.0, "toys": 1.0}
    assert index.user_recent[1] == [3, 1, 0]
    assert index.co_views[0] == [(1, 1.0), (2, 1.0)]
    assert index.co_views[5] == [(4, 1.0)]
    assert 3 not in index.co_views


def test_popularity_baseline_ranks_by_popularity_then_id(index: InteractionIndex) -> None:
    assert index.popular(3) == [0, 2, 5]
    assert index.popular(3, exclude=[0]) == [2, 5, 1]


def test_candidates_join_top_categories_and_co_views(index: InteractionIndex) -> None:
    policy = CandidatePolicy(top_categories=1, per_category=2, recent_views=2, per_recent_view=5)
    assert index.candidates(3, policy=policy) == [5, 4]  # home's items, then 5's co-view
    assert index.candidates(3, policy=policy, exclude=[5]) == [4]
    assert index.candidates(1, policy=policy) == [0, 2]  # books; 1's co-view 0 is a repeat


def test_cold_user_gets_the_most_popular_categories(index: InteractionIndex) -> None:
    assert index.top_categories(99, 2) == ["books", "home"]  # home and toys tie: by name
    assert index.candidates(99, policy=CandidatePolicy(top_categories=1, per_category=2)) == [
        0,
        2,
    ]


def test_features_exact(index: InteractionIndex) -> None:
    got = index.features(1, [1, 3, 5])
    expected = np.array(
        [
            [math.log1p(1), 2 / 3, 0.8, 4.0, 1.0, 1.0, 11.0, 5.0],
            [math.log1p(1), 0.0, 0.2, 1.0, 0.0, 1.0, 20.0, 5.0],
            [math.log1p(2), 0.0, 0.0, 0.0, 0.0, 0.0, 30.0, 5.0],
        ]
    )
    assert got.shape == (3, len(RANKING_FEATURES))
    np.testing.assert_allclose(got, expected)
    assert index.features(1, []).shape == (0, len(RANKING_FEATURES))
    with pytest.raises(InvalidInputError):
        index.features(1, [77])


def test_index_round_trips_through_json(index: InteractionIndex) -> None:
    import json

    back = InteractionIndex.from_dict(json.loads(json.dumps(index.to_dict())))
    assert back.candidates(1) == index.candidates(1)
    np.testing.assert_allclose(back.features(1, [0, 4]), index.features(1, [0, 4]))
    with pytest.raises(InvalidInputError):
        InteractionIndex.from_dict({**index.to_dict(), "schema": 99})


def test_index_refuses_products_outside_the_catalogue() -> None:
    with pytest.raises(InvalidInputError, match="not in the catalogue"):
        InteractionIndex.from_events(EVENTS, CATALOGUE[CATALOGUE["product_id"] != 5], as_of=AS_OF)


def test_rank_items_orders_by_score_then_id() -> None:
    assert rank_items([7, 3, 5], [0.1, 0.9, 0.9], 2) == [(3, 0.9), (5, 0.9)]


# --- examples and offline evaluation -------------------------------------------------


def test_examples_label_the_horizon_and_evaluate_against_popularity() -> None:
    examples = ranking_examples(EVENTS, CATALOGUE, [AS_OF], timedelta(days=3))
    request = f"1@{pd.Timestamp(AS_OF).isoformat()}"
    assert examples.relevant == {request: {4: 3.0}}
    rows = examples.rows
    assert list(rows["product_id"]) == [0, 2, 1, 3, 4, 5]
    assert list(rows["label"]) == [0, 0, 0, 0, 1, 0]
    assert (rows["event_timestamp"] == pd.Timestamp(AS_OF)).all()
    assert examples.popular[request] == [0, 2, 5, 1, 3, 4]
    scores = np.where(rows["product_id"] == 4, 1.0, 0.0)
    got = evaluate_ranking(examples, scores, k=10)
    assert got["model"].ndcg == pytest.approx(1.0)
    assert got["popularity"].ndcg == pytest.approx(1 / math.log2(7))  # item 4 at rank 6
    assert got["popularity"].precision == pytest.approx(0.1)
    with pytest.raises(InvalidInputError):
        evaluate_ranking(examples, scores[:2])


def test_examples_on_the_generator_are_point_in_time_and_seeded() -> None:
    world = EcommerceWorld(WorldConfig(n_users=200, n_products=60, days=30, seed=5))
    events, catalogue = world.events(), world.products()
    cutoffs = [world.config.start + timedelta(days=d) for d in (10, 20)]
    a = ranking_examples(events, catalogue, cutoffs, timedelta(days=5), users_per_cutoff=30)
    b = ranking_examples(events, catalogue, cutoffs, timedelta(days=5), users_per_cutoff=30)
    pd.testing.assert_frame_equal(a.rows, b.rows)
    assert a.rows.groupby("event_timestamp")["request_id"].nunique().tolist() == [30, 30]
    early = a.before(cutoffs[1])
    assert set(early.rows["event_timestamp"]) == {pd.Timestamp(cutoffs[0])}
    assert set(early.relevant) == set(early.rows["request_id"])
    # a feature at the first cutoff ignores everything after it
    index = InteractionIndex.from_events(
        events[events["event_timestamp"] < pd.Timestamp(cutoffs[0])], catalogue, as_of=cutoffs[0]
    )
    first = early.rows.iloc[0]
    np.testing.assert_allclose(
        index.features(int(first["user_id"]), [int(first["product_id"])])[0],
        first[list(RANKING_FEATURES)].to_numpy(dtype=np.float64),
    )


def test_products_catalogue_matches_events() -> None:
    world = EcommerceWorld(WorldConfig(n_users=100, n_products=40, days=10, seed=2))
    products = world.products()
    assert list(products["product_id"]) == list(range(40))
    assert set(products["category"]) <= set(CATEGORIES)
    np.testing.assert_allclose(products.groupby("category")["appeal"].sum(), 1.0)
    merged = world.events().merge(products, on="product_id", suffixes=("", "_catalogue"))
    assert (merged["category"] == merged["category_catalogue"]).all()
    assert (merged["price"] == merged["price_catalogue"]).all()


# --- live quality per window ---------------------------------------------------------


def test_ranking_windows_exact() -> None:
    impressions = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r1", "r2", "r2", "r3", "r3"],
            "item_id": [5, 6, 7, 1, 2, 8, 9],
            "rank": [1, 2, 3, 1, 2, 1, 2],
            "ts": [10.0, 10.0, 10.0, 50.0, 50.0, 150.0, 150.0],
        }
    )
    interactions = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r1", "r3", "unknown"],
            "item_id": [6, 6, 99, 8, 1],
            "kind": ["click", "purchase", "click", "click", "click"],
        }
    )
    first, second = ranking_windows(impressions, interactions, window_s=100.0, k=2)
    assert (first.start_s, first.end_s) == (0.0, 100.0)
    assert (first.requests, first.impressions, first.clicked) == (2, 5, 1)
    assert first.ctr == pytest.approx(0.2)
    assert first.lists == 1  # r2 had no feedback
    assert first.precision == pytest.approx(0.5)
    assert first.recall == pytest.approx(0.5)  # item 99 was bought but not shown
    ideal = 3.0 + 1.0 / math.log2(3)  # gains 2 (purchase) and 1 (click)
    assert first.ndcg == pytest.approx((3.0 / math.log2(3)) / ideal)
    assert (second.ctr, second.precision, second.recall, second.ndcg) == (0.5, 0.5, 1.0, 1.0)
    quiet = ranking_windows(impressions, interactions.iloc[:0], window_s=1000.0, k=2)
    assert quiet[0].ndcg is None and quiet[0].ctr == 0.0 and quiet[0].requests == 3
    assert ranking_windows(impressions.iloc[:0], interactions, window_s=10.0) == []
    with pytest.raises(InvalidInputError):
        ranking_windows(impressions, interactions, window_s=0.0)
