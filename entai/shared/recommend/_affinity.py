"""A user's category activity: the one definition training and serving share.

A user's *activity* in a category at an instant ``t`` is the weighted count of the
user's events in that category dated in ``(t - 30 days, t]`` (:data:`EVENT_WEIGHTS`:
view 1, cart 2, purchase 3); the *share* of a category is its activity over the sum
of the user's activity across the categories counted (0 when that sum is 0). Like
every per-event window, it is evaluated at the user's events: between two events the
value is the one of the last (:func:`category_activity`).

Two computations use it and must agree:

- the interaction index, as of a training cutoff, takes each user's row at their last
  event before the cutoff (:meth:`~entai.shared.recommend.InteractionIndex.from_events`);
- a stream feature view (the demo's ``product_category_affinity``) emits every row,
  so its online value is the row of the user's latest event, which the serving ranker
  reads in place of the index's stale one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import numpy as np
import pandas as pd

from entai.shared.core import InvalidInputError
from entai.shared.features import trailing_window_sums, window_groups

__all__ = [
    "AFFINITY_WINDOW",
    "EVENT_WEIGHTS",
    "category_activity",
    "category_shares",
]

EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "cart": 2.0, "purchase": 3.0}
"""How much one event of each type counts towards popularity and category activity."""

AFFINITY_WINDOW = timedelta(days=30)
"""The trailing window of a user's category activity."""

_TS = "event_timestamp"
_KEYS = ("user_id", _TS)


def category_activity(events: pd.DataFrame, categories: Sequence[str]) -> pd.DataFrame:
    """Per (user, event instant): the user's activity in each of ``categories``.

    Args:
        events: user_id, category, event_type, event_timestamp (tz-aware). Events of
            another category or event type still give their instant a row but add
            nothing.
        categories: The categories counted (the columns, in this order); names other
            than ``user_id`` and ``event_timestamp``.

    Returns:
        user_id, event_timestamp and one float column per category: one row per user
        and instant at which the user had an event (all of the instant's events
        counted), sorted by user then time.

    Raises:
        InvalidInputError: a missing column, or a category named like a key column.
    """
    missing = [c for c in ("user_id", "category", "event_type", _TS) if c not in events.columns]
    if missing:
        raise InvalidInputError(
            f"events lack column(s) {missing}", details={"field": "events", "missing": missing}
        )
    names = list(categories)
    clash = sorted(set(names) & set(_KEYS))
    if clash or len(set(names)) != len(names):
        raise InvalidInputError(
            f"categories must be distinct and not named {list(_KEYS)}: {names}",
            details={"field": "categories"},
        )
    ev = events[["user_id", "category", "event_type", _TS]]
    ev = ev.sort_values(["user_id", _TS], kind="stable").reset_index(drop=True)
    weight = ev["event_type"].map(EVENT_WEIGHTS).fillna(0.0).to_numpy(dtype=np.float64)
    column = pd.Index(names).get_indexer(ev["category"])  # -1: not counted
    counted = np.flatnonzero(column >= 0)
    values = np.zeros((len(ev), len(names)), dtype=np.float64)
    values[counted, column[counted]] = weight[counted]
    sums = trailing_window_sums(
        window_groups(ev, ["user_id"]), ev[_TS], values, pd.Timedelta(AFFINITY_WINDOW)
    )
    out = pd.DataFrame(sums, columns=names)
    out.insert(0, "user_id", ev["user_id"].to_numpy())
    out.insert(1, _TS, ev[_TS])
    # the last row of an instant has seen all of its events
    return out.drop_duplicates(subset=list(_KEYS), keep="last").reset_index(drop=True)


def category_shares(activity: np.ndarray) -> np.ndarray:
    """Each row's activity over its sum (rows x categories); 0 where a row sums to 0."""
    values = np.asarray(activity, dtype=np.float64)
    totals = values.sum(axis=-1, keepdims=True)
    shares: np.ndarray = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    return shares
