"""The interaction index: what candidate generation and the ranker's features read.

An :class:`InteractionIndex` is built from a user-event log (views, carts, purchases)
and a product catalogue *as of* an instant: only events strictly before it count, so
an index built at a training cutoff sees exactly what serving would have seen then
(point-in-time correct by construction). It holds

- each item's popularity (weighted interactions over a trailing window) and, per
  category, the items by popularity;
- co-views: items viewed by the same user on the same UTC day, strongest first;
- each user's most recent views and activity per category (the trailing 30 days as
  of their last event before the instant: :func:`category_activity`, the definition
  the stream feature of a user's category activity shares).

Candidates for a user are the popular items of the user's top categories plus the
items co-viewed with the user's recent views (:meth:`InteractionIndex.candidates`);
:meth:`InteractionIndex.features` gives the ranker one row of :data:`RANKING_FEATURES`
per candidate. The index round-trips through JSON (:meth:`to_dict`), which is how it
travels with a ranker version to the serving replicas.

When the feature store serves a list feature of the user's recent views, a request
can pass it as ``history``: it then stands in for the index's ``user_recent`` of that
user (it is fresher, and counting both would count the same views twice);
:func:`merge_recent_views` puts the caller's own session views in front of it.
Likewise the user's category activity, when the store serves it (same definition,
:func:`category_activity`), can be passed as ``activity``: it stands in for the
index's ``user_categories`` of that user, in the top categories and the features.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from entai.shared.core import InvalidInputError
from entai.shared.recommend._affinity import EVENT_WEIGHTS, category_activity

__all__ = [
    "EVENT_WEIGHTS",
    "INDEX_ARTIFACT",
    "RANKING_FEATURES",
    "CandidatePolicy",
    "IndexPolicy",
    "InteractionIndex",
    "merge_recent_views",
]

INDEX_ARTIFACT = "interaction_index.json"
"""Where a ranker's training run keeps the index its serving replicas load."""

RANKING_FEATURES: tuple[str, ...] = (
    "item_popularity",
    "item_category_rank",
    "user_category_share",
    "user_category_events",
    "co_view_score",
    "recent_views_of_item",
    "price",
    "user_events",
)
"""The ranker's inputs, one row per (user, candidate item), in this order."""

_SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class IndexPolicy:
    """How an index is built.

    Attributes:
        popularity_days: Trailing window of item popularity.
        recent_views: Recent views kept per user.
        co_view_neighbours: Co-viewed items kept per item.
    """

    popularity_days: int = 30
    recent_views: int = 20
    co_view_neighbours: int = 20


@dataclass(frozen=True, kw_only=True)
class CandidatePolicy:
    """How many candidates each source contributes.

    Attributes:
        top_categories: The user's categories (by activity) whose popular items count.
        per_category: Popular items taken from each of those categories.
        recent_views: Recent views whose co-viewed items count.
        per_recent_view: Co-viewed items taken per recent view.
    """

    top_categories: int = 3
    per_category: int = 15
    recent_views: int = 5
    per_recent_view: int = 5


