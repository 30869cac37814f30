"""The demo's shared transform: trailing counts stamped at the end of the day they cover."""

from __future__ import annotations

import numpy as np
import pandas as pd

from entai.demo.features import (
    RECENT_VIEWS,
    product_category_affinity,
    product_popularity,
    user_category_transform,
    user_recent_views,
    user_transform,
)
from entai.demo.generator import CATEGORIES, EcommerceWorld, WorldConfig
from entai.shared.features import compute_view, trailing_window_sums, window_groups


def _events(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "event_timestamp": pd.to_datetime([r[3] for r in rows], utc=True),
        }
    )


def test_trailing_windows_are_exact_and_stamped_after_the_day() -> None:
    events = _events(
        [
            (1, "books", "view", "2026-01-01 10:00"),
            (1, "books", "view", "2026-01-01 23:59"),
            (1, "books", "purchase", "2026-01-05 09:00"),
            (1, "books", "view", "2026-01-09 12:00"),  # 8 days after Jan 1: out of the 7d window
            (2, "toys", "cart", "2026-01-02 00:00"),
        ]
    )
    out = user_category_transform(events).set_index(["user_id", "category", "event_timestamp"])
    jan2 = out.loc[(1, "books", pd.Timestamp("2026-01-02", tz="UTC"))]
    assert jan2["views_7d"] == 2 and jan2["purchases_7d"] == 0
    jan6 = out.loc[(1, "books", pd.Timestamp("2026-01-06", tz="UTC"))]
    assert jan6["views_7d"] == 2 and jan6["purchases_7d"] == 1
    jan10 = out.loc[(1, "books", pd.Timestamp("2026-01-10", tz="UTC"))]
    assert jan10["views_7d"] == 1, "Jan 1 views left the 7-day window"
    assert jan10["views_30d"] == 3 and jan10["purchases_30d"] == 1
    assert out.loc[(2, "toys", pd.Timestamp("2026-01-03", tz="UTC"))]["carts_7d"] == 1
    # no feature row is stamped before the end of the day it summarises
    assert (out.index.get_level_values("event_timestamp") > events["event_timestamp"].min()).all()


def test_user_level_view_sums_across_categories() -> None:
    events = _events(
        [
            (1, "books", "view", "2026-01-01 10:00"),
            (1, "toys", "view", "2026-01-01 11:00"),
            (1, "toys", "purchase", "2026-01-01 12:00"),
        ]
    )
    out = user_transform(events)
    assert list(out["user_id"]) == [1]
    assert out["user_views_7d"].iloc[0] == 2
    assert out["user_purchases_30d"].iloc[0] == 1


