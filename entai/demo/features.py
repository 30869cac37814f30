"""The demo's feature definitions: one transform per view, shared by batch and stream.

``user_category_stats`` counts a user's views, carts and purchases in a category over
the trailing 7 and 30 days; ``user_stats`` does the same across categories. Both are
computed per (key, day) and stamped at the END of the day they cover (midnight
after it), so a training row at time T only ever sees days that had ended by T.

The streaming views are computed per event, stamped at the event's time, so the
stream workers update them online within seconds:

- ``user_recent_views``: a user's last :data:`RECENT_VIEWS` viewed product ids (and
  their categories) of the trailing 30 days, most recent first, as of each view
  (list-valued features);
- ``product_category_affinity``: per user and category, the user's weighted activity
  in the category over the trailing 30 days and its share of the user's activity (a
  row for every category of :data:`~entai.demo.generator.CATEGORIES` at each of the
  user's events, so the shares of one event time sum to 1); the definition is the
  recommender's (:func:`entai.shared.recommend.category_activity`), which the
  serving ranker reads it for;
- ``product_popularity``: per product, its views and purchases over the trailing 1
  and 7 days, as of each of its events.

A per-event window is evaluated when the key has an event: a key without new events
keeps its last value until the view's ttl. Events at one instant are ordered by a
column of their own (product id, category, event type) so that a batch and a stream
computation give the same rows whatever order the events came in.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from entai.demo.generator import CATEGORIES
from entai.shared.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    ValueType,
    trailing_window_sums,
    window_groups,
)
from entai.shared.recommend import category_activity, category_shares

__all__ = [
    "MODEL_FEATURES",
    "RECENT_VIEWS",
    "category",
    "category_affinity_transform",
    "product",
    "product_category_affinity",
    "product_popularity",
    "product_popularity_transform",
    "purchase_propensity",
    "recent_views_transform",
    "user",
    "user_category_stats",
    "user_category_transform",
    "user_recent_views",
    "user_stats",
    "user_transform",
]

_KINDS = ("view", "cart", "purchase")
_WINDOWS = {"7d": 7, "30d": 30}
RECENT_VIEWS = 10
"""How many of a user's latest viewed products ``user_recent_views`` keeps."""
_RECENT_WINDOW = timedelta(days=30)
_TS = "event_timestamp"


