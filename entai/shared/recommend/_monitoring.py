"""Live quality of a ranker per time window: CTR, precision, recall and NDCG at k.

The inputs are the two logs serving writes: impressions (request_id, item_id, rank,
ts: one row per item shown) and interactions (request_id, item_id, kind: ``click``
or ``purchase``). Each request falls in the window of its impressions' time. In a
window, CTR is the share of impressions that got a click or a purchase; precision,
recall and NDCG at k are the means over the requests that received any feedback
(the relevant items of a request are what its user clicked or bought, graded click 1,
purchase 2; an interaction with an item the request did not show still counts
against recall).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from entai.shared.core import InvalidInputError
from entai.shared.recommend._metrics import mean_ranking_metrics

__all__ = [
    "INTERACTION_GAINS",
    "RankingWindow",
    "check_ranking_logs",
    "ranking_windows",
    "relevant_items",
    "windowed_impressions",
]

INTERACTION_GAINS = {"click": 1.0, "purchase": 2.0}
"""The gain of each kind of feedback (the best one per item counts)."""


@dataclass(frozen=True)
class RankingWindow:
    """One window of a ranker's live quality.

    Attributes:
        start_s: Window start (epoch seconds).
        end_s: Window end (epoch seconds).
        requests: Requests served in the window.
        impressions: Items shown.
        clicked: Impressions that got a click or a purchase.
        ctr: ``clicked / impressions``.
        k: The cut-off of the ranking metrics.
        lists: Requests with feedback (the ranking metrics' denominator).
        precision: Mean precision@k over those requests (None without any).
        recall: Mean recall@k (None without any).
        ndcg: Mean NDCG@k (None without any).
    """

    start_s: float
    end_s: float
    requests: int
    impressions: int
    clicked: int
    ctr: float
    k: int
    lists: int
    precision: float | None
    recall: float | None
    ndcg: float | None

    def as_dict(self) -> dict[str, Any]:
        """The window as plain JSON values."""
        return asdict(self)


def check_ranking_logs(impressions: pd.DataFrame, interactions: pd.DataFrame) -> None:
    """Fail when the impression or interaction log lacks a column the join needs.

    Raises:
        InvalidInputError: naming the log and its missing columns.
    """
    for frame, columns, what in (
        (impressions, ("request_id", "item_id", "rank", "ts"), "impressions"),
        (interactions, ("request_id", "item_id", "kind"), "interactions"),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"{what} lack column(s) {missing}", details={"field": what, "missing": missing}
            )


def relevant_items(interactions: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Per request id, the gain of every item it got feedback on (the best kind counts)."""
    gains = (
        interactions.assign(gain=interactions["kind"].map(INTERACTION_GAINS).fillna(0.0))
        .groupby(["request_id", "item_id"])["gain"]
        .max()
    )
    relevant: dict[str, dict[int, float]] = {}
    for (rid, item), gain in gains.items():
        if gain > 0:
            relevant.setdefault(str(rid), {})[int(item)] = float(gain)
    return relevant


def windowed_impressions(impressions: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """The impressions with ``window`` (``ts // window_s`` of the request's first impression:
    all of a request's items fall in one window) and ``request_id`` as strings.

    Raises:
        InvalidInputError: ``window_s`` <= 0.
    """
    if window_s <= 0:
        raise InvalidInputError("window_s must be > 0", details={"field": "window_s"})
    shown = impressions.assign(
        window=(impressions["ts"].astype(float) // window_s).astype("int64"),
        request_id=impressions["request_id"].astype(str),
    )
    shown["window"] = shown["request_id"].map(shown.groupby("request_id")["window"].min())
    return shown


def ranking_windows(
    impressions: pd.DataFrame,
    interactions: pd.DataFrame,
    *,
    window_s: float,
    k: int = 10,
) -> list[RankingWindow]:
    """The ranker's quality per ``window_s`` window, oldest first (windows with requests).

    Raises:
        InvalidInputError: a missing column, or ``window_s`` <= 0.
    """
    if window_s <= 0:
        raise InvalidInputError("window_s must be > 0", details={"field": "window_s"})
    check_ranking_logs(impressions, interactions)
    if impressions.empty:
        return []
    relevant = relevant_items(interactions)
    shown = windowed_impressions(impressions, window_s)
    hit = [
        int(item) in relevant.get(rid, {})
        for rid, item in zip(shown["request_id"], shown["item_id"], strict=True)
    ]
    shown["clicked"] = hit
    out: list[RankingWindow] = []
    for window, rows in shown.groupby("window", sort=True):
        ordered = rows.sort_values(["request_id", "rank"], kind="stable")
        lists = {
            str(rid): [int(i) for i in items]
            for rid, items in ordered.groupby("request_id", sort=False)["item_id"]
        }
        metrics = mean_ranking_metrics(lists, relevant, k)
        has = metrics.lists > 0
        start = float(window) * window_s
        n = len(rows)
        clicked = int(rows["clicked"].sum())
        out.append(
            RankingWindow(
                start_s=start,
                end_s=start + window_s,
                requests=len(lists),
                impressions=n,
                clicked=clicked,
                ctr=clicked / n if n else math.nan,
                k=k,
                lists=metrics.lists,
                precision=metrics.precision if has else None,
                recall=metrics.recall if has else None,
                ndcg=metrics.ndcg if has else None,
            )
        )
    return out
