from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from entai.demo.generator import CATEGORIES, EcommerceWorld, Shift, WorldConfig


def _world(seed: int = 3) -> EcommerceWorld:
    return EcommerceWorld(WorldConfig(n_users=300, n_products=80, days=40, seed=seed))


def test_same_seed_same_events_different_seed_different_events() -> None:
    a, b, c = _world(3).events(), _world(3).events(), _world(4).events()
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(c) or not a["user_id"].equals(c["user_id"])


def test_events_are_well_formed_and_funnel_shaped() -> None:
    events = _world().events()
    assert events["event_timestamp"].is_monotonic_increasing
    assert events["event_id"].is_unique
    assert set(events["category"]) <= set(CATEGORIES)
    counts = events["event_type"].value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    assert (events["price"] > 0).all()


def test_labels_and_oracle_are_consistent() -> None:
    world = _world()
    events = world.events()
    start = world.config.start
    rows = world.label_rows(
        events, [start + timedelta(days=d) for d in (10, 20)], timedelta(days=7)
    )
    assert len(rows) == 2 * 300 * len(CATEGORIES)
    # a label is 1 exactly when a purchase falls in (T, T + 7d]
    one = rows[rows["label"] == 1].iloc[0]
    buys = events[
        (events["user_id"] == one["user_id"])
        & (events["category"] == one["category"])
        & (events["event_type"] == "purchase")
    ]["event_timestamp"]
    assert (
        (buys > one["event_timestamp"]) & (buys <= one["event_timestamp"] + timedelta(days=7))
    ).any()
    auc = roc_auc_score(rows["label"], rows["oracle"])
    assert auc > 0.75, "the oracle must separate buyers from non-buyers"
    assert np.all((rows["oracle"] >= 0) & (rows["oracle"] <= 1))


def test_a_shifted_world_continues_the_history_with_the_shift() -> None:
    world = _world()
    shift = Shift(category="books", popularity=3.0, price=0.5)
    later = world.shifted(shift, days=10)
    assert later.config.start == world.config.start + timedelta(days=world.config.days)
    before, after = world.events(), later.events()
    assert after["event_timestamp"].min() >= later.config.start
    assert not set(before["event_id"]) & set(after["event_id"])
    share = {
        name: (events["category"] == "books").mean()
        for name, events in (("b", before), ("a", after))
    }
    assert share["a"] > 1.5 * share["b"]
    books = CATEGORIES.index("books")
    in_books = world.product_category == books
    assert np.allclose(
        later.product_price[in_books], np.round(world.product_price[in_books] * 0.5, 2)
    )
    assert np.array_equal(later.product_price[~in_books], world.product_price[~in_books])
    with pytest.raises(ValueError, match="unknown category"):
        Shift(category="cars")
