"""The demo's shared transform: trailing counts stamped at the end of the day they cover."""

from __future__ import annotations

import pandas as pd

from entai.demo.features import user_category_transform, user_transform


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