@dataclass(kw_only=True)
class InteractionIndex:
    """Popularity, co-views and user histories as of one instant.

    Attributes:
        as_of: Events strictly before this instant were counted.
        item_category: Category of every catalogue item.
        item_price: Price of every catalogue item.
        item_popularity: Weighted interactions per item in the popularity window.
        category_items: Per category, its items by popularity (most popular first;
            items without interactions follow, by id).
        co_views: Per item, ``[(other item, co-view count)]`` strongest first.
        user_recent: Per user, recently viewed items, most recent first (repeats kept).
        user_categories: Per user, activity per category as of the user's last event
            before ``as_of`` (:func:`~entai.shared.recommend.category_activity`);
            categories without activity are left out.
    """

    as_of: datetime
    item_category: dict[int, str]
    item_price: dict[int, float]
    item_popularity: dict[int, float]
    category_items: dict[str, list[int]]
    co_views: dict[int, list[tuple[int, float]]]
    user_recent: dict[int, list[int]]
    user_categories: dict[int, dict[str, float]]
    _rank_in_category: dict[int, float] = field(init=False, repr=False)
    _popular: list[int] = field(init=False, repr=False)
    _category_order: list[str] = field(init=False, repr=False)
    categories: list[str] = field(init=False, repr=False)
    """The catalogue's categories, by name."""

    def __post_init__(self) -> None:
        self._rank_in_category = {
            item: rank / max(len(items), 1)
            for items in self.category_items.values()
            for rank, item in enumerate(items)
        }
        self._popular = sorted(
            self.item_category, key=lambda i: (-self.item_popularity.get(i, 0.0), i)
        )
        totals: dict[str, float] = dict.fromkeys(self.category_items, 0.0)
        for item, pop in self.item_popularity.items():
            totals[self.item_category[item]] += pop
        self._category_order = sorted(totals, key=lambda c: (-totals[c], c))
        self.categories = sorted(self.category_items)

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        catalogue: pd.DataFrame,
        *,
        as_of: datetime,
        policy: IndexPolicy | None = None,
    ) -> InteractionIndex:
        """Build the index from events before ``as_of``.

        Args:
            events: user_id, product_id, event_type, event_timestamp (tz-aware UTC).
            catalogue: product_id, category, price, one row per product.
            as_of: Only events strictly before this instant count.
            policy: Window and sizes.

        Raises:
            InvalidInputError: a missing column, or events about unknown products.
        """
        policy = policy or IndexPolicy()
        _require(events, ("user_id", "product_id", "event_type", "event_timestamp"), "events")
        _require(catalogue, ("product_id", "category", "price"), "catalogue")
        cut = pd.Timestamp(as_of)
        past = events.loc[
            events["event_timestamp"] < cut,
            ["user_id", "product_id", "event_type", "event_timestamp"],
        ]
        item_category = dict(
            zip(catalogue["product_id"].astype(int), catalogue["category"].astype(str), strict=True)
        )
        unknown = set(past["product_id"].unique()) - set(item_category)
        if unknown:
            raise InvalidInputError(
                f"{len(unknown)} event product(s) are not in the catalogue",
                details={"field": "product_id", "example": int(min(unknown))},
            )
        weight = past["event_type"].map(EVENT_WEIGHTS).fillna(0.0)
        category = past["product_id"].map(item_category)
        recent = past["event_timestamp"] >= cut - pd.Timedelta(days=policy.popularity_days)
        popularity = weight[recent].groupby(past.loc[recent, "product_id"]).sum()
        item_popularity = {int(i): float(w) for i, w in popularity.items() if w > 0}
        category_items: dict[str, list[int]] = {}
        for item in sorted(item_category, key=lambda i: (-item_popularity.get(i, 0.0), i)):
            category_items.setdefault(item_category[item], []).append(item)
        names = sorted(set(item_category.values()))
        activity = category_activity(past.assign(category=category), names)
        last = activity.drop_duplicates(subset="user_id", keep="last")
        user_categories: dict[int, dict[str, float]] = {}
        for user, row in zip(last["user_id"], last[names].to_numpy(), strict=True):
            user_categories[int(user)] = {
                c: float(w) for c, w in zip(names, row, strict=True) if w > 0
            }
        views = past[past["event_type"] == "view"]
        return cls(
            as_of=as_of,
            item_category=item_category,
            item_price=dict(
                zip(
                    catalogue["product_id"].astype(int),
                    catalogue["price"].astype(float),
                    strict=True,
                )
            ),
            item_popularity=item_popularity,
            category_items=category_items,
            co_views=_co_views(views, policy.co_view_neighbours),
            user_recent=_recent(views, policy.recent_views),
            user_categories=user_categories,
        )

    def popular(self, k: int, *, exclude: Iterable[int] = ()) -> list[int]:
        """The ``k`` most popular items overall (the popularity baseline's answer)."""
        skip = set(exclude)
        return [i for i in self._popular if i not in skip][:k]

    def activity(self, user: int, fresh: Mapping[str, float] | None = None) -> Mapping[str, float]:
        """The user's activity per category: ``fresh`` (from a fresher source, e.g. the
        online store) when it is given, else the index's."""
        return self.user_categories.get(user, {}) if fresh is None else fresh

    def top_categories(
        self, user: int, n: int, *, activity: Mapping[str, float] | None = None
    ) -> list[str]:
        """The user's ``n`` most active categories, completed by overall popularity
        (``activity``: see :meth:`activity`; categories without activity do not count)."""
        mine = self.activity(user, activity)
        ranked = sorted((c for c in mine if mine[c] > 0), key=lambda c: (-mine[c], c))
        ranked += [c for c in self._category_order if c not in ranked]
        return ranked[:n]

    def recent(
        self, user: int, session: Sequence[int] = (), *, history: Sequence[int] | None = None
    ) -> list[int]:
        """The user's recent views, most recent first: ``session`` (views the caller
        saw after the index was built, newest first) before the indexed ones, or before
        ``history`` (the user's views from a fresher source, e.g. the online store,
        most recent first) when it is given."""
        older = self.user_recent.get(user, ()) if history is None else history
        return [*session, *older]

    def candidates(
        self,
        user: int,
        *,
        policy: CandidatePolicy | None = None,
        exclude: Iterable[int] = (),
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
        activity: Mapping[str, float] | None = None,
    ) -> list[int]:
        """Popular items of the user's top categories, then items co-viewed with recent views.

        Each item appears once, in the order first found; excluded items never.
        A user without history gets the popular items of the most popular categories.
        ``session`` views (newest first) count as the most recent views; ``history``
        (see :meth:`recent`) replaces the indexed ones, ``activity`` (see
        :meth:`activity`) the indexed category activity.
        """
        policy = policy or CandidatePolicy()
        skip = set(exclude)
        found: dict[int, None] = {}
        for cat in self.top_categories(user, policy.top_categories, activity=activity):
            taken = 0
            for item in self.category_items.get(cat, ()):
                if taken == policy.per_category:
                    break
                if item not in skip:
                    found[item] = None
                    taken += 1
        recent = list(dict.fromkeys(self.recent(user, session, history=history)))
        recent = recent[: policy.recent_views]
        for viewed in recent:
            taken = 0
            for item, _ in self.co_views.get(viewed, ()):
                if taken == policy.per_recent_view:
                    break
                if item not in skip:
                    found[item] = None
                    taken += 1
        return list(found)

    def features(
        self,
        user: int,
        items: Sequence[int],
        *,
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
        activity: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """One row of :data:`RANKING_FEATURES` per item, for ``user`` (and ``session``
        views; ``history`` replaces the indexed views, see :meth:`recent`; ``activity``
        the indexed category activity, see :meth:`activity`).

        Raises:
            InvalidInputError: an item that is not in the catalogue.
        """
        mine = self.activity(user, activity)
        total = sum(mine.values())
        recent_counts = Counter(self.recent(user, session, history=history))
        co_score: dict[int, float] = {}
        for viewed in recent_counts:
            for other, count in self.co_views.get(viewed, ()):
                co_score[other] = co_score.get(other, 0.0) + count
        try:
            cats = [self.item_category[item] for item in items]
        except KeyError as exc:
            raise InvalidInputError(
                f"item {exc.args[0]} is not in the catalogue", details={"field": "items"}
            ) from None
        in_cat = np.array([mine.get(c, 0.0) for c in cats], dtype=np.float64)
        popularity = self.item_popularity
        out = np.column_stack(
            [
                np.log1p(np.array([popularity.get(i, 0.0) for i in items], dtype=np.float64)),
                np.array([self._rank_in_category[i] for i in items], dtype=np.float64),
                in_cat / total if total else np.zeros(len(items)),
                in_cat,
                np.array([co_score.get(i, 0.0) for i in items], dtype=np.float64),
                np.array([recent_counts.get(i, 0) for i in items], dtype=np.float64),
                np.array([self.item_price[i] for i in items], dtype=np.float64),
                np.full(len(items), total, dtype=np.float64),
            ]
        )
        return out.reshape(len(items), len(RANKING_FEATURES))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (keys become strings); :meth:`from_dict` reads it back."""
        return {
            "schema": _SCHEMA,
            "as_of": self.as_of.isoformat(),
            "item_category": {str(k): v for k, v in self.item_category.items()},
            "item_price": {str(k): v for k, v in self.item_price.items()},
            "item_popularity": {str(k): v for k, v in self.item_popularity.items()},
            "category_items": self.category_items,
            "co_views": {str(k): [[i, c] for i, c in v] for k, v in self.co_views.items()},
            "user_recent": {str(k): v for k, v in self.user_recent.items()},
            "user_categories": {str(k): v for k, v in self.user_categories.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InteractionIndex:
        """The index :meth:`to_dict` wrote.

        Raises:
            InvalidInputError: another schema version.
        """
        if data.get("schema") != _SCHEMA:
            raise InvalidInputError(
                f"interaction index schema {data.get('schema')!r} is not {_SCHEMA}",
                details={"field": "schema"},
            )
        return cls(
            as_of=datetime.fromisoformat(data["as_of"]),
            item_category={int(k): str(v) for k, v in data["item_category"].items()},
            item_price={int(k): float(v) for k, v in data["item_price"].items()},
            item_popularity={int(k): float(v) for k, v in data["item_popularity"].items()},
            category_items={str(k): [int(i) for i in v] for k, v in data["category_items"].items()},
            co_views={
                int(k): [(int(i), float(c)) for i, c in v] for k, v in data["co_views"].items()
            },
            user_recent={int(k): [int(i) for i in v] for k, v in data["user_recent"].items()},
            user_categories={
                int(k): {str(c): float(w) for c, w in v.items()}
                for k, v in data["user_categories"].items()
            },
        )


def merge_recent_views(context: Sequence[int], stored: Sequence[int]) -> list[int]:
    """The views older than ``context`` in ``stored``: ``stored`` without the items
    ``context`` names.

    ``context`` is the front end's session (newest first), ``stored`` the user's recent
    views as the online store keeps them (newest first); the session's views reach the
    store too, so an item in both is one view, counted once, from the context (pass the
    context as ``session`` and the result as ``history``). Repeats within ``stored``
    are separate views and stay, as in the index.
    """
    seen = set(context)
    return [item for item in stored if item not in seen]


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(
            f"{what} lack column(s) {missing}", details={"field": what, "missing": missing}
        )


def _co_views(views: pd.DataFrame, keep: int) -> dict[int, list[tuple[int, float]]]:
    """Items viewed by the same user on the same UTC day, counted once per user-day."""
    sessions = pd.DataFrame(
        {
            "user": views["user_id"].astype(np.int64),
            "day": views["event_timestamp"].dt.floor("D"),
            "item": views["product_id"].astype(np.int64),
        }
    ).drop_duplicates()
    pairs = sessions.merge(sessions, on=["user", "day"], suffixes=("", "_other"))
    pairs = pairs[pairs["item"] != pairs["item_other"]]
    counts = pairs.groupby(["item", "item_other"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n", "item_other"], ascending=[True, False, True])
    counts = counts.groupby("item", sort=False).head(keep)
    out: dict[int, list[tuple[int, float]]] = {}
    for item, other, n in counts.itertuples(index=False):
        out.setdefault(int(item), []).append((int(other), float(n)))
    return out


def _recent(views: pd.DataFrame, keep: int) -> dict[int, list[int]]:
    """Each user's last ``keep`` viewed items, most recent first."""
    ordered = views.sort_values("event_timestamp", ascending=False, kind="stable")
    last = ordered.groupby("user_id", sort=False).head(keep)
    out: dict[int, list[int]] = {}
    for user, item in zip(last["user_id"], last["product_id"], strict=True):
        out.setdefault(int(user), []).append(int(item))
    return out
