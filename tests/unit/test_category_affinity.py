"""A user's category activity: one definition for the ranker's index (training) and the
demo's stream view ``product_category_affinity`` (serving), and fresh activity in the
ranker's candidates and features."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from tiny_ranker import CATALOGUE, INDEX, by_price

from entai.demo.features import product_category_affinity
from entai.demo.generator import CATEGORIES, EcommerceWorld, WorldConfig
from entai.deployments.recommend import recommend
from entai.shared.core import InvalidInputError
from entai.shared.features import compute_view
from entai.shared.recommend import (
    RANKING_FEATURES,
    CandidatePolicy,
    InteractionIndex,
    category_activity,
    category_shares,
)

SHARE = RANKING_FEATURES.index("user_category_share")
IN_CATEGORY = RANKING_FEATURES.index("user_category_events")
TOTAL = RANKING_FEATURES.index("user_events")
T = pd.Timestamp("2026-02-01 12:00", tz="UTC")  # the cutoff


def _events(rows: list[tuple[int, int, str, str]], catalogue: pd.DataFrame) -> pd.DataFrame:
    """(user, product, event type, time) rows, with the product's category."""
    frame = pd.DataFrame(rows, columns=["user_id", "product_id", "event_type", "event_timestamp"])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    category = dict(zip(catalogue["product_id"], catalogue["category"], strict=True))
    return frame.assign(category=frame["product_id"].map(category))