def _stream_events(rows: list[tuple[int, int, str, str, str]]) -> pd.DataFrame:
    """(user, product, category, event_type, time) rows as raw demo events."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "product_id": [r[1] for r in rows],
            "category": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "event_timestamp": pd.to_datetime([r[4] for r in rows], utc=True),
        }
    )


def _row(frame: pd.DataFrame, **where: object) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    if "product_id" in where and "product_id" not in frame.columns:  # recent views
        last = frame["recent_product_ids"].map(lambda ids: ids[0])
        mask &= last == where.pop("product_id")
    for column, value in where.items():
        mask &= frame[column] == (pd.Timestamp(value) if column == "event_timestamp" else value)
    (position,) = mask.to_numpy().nonzero()[0]
    return frame.iloc[position]


def test_recent_views_keep_the_last_ten_views_most_recent_first() -> None:
    rows = [(1, 100 + i, "books", "view", f"2026-01-01 10:{i:02d}+00:00") for i in range(12)]
    rows += [
        (1, 999, "toys", "purchase", "2026-01-01 11:00+00:00"),  # not a view: ignored
        (2, 7, "toys", "view", "2026-01-01 10:05+00:00"),
        (2, 7, "toys", "view", "2026-01-01 10:06+00:00"),  # repeats are kept
        (2, 9, "home", "view", "2026-01-01 10:06+00:00"),  # same instant: one row, both
        (2, 8, "home", "view", "2026-01-31 10:06+00:00"),  # the others are 30 d old: out
    ]
    out = compute_view(user_recent_views, _stream_events(rows))
    assert len(out) == 12 + 3
    first = _row(out, user_id=1, event_timestamp="2026-01-01 10:00+00:00")
    assert first["recent_product_ids"] == [100]
    last = _row(out, user_id=1, event_timestamp="2026-01-01 10:11+00:00")
    assert last["recent_product_ids"] == [111, 110, 109, 108, 107, 106, 105, 104, 103, 102]
    assert last["recent_categories"] == ["books"] * RECENT_VIEWS
    tie = _row(out, user_id=2, event_timestamp="2026-01-01 10:06+00:00")
    assert tie["recent_product_ids"] == [9, 7, 7]  # ties ordered by product id
    assert tie["recent_categories"] == ["home", "toys", "toys"]
    assert _row(out, user_id=2, product_id=8)["recent_product_ids"] == [8]


def test_category_affinity_is_the_weighted_share_of_the_trailing_30_days() -> None:
    events = _stream_events(
        [
            (1, 1, "books", "view", "2026-01-01 10:00+00:00"),
            (1, 2, "books", "cart", "2026-01-20 10:00+00:00"),
            (1, 3, "toys", "view", "2026-01-31 10:00+00:00"),  # Jan 1 is exactly 30 d old: out
            (2, 4, "home", "view", "2026-01-05 00:00+00:00"),
        ]
    )
    out = compute_view(product_category_affinity, events)
    assert len(out) == 4 * len(CATEGORIES)
    at = "2026-01-31 10:00+00:00"
    books = _row(out, user_id=1, category="books", event_timestamp=at)
    assert (books["category_activity_30d"], books["category_share_30d"]) == (2, 2 / 3)  # a cart
    assert _row(out, user_id=1, category="toys", event_timestamp=at)["category_activity_30d"] == 1
    assert _row(out, user_id=1, category="home", event_timestamp=at)["category_share_30d"] == 0
    shares = out.groupby(["user_id", "event_timestamp"])["category_share_30d"].sum()
    assert (shares == 1.0).all()


def test_product_popularity_counts_views_and_purchases_in_their_windows() -> None:
    events = _stream_events(
        [
            (1, 5, "books", "view", "2026-01-01 10:00+00:00"),
            (2, 5, "books", "purchase", "2026-01-01 12:00+00:00"),
            (3, 5, "books", "view", "2026-01-02 10:00+00:00"),  # the first view is 1 d old
            (3, 5, "books", "cart", "2026-01-08 12:00+00:00"),  # the purchase is 7 d old
            (4, 6, "toys", "view", "2026-01-08 11:00+00:00"),
        ]
    )
    out = compute_view(product_popularity, events)
    day2 = _row(out, product_id=5, event_timestamp="2026-01-02 10:00+00:00")
    assert (day2["product_views_1d"], day2["product_purchases_1d"]) == (1, 1)
    assert (day2["product_views_7d"], day2["product_purchases_7d"]) == (2, 1)
    day8 = _row(out, product_id=5, event_timestamp="2026-01-08 12:00+00:00")
    assert (day8["product_views_7d"], day8["product_purchases_7d"]) == (1, 0)
    assert _row(out, product_id=6)["product_views_1d"] == 1


def test_stream_views_give_the_same_rows_whatever_the_event_order() -> None:
    events = EcommerceWorld(WorldConfig(n_users=40, n_products=30, days=45)).events()
    shuffled = events.sample(frac=1.0, random_state=3)
    for view in (user_recent_views, product_category_affinity, product_popularity):
        keys = [*view.join_keys, "event_timestamp"]
        a = compute_view(view, events).sort_values(keys).reset_index(drop=True)
        b = compute_view(view, shuffled).sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        # The stream recomputes from the history within the view's ttl: same rows.
        assert view.ttl is not None
        cut = events["event_timestamp"].iloc[len(events) // 2]
        recent = events[events["event_timestamp"] >= cut - view.ttl]
        streamed = compute_view(view, recent)
        streamed = streamed[streamed["event_timestamp"] >= cut].sort_values(keys)
        whole = a[a["event_timestamp"] >= cut]
        pd.testing.assert_frame_equal(streamed.reset_index(drop=True), whole.reset_index(drop=True))


def test_window_sums_equal_grouped_rolling_on_ties_disorder_and_window_edges() -> None:
    """The prefix-sum windows against pandas' grouped time rolling (what the views used
    before): times on whole hours, so many rows tie and many sit exactly one window
    before another (excluded: the window is ``(t - w, t]``), input shuffled."""
    rng = np.random.default_rng(3)
    n = 3_000
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n),
            "category": rng.choice(["a", "b", "c"], n),
            "ts": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 24 * 20, n), unit="h"),
            "x": rng.integers(0, 3, n).astype(np.float64),
            "y": rng.random(n).round(2),
        }
    )
    for keys in (["user_id"], ["user_id", "category"]):
        ordered = frame.sort_values([*keys, "ts"], kind="stable").reset_index(drop=True)
        for window in ("1D", "7D", "30D"):
            want = (
                ordered.set_index("ts")
                .groupby(keys, sort=False)[["x", "y"]]
                .rolling(window)
                .sum()
                .to_numpy()
            )
            got = trailing_window_sums(
                window_groups(ordered, keys),
                ordered["ts"],
                ordered[["x", "y"]].to_numpy(),
                pd.Timedelta(window),
            )
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
            assert (got[:, 0] == want[:, 0]).all()  # counts exactly
    one = trailing_window_sums(
        np.zeros(1, np.int64), frame["ts"][:1], np.ones((1, 1)), pd.Timedelta("1D")
    )
    assert one.tolist() == [[1.0]]
    assert trailing_window_sums(
        np.zeros(0, np.int64), frame["ts"][:0], np.ones((0, 2)), pd.Timedelta("1D")
    ).shape == (0, 2)
