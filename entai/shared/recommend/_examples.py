"""Ranking examples at training cutoffs, and the offline evaluation on held-out time.

For every cutoff an :class:`~entai.shared.recommend.InteractionIndex` is built from
the events before it; each sampled user gets the candidates serving would generate
then, one row per (user, candidate) with the ranker's features, and a graded label
from what the user did with the item in ``(cutoff, cutoff + horizon]`` (the event
weights: view 1, cart 2, purchase 3; the best one counts). A (user, cutoff) pair is
one *request*, named ``"<user>@<cutoff ISO>"``. Only users who interacted with
something in the horizon are sampled: a request with nothing relevant has no NDCG.

The offline evaluation ranks each request's candidates by the model's scores and
compares it with the popularity baseline (the most popular items overall at the
cutoff) on the same relevant sets, which include relevant items the candidate
generator missed, so a weak candidate set costs the model recall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from entai.shared.core import InvalidInputError
from entai.shared.recommend._affinity import EVENT_WEIGHTS
from entai.shared.recommend._index import (
    RANKING_FEATURES,
    CandidatePolicy,
    IndexPolicy,
    InteractionIndex,
)
from entai.shared.recommend._metrics import RankingMetrics, mean_ranking_metrics

__all__ = ["RankingExamples", "evaluate_ranking", "rank_items", "ranking_examples"]


@dataclass(frozen=True)
class RankingExamples:
    """Training or evaluation rows for a ranker.

    Attributes:
        rows: request_id, user_id, product_id, event_timestamp (the cutoff), the
            :data:`RANKING_FEATURES`, gain (0-3) and label (gain > 0), grouped by request.
        relevant: Per request, ``{item: gain}`` of everything the user interacted
            with in the horizon (candidates or not).
        popular: Per request, the popularity baseline's list at its cutoff.
    """

    rows: pd.DataFrame
    relevant: dict[str, dict[int, float]]
    popular: dict[str, list[int]]

    def before(self, instant: datetime) -> RankingExamples:
        """The requests whose cutoff is before ``instant``."""
        return self._select(self.rows["event_timestamp"] < pd.Timestamp(instant))

    def from_(self, instant: datetime) -> RankingExamples:
        """The requests whose cutoff is at or after ``instant``."""
        return self._select(self.rows["event_timestamp"] >= pd.Timestamp(instant))

    def _select(self, mask: pd.Series) -> RankingExamples:
        rows = self.rows[mask].reset_index(drop=True)
        keep = set(rows["request_id"])
        return RankingExamples(
            rows=rows,
            relevant={r: g for r, g in self.relevant.items() if r in keep},
            popular={r: p for r, p in self.popular.items() if r in keep},
        )


def ranking_examples(
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    cutoffs: Sequence[datetime],
    horizon: timedelta,
    *,
    users_per_cutoff: int | None = None,
    seed: int = 0,
    baseline_k: int = 10,
    index_policy: IndexPolicy | None = None,
    candidate_policy: CandidatePolicy | None = None,
) -> RankingExamples:
    """One request per sampled (user, cutoff), one row per candidate.

    Args:
        events: user_id, product_id, event_type, event_timestamp.
        catalogue: product_id, category, price.
        cutoffs: Instants at which requests are simulated.
        horizon: How far after a cutoff interactions count as relevant.
        users_per_cutoff: Sample at most this many users per cutoff (seeded); None
            keeps every user with an interaction in the horizon.
        seed: Seed of the sampling.
        baseline_k: Length of the popularity baseline's lists.
        index_policy: How each cutoff's index is built.
        candidate_policy: How candidates are generated.

    Raises:
        InvalidInputError: no cutoff, or a horizon that is not positive.
    """
    if not cutoffs:
        raise InvalidInputError("give at least one cutoff", details={"field": "cutoffs"})
    if horizon <= timedelta(0):
        raise InvalidInputError("horizon must be positive", details={"field": "horizon"})
    rng = np.random.default_rng(seed)
    columns: dict[str, list[object]] = {"request_id": [], "user_id": [], "product_id": []}
    stamps: list[pd.Timestamp] = []
    blocks: list[np.ndarray] = []
    gains_col: list[float] = []
    relevant: dict[str, dict[int, float]] = {}
    popular: dict[str, list[int]] = {}
    gain = events["event_type"].map(EVENT_WEIGHTS).fillna(0.0)
    for cutoff in cutoffs:
        index = InteractionIndex.from_events(events, catalogue, as_of=cutoff, policy=index_policy)
        start = pd.Timestamp(cutoff)
        ahead = (events["event_timestamp"] > start) & (events["event_timestamp"] <= start + horizon)
        future = (
            gain[ahead]
            .groupby([events.loc[ahead, "user_id"], events.loc[ahead, "product_id"]])
            .max()
        )
        by_user: dict[int, dict[int, float]] = {}
        for (user, item), g in future.items():
            if g > 0:
                by_user.setdefault(int(user), {})[int(item)] = float(g)
        users = np.asarray(sorted(by_user), dtype=np.int64)
        if users_per_cutoff is not None and users.size > users_per_cutoff:
            users = np.sort(rng.choice(users, size=users_per_cutoff, replace=False))
        baseline = index.popular(baseline_k)
        for user in users.tolist():
            request = f"{user}@{start.isoformat()}"
            gains = by_user[user]
            relevant[request] = gains
            popular[request] = baseline
            items = index.candidates(user, policy=candidate_policy)
            blocks.append(index.features(user, items))
            columns["request_id"] += [request] * len(items)
            columns["user_id"] += [user] * len(items)
            columns["product_id"] += items
            stamps += [start] * len(items)
            gains_col += [gains.get(i, 0.0) for i in items]
    features = (
        np.vstack(blocks) if blocks else np.empty((0, len(RANKING_FEATURES)), dtype=np.float64)
    )
    rows = pd.DataFrame(
        {
            "request_id": pd.Series(columns["request_id"], dtype=object),
            "user_id": np.asarray(columns["user_id"], dtype=np.int64),
            "product_id": np.asarray(columns["product_id"], dtype=np.int64),
            "event_timestamp": pd.to_datetime(pd.Series(stamps, dtype=object), utc=True),
        }
    )
    rows[list(RANKING_FEATURES)] = features
    rows["gain"] = np.asarray(gains_col, dtype=np.float64)
    rows["label"] = (rows["gain"] > 0).astype(np.int64)
    return RankingExamples(rows=rows, relevant=relevant, popular=popular)


def _empty_rows() -> pd.DataFrame:
    columns = ["request_id", "user_id", "product_id", "event_timestamp", *RANKING_FEATURES, "gain"]
    return pd.DataFrame({c: [] for c in columns})


def rank_items(
    items: Sequence[int], scores: Sequence[float] | np.ndarray, k: int
) -> list[tuple[int, float]]:
    """The ``k`` best ``(item, score)`` pairs, highest score first (ties: lower id first)."""
    values = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(items, dtype=np.int64)
    order = np.lexsort((ids, -values))[:k]
    return [(int(ids[i]), float(values[i])) for i in order]


def evaluate_ranking(
    examples: RankingExamples, scores: Sequence[float] | np.ndarray, k: int = 10
) -> Mapping[str, RankingMetrics]:
    """The model's ranking (candidates by ``scores``) and the popularity baseline, at ``k``.

    Args:
        examples: Held-out requests.
        scores: One model score per row of ``examples.rows``.
        k: The cut-off.

    Returns:
        ``{"model": metrics, "popularity": metrics}`` over the same requests.

    Raises:
        InvalidInputError: not one score per row.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(examples.rows),):
        raise InvalidInputError(
            f"need one score per row ({len(examples.rows)}), got {values.shape}",
            details={"field": "scores"},
        )
    frame = pd.DataFrame(
        {
            "request_id": examples.rows["request_id"].to_numpy(),
            "item": examples.rows["product_id"].to_numpy(),
            "score": values,
        }
    ).sort_values(["request_id", "score", "item"], ascending=[True, False, True])
    model = {str(r): [int(i) for i in g] for r, g in frame.groupby("request_id")["item"]}
    requests = set(examples.relevant)
    model = {r: model.get(r, []) for r in requests}
    popular = {r: examples.popular.get(r, []) for r in requests}
    return {
        "model": mean_ranking_metrics(model, examples.relevant, k),
        "popularity": mean_ranking_metrics(popular, examples.relevant, k),
    }