def _daily_counts(events: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts of each event kind per key and UTC day, one row per active day."""
    day = events["event_timestamp"].dt.floor("D")
    counts = (
        events.groupby([*(events[k] for k in keys), day.rename("day"), events["event_type"]])
        .size()
        .unstack("event_type", fill_value=0)
        .reindex(columns=list(_KINDS), fill_value=0)
        .reset_index()
    )
    counts.columns.name = None
    return counts


def _trailing(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Trailing-window sums per key, evaluated on each active day."""
    counts = counts.sort_values([*keys, "day"], kind="stable").reset_index(drop=True)
    out = counts[keys].copy()
    out.columns.name = None
    groups = window_groups(counts, keys)
    kinds = counts[list(_KINDS)].to_numpy(dtype=np.float64)
    for suffix, days in _WINDOWS.items():
        rolled = trailing_window_sums(groups, counts["day"], kinds, pd.Timedelta(days=days))
        for i, kind in enumerate(_KINDS):
            out[f"{kind}s_{suffix}"] = rolled[:, i]
    out["event_timestamp"] = counts["day"] + pd.Timedelta(days=1)
    return out


def user_category_transform(events: pd.DataFrame) -> pd.DataFrame:
    """Raw events -> per (user, category, day) trailing activity counts."""
    keys = ["user_id", "category"]
    return _trailing(_daily_counts(events, keys), keys)


def user_transform(events: pd.DataFrame) -> pd.DataFrame:
    """Raw events -> per (user, day) trailing activity counts across categories."""
    keys = ["user_id"]
    stats = _trailing(_daily_counts(events, keys), keys)
    windowed = [f"{kind}s_{suffix}" for suffix in _WINDOWS for kind in _KINDS]
    return stats.rename(columns={c: f"user_{c}" for c in windowed})


def _last_per_instant(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per (keys, event time): the last, which has seen every event of it."""
    return frame.drop_duplicates(subset=[*keys, _TS], keep="last").reset_index(drop=True)


def recent_views_transform(events: pd.DataFrame) -> pd.DataFrame:
    """Raw events -> per (user, view time) the last viewed product ids and categories.

    The lists are most recent first and at most :data:`RECENT_VIEWS` long, of the views
    in the trailing 30 days (the view's ttl, so the stream's history read holds every
    view a list can name); a product viewed twice appears twice. Only ``view`` events
    count.
    """
    views = events.loc[events["event_type"] == "view", ["user_id", "product_id", "category", _TS]]
    views = views.sort_values(["user_id", _TS, "product_id"], kind="stable").reset_index(drop=True)
    users = views["user_id"].to_numpy()
    products = views["product_id"].to_numpy(dtype=np.int64)
    categories = views["category"].to_numpy(dtype=object)
    n = len(views)
    first = np.zeros(n, dtype=np.int64)  # position of each row's user's first view
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if n else first
    first[starts] = starts
    first = np.maximum.accumulate(first) if n else first
    in_window = trailing_window_sums(  # views in the trailing window up to each row (its user's)
        window_groups(views, ["user_id"]), views[_TS], np.ones((n, 1)), pd.Timedelta(_RECENT_WINDOW)
    )[:, 0].astype(np.int64)
    positions = np.arange(n)
    lows = np.maximum(first, np.maximum(positions - RECENT_VIEWS, positions - in_window) + 1)
    out = views[["user_id", _TS]].copy()
    out["recent_product_ids"] = pd.Series(
        [products[lo : i + 1][::-1].tolist() for i, lo in enumerate(lows)], dtype=object
    )
    out["recent_categories"] = pd.Series(
        [categories[lo : i + 1][::-1].tolist() for i, lo in enumerate(lows)], dtype=object
    )
    return _last_per_instant(out, ["user_id"])


def category_affinity_transform(events: pd.DataFrame) -> pd.DataFrame:
    """Raw events -> per (user, category, event time) the user's activity in the
    category over the trailing 30 days and its share of the user's activity.

    Activity and share are :func:`entai.shared.recommend.category_activity` and
    :func:`~entai.shared.recommend.category_shares`, the definition the ranker's
    interaction index uses (events weighted view 1, cart 2, purchase 3), so the value
    served online is the one the ranker was trained on. Every event of the user gives
    a row for each category in :data:`~entai.demo.generator.CATEGORIES` (0 where the
    user had none).
    """
    names = sorted(CATEGORIES)
    wide = category_activity(events, names)
    activity = wide[names].to_numpy()
    return pd.DataFrame(
        {
            "user_id": np.repeat(wide["user_id"].to_numpy(), len(names)),
            _TS: wide[_TS].repeat(len(names)).reset_index(drop=True),
            "category": np.tile(np.array(names, dtype=object), len(wide)),
            "category_share_30d": category_shares(activity).ravel(),
            "category_activity_30d": activity.ravel(),
        }
    )


def product_popularity_transform(events: pd.DataFrame) -> pd.DataFrame:
    """Raw events -> per (product, event time) its views and purchases over the
    trailing 1 and 7 days."""
    ev = events[["product_id", "event_type", _TS]]
    ev = ev.sort_values(["product_id", _TS, "event_type"], kind="stable").reset_index(drop=True)
    kinds = {"views": "view", "purchases": "purchase"}
    counts = np.stack(
        [(ev["event_type"] == kind).to_numpy(dtype=np.float64) for kind in kinds.values()], axis=1
    )
    groups = window_groups(ev, ["product_id"])
    out = ev[["product_id", _TS]].copy()
    for window, days in (("1d", 1), ("7d", 7)):
        rolled = trailing_window_sums(groups, ev[_TS], counts, pd.Timedelta(days=days))
        for i, name in enumerate(kinds):
            out[f"product_{name}_{window}"] = rolled[:, i]
    return _last_per_instant(out, ["product_id"])


user = Entity(name="user", join_keys=("user_id",), value_type=ValueType.INT64)
category = Entity(name="category", join_keys=("category",), value_type=ValueType.STRING)
product = Entity(name="product", join_keys=("product_id",), value_type=ValueType.INT64)

_UC_FIELDS = tuple(
    Field(name=f"{kind}s_{suffix}", dtype=ValueType.FLOAT64)
    for suffix in _WINDOWS
    for kind in _KINDS
)
user_category_stats = FeatureView(
    name="user_category_stats",
    entities=(user, category),
    schema=_UC_FIELDS,
    source="events",
    ttl=timedelta(days=30),
    transform=user_category_transform,
    owner="demo@entai.local",
    tags={"domain": "ecommerce"},
)
user_stats = FeatureView(
    name="user_stats",
    entities=(user,),
    schema=tuple(Field(name=f"user_{f.name}", dtype=ValueType.FLOAT64) for f in _UC_FIELDS),
    source="events",
    ttl=timedelta(days=30),
    transform=user_transform,
    owner="demo@entai.local",
    tags={"domain": "ecommerce"},
)
user_recent_views = FeatureView(
    name="user_recent_views",
    entities=(user,),
    schema=(
        Field(
            name="recent_product_ids",
            dtype=ValueType.LIST_INT64,
            description=f"The user's last {RECENT_VIEWS} viewed product ids, most recent first",
        ),
        Field(
            name="recent_categories",
            dtype=ValueType.LIST_STRING,
            description="The categories of those products, in the same order",
        ),
    ),
    source="events",
    ttl=_RECENT_WINDOW,
    transform=recent_views_transform,
    owner="demo@entai.local",
    tags={"domain": "ecommerce", "freshness": "stream"},
)
product_category_affinity = FeatureView(
    name="product_category_affinity",
    entities=(user, category),
    schema=(
        Field(
            name="category_share_30d",
            dtype=ValueType.FLOAT64,
            description="The category's share of the user's activity of the trailing 30 days",
        ),
        Field(
            name="category_activity_30d",
            dtype=ValueType.FLOAT64,
            description="The user's events in the category of the trailing 30 days, "
            "weighted view 1, cart 2, purchase 3",
        ),
    ),
    source="events",
    ttl=timedelta(days=30),
    transform=category_affinity_transform,
    owner="demo@entai.local",
    tags={"domain": "ecommerce", "freshness": "stream"},
    description="Share of the user's (weighted) activity of the trailing 30 days in the category",
)
product_popularity = FeatureView(
    name="product_popularity",
    entities=(product,),
    schema=tuple(
        Field(name=f"product_{kind}_{window}", dtype=ValueType.FLOAT64)
        for window in ("1d", "7d")
        for kind in ("views", "purchases")
    ),
    source="events",
    ttl=timedelta(days=7),
    transform=product_popularity_transform,
    owner="demo@entai.local",
    tags={"domain": "ecommerce", "freshness": "stream"},
    description="Views and purchases of the product over the trailing 1 and 7 days",
)
purchase_propensity = FeatureService(
    name="purchase_propensity",
    features=(user_category_stats, user_stats),
    description="Will this user buy in this category within 7 days?",
)

MODEL_FEATURES: tuple[str, ...] = tuple(
    f.name for view in (user_category_stats, user_stats) for f in view.schema
)