def _catalogue(categories: list[str], per_category: int = 3) -> pd.DataFrame:
    ids = list(range(len(categories) * per_category))
    return pd.DataFrame(
        {
            "product_id": ids,
            "category": [categories[i // per_category] for i in ids],
            "price": [float(i) for i in ids],
        }
    )


def _served(view_rows: pd.DataFrame, instant: pd.Timestamp, *, inclusive: bool) -> pd.DataFrame:
    """The stream view's value of each (user, category) at ``instant``: its last row
    dated before it (at or before it when ``inclusive``: the point-in-time join's rule)."""
    ts = view_rows["event_timestamp"]
    seen = view_rows[ts <= instant if inclusive else ts < instant]
    return seen.sort_values("event_timestamp").groupby(["user_id", "category"]).tail(1)


def _assert_parity(index: InteractionIndex, served: pd.DataFrame) -> int:
    """The index's category features of every user equal the served values; returns
    how many (user, category) values were compared."""
    items = {c: items[0] for c, items in index.category_items.items()}
    compared = 0
    users = sorted(set(index.user_categories) | set(served["user_id"]))
    for user in users:
        mine = served[served["user_id"] == user].set_index("category")
        cats = sorted(items)
        rows = index.features(int(user), [items[c] for c in cats])
        activity = mine["category_activity_30d"].reindex(cats, fill_value=0.0).to_numpy()
        share = mine["category_share_30d"].reindex(cats, fill_value=0.0).to_numpy()
        assert rows[:, IN_CATEGORY].tolist() == activity.tolist(), user
        assert rows[:, SHARE].tolist() == share.tolist(), user  # exactly, not approximately
        assert (rows[:, TOTAL] == activity.sum()).all(), user
        fresh = dict(zip(cats, activity.tolist(), strict=True))
        assert index.top_categories(int(user), 3, activity=fresh) == index.top_categories(
            int(user), 3
        ), user
        compared += len(cats)
    return compared


def test_the_index_share_is_the_stream_views_value_at_the_cutoff_on_tricky_events() -> None:
    cats = sorted(CATEGORIES)[:3]
    catalogue = _catalogue(cats)
    a, b, c = (cats.index(x) * 3 for x in cats)  # a product of each category
    events = _events(
        [
            # user 1: a tie in activity (2 views of a vs 1 cart of b), an event exactly
            # 30 days before their last one (out of its window), one at the cutoff (out
            # of the index, as of the served value just before it), one after
            (1, c, "purchase", "2026-01-01 09:00"),
            (1, a, "view", "2026-01-10 09:00"),
            (1, a + 1, "view", "2026-01-31 09:00"),
            (1, b, "cart", "2026-01-31 09:00"),  # same instant as the view: one row
            (1, c, "view", "2026-02-01 12:00"),  # at the cutoff
            (1, b, "purchase", "2026-02-03 00:00"),  # after it
            # user 2: every event type in one category, an unknown event type
            (2, b, "view", "2026-01-20 00:00"),
            (2, b + 1, "cart", "2026-01-21 00:00"),
            (2, b + 2, "purchase", "2026-01-22 00:00"),
            (2, a, "wishlist", "2026-01-22 00:00"),
            # user 3: only events at and after the cutoff: nothing as of it
            (3, a, "view", "2026-02-01 12:00"),
            (3, c, "view", "2026-02-02 12:00"),
        ],
        catalogue,
    )
    view_rows = compute_view(product_category_affinity, events)
    index = InteractionIndex.from_events(events, catalogue, as_of=T.to_pydatetime())
    # user 1 at their last event before T (Jan 31 09:00): the Jan 1 purchase is 30 d old
    assert index.user_categories[1] == {cats[0]: 2.0, cats[1]: 2.0}
    assert index.top_categories(1, 2) == [cats[0], cats[1]]  # a tie: by name
    assert index.user_categories[2] == {cats[1]: 6.0}  # view 1 + cart 2 + purchase 3
    assert 3 not in index.user_categories
    assert _assert_parity(index, _served(view_rows, T, inclusive=False)) == 2 * 3  # users 1, 2
    # the point-in-time join at T counts the events at T: the index just after T does too
    later = InteractionIndex.from_events(
        events, catalogue, as_of=(T + pd.Timedelta(microseconds=1)).to_pydatetime()
    )
    assert later.user_categories[1] == {cats[0]: 2.0, cats[1]: 2.0, cats[2]: 1.0}
    assert later.user_categories[3] == {cats[0]: 1.0}
    assert _assert_parity(later, _served(view_rows, T, inclusive=True)) == 3 * 3


def test_the_index_and_the_stream_view_agree_on_the_demo_world_at_every_cutoff() -> None:
    world = EcommerceWorld(WorldConfig(n_users=60, n_products=40, days=50))
    events, catalogue = world.events(), world.products()
    view_rows = compute_view(product_category_affinity, events)
    start = pd.Timestamp(world.config.start)
    compared = 0
    for days in (10, 31, 45):
        cutoff = start + pd.Timedelta(days=days, hours=7)
        index = InteractionIndex.from_events(events, catalogue, as_of=cutoff.to_pydatetime())
        assert index.user_categories  # users with history
        compared += _assert_parity(index, _served(view_rows, cutoff, inclusive=False))
    assert compared > 100


def test_activity_counts_the_trailing_window_of_each_instant_and_shares_sum_to_one() -> None:
    catalogue = _catalogue(["x", "y"])
    events = _events(
        [
            (7, 0, "view", "2026-01-01 00:00"),
            (7, 3, "purchase", "2026-01-15 00:00"),
            (7, 1, "cart", "2026-01-31 00:00"),  # the Jan 1 view is exactly 30 d old: out
        ],
        catalogue,
    )
    wide = category_activity(events, ["x", "y"])
    assert wide[["x", "y"]].to_numpy().tolist() == [[1.0, 0.0], [1.0, 3.0], [2.0, 3.0]]
    shares = category_shares(wide[["x", "y"]].to_numpy())
    assert shares[-1].tolist() == [0.4, 0.6]
    assert category_shares(np.zeros((1, 2))).tolist() == [[0.0, 0.0]]  # no activity
    with pytest.raises(InvalidInputError, match="must be distinct"):
        category_activity(events, ["x", "user_id"])


# --- fresh activity in the ranker ---------------------------------------------------------


def test_fresh_activity_changes_the_users_top_categories_and_share_feature() -> None:
    # user 1 viewed books 0 and 1, then toy 4: books lead in the index
    assert INDEX.top_categories(1, 1) == ["books"]
    fresh = {"books": 0.0, "home": 3.0, "toys": 1.0}  # a burst in home since
    assert INDEX.top_categories(1, 2, activity=fresh) == ["home", "toys"]
    policy = CandidatePolicy(top_categories=1, recent_views=0)
    assert INDEX.candidates(1, policy=policy) == [0, 1, 2, 3]  # books
    assert INDEX.candidates(1, policy=policy, activity=fresh) == [7]  # home
    book, home = INDEX.features(1, [0, 7]), INDEX.features(1, [0, 7], activity=fresh)
    assert book[:, SHARE].tolist() == [2 / 3, 0.0]
    assert home[:, SHARE].tolist() == [0.0, 0.75]
    assert home[:, IN_CATEGORY].tolist() == [0.0, 3.0]
    assert home[:, TOTAL].tolist() == [4.0, 4.0]
    answer = recommend(by_price(), INDEX, 1, k=1, policy=policy, activity=fresh)
    assert answer.items == [7]
    assert answer.features[0, SHARE] == 0.75


def test_empty_fresh_activity_ranks_categories_by_popularity_as_for_a_new_user() -> None:
    assert INDEX.top_categories(1, 3, activity={}) == INDEX.top_categories(99, 3)
    assert INDEX.features(1, [0], activity={})[:, TOTAL].tolist() == [0.0]
    assert set(CATALOGUE["category"]) == set(INDEX.category_items)


def test_an_index_built_at_one_instant_counts_the_window_before_the_users_last_event() -> None:
    catalogue = _catalogue(["x", "y"])
    events = _events(
        [(5, 0, "view", "2026-01-01 00:00"), (5, 3, "view", "2026-01-20 00:00")], catalogue
    )
    # months later the value is still the one of the user's last event, as online
    index = InteractionIndex.from_events(events, catalogue, as_of=datetime(2026, 6, 1, tzinfo=UTC))
    assert index.user_categories[5] == {"x": 1.0, "y": 1.0}
    assert index.as_of - timedelta(days=30) > datetime(2026, 1, 20, tzinfo=UTC)
