"""The demo's feature definitions: one transform per view, shared by batch and stream.

``user_category_stats`` counts a user's views, carts and purchases in a category over
the trailing 7 and 30 days; ``user_stats`` does the same across categories. Both are
computed per (key, day) and stamped at the END of the day they cover (midnight
after it), so a training row at time T only ever sees days that had ended by T.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from entai.shared.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    ValueType,
)

__all__ = [
    "MODEL_FEATURES",
    "category",
    "purchase_propensity",
    "user",
    "user_category_stats",
    "user_category_transform",
    "user_stats",
    "user_transform",
]

_KINDS = ("view", "cart", "purchase")
_WINDOWS = {"7d": 7, "30d": 30}


def _daily_counts(events: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts of each event kind per key and UTC day, one row per active day."""
    day = events["event_timestamp"].dt.floor("D")
    counts = (
        pd.crosstab(
            [events[k] for k in keys] + [day.rename("day")],
            events["event_type"],
        )
        .reindex(columns=list(_KINDS), fill_value=0)
        .reset_index()
    )
    counts.columns.name = None
    return counts


def _trailing(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Trailing-window sums per key, evaluated on each active day (vectorised rolling)."""
    counts = counts.sort_values([*keys, "day"], kind="stable").reset_index(drop=True)
    out = counts[keys].copy()
    out.columns.name = None
    grouped = counts.set_index("day").groupby(keys, sort=False)[list(_KINDS)]
    for suffix, days in _WINDOWS.items():
        rolled = grouped.rolling(f"{days}D").sum().reset_index(drop=True)
        for kind in _KINDS:
            out[f"{kind}s_{suffix}"] = rolled[kind].to_numpy(dtype=np.float64)
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


user = Entity(name="user", join_keys=("user_id",), value_type=ValueType.INT64)
category = Entity(name="category", join_keys=("category",), value_type=ValueType.STRING)

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
purchase_propensity = FeatureService(
    name="purchase_propensity",
    features=(user_category_stats, user_stats),
    description="Will this user buy in this category within 7 days?",
)

MODEL_FEATURES: tuple[str, ...] = tuple(
    f.name for view in (user_category_stats, user_stats) for f in view.schema
)
