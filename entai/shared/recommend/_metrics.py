"""Ranking metrics of one recommendation list, and their mean over many lists.

A list is the items shown, best first; the relevant items are what the user went on
to interact with (optionally graded: a purchase may weigh more than a view). NDCG
uses the exponential gain ``2**g - 1`` with a ``log2(rank + 1)`` discount and is
normalised by the ideal ordering of the relevant items truncated at ``k``; a user
with no relevant item has no defined NDCG or recall and is left out of the means.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from entai.shared.core import InvalidInputError

__all__ = ["RankingMetrics", "mean_ranking_metrics", "ndcg_at_k", "precision_at_k", "recall_at_k"]

Item = TypeVar("Item", bound=Hashable)
Key = TypeVar("Key", bound=Hashable)
Relevance = Mapping[Item, float] | Collection[Item]
"""Relevant items, or ``{item: gain}`` (a gain <= 0 means not relevant)."""


def _gains(relevant: Relevance[Item]) -> Mapping[Item, float]:
    if isinstance(relevant, Mapping):
        return {item: float(g) for item, g in relevant.items() if g > 0}
    return dict.fromkeys(relevant, 1.0)


def _check_k(k: int) -> None:
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}", details={"field": "k"})


def ndcg_at_k(ranked: Sequence[Item], relevant: Relevance[Item], k: int) -> float:
    """NDCG@k of ``ranked`` against ``relevant`` (items, or ``{item: gain}``).

    Raises:
        InvalidInputError: ``k`` < 1, or nothing relevant (NDCG is undefined).
    """
    _check_k(k)
    gains = _gains(relevant)
    if not gains:
        raise InvalidInputError("NDCG is undefined without a relevant item")
    dcg = sum(
        (2.0 ** gains.get(item, 0.0) - 1.0) / math.log2(rank + 2)
        for rank, item in enumerate(_unique(ranked)[:k])
    )
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum((2.0**g - 1.0) / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return float(dcg / idcg)


def precision_at_k(ranked: Sequence[Item], relevant: Relevance[Item], k: int) -> float:
    """Share of the ``k`` slots filled by a relevant item (a short list still counts k)."""
    _check_k(k)
    gains = _gains(relevant)
    return sum(1 for item in _unique(ranked)[:k] if item in gains) / k


def recall_at_k(ranked: Sequence[Item], relevant: Relevance[Item], k: int) -> float:
    """Share of the relevant items found in the first ``k``.

    Raises:
        InvalidInputError: ``k`` < 1, or nothing relevant (recall is undefined).
    """
    _check_k(k)
    gains = _gains(relevant)
    if not gains:
        raise InvalidInputError("recall is undefined without a relevant item")
    return sum(1 for item in _unique(ranked)[:k] if item in gains) / len(gains)


def _unique(ranked: Iterable[Item]) -> list[Item]:
    """The list with repeats dropped (an item shown twice counts once)."""
    return list(dict.fromkeys(ranked))


@dataclass(frozen=True)
class RankingMetrics:
    """Mean metrics over the lists that had something relevant.

    Attributes:
        k: The cut-off.
        ndcg: Mean NDCG@k.
        precision: Mean precision@k.
        recall: Mean recall@k.
        lists: Lists evaluated (those with at least one relevant item).
    """

    k: int
    ndcg: float
    precision: float
    recall: float
    lists: int

    def as_dict(self) -> dict[str, float]:
        """``{"ndcg_at_<k>": ..., "precision_at_<k>": ..., "recall_at_<k>": ..., "lists": n}``
        (names MLflow accepts as metric names)."""
        return {
            f"ndcg_at_{self.k}": self.ndcg,
            f"precision_at_{self.k}": self.precision,
            f"recall_at_{self.k}": self.recall,
            "lists": float(self.lists),
        }


def mean_ranking_metrics(
    rankings: Mapping[Key, Sequence[Item]],
    relevant: Mapping[Key, Relevance[Item]],
    k: int,
) -> RankingMetrics:
    """Mean NDCG, precision and recall at ``k`` over the lists with a relevant item.

    Args:
        rankings: ``{list id: items best first}``; a list without an entry in
            ``relevant`` (or with nothing relevant) is skipped.
        relevant: ``{list id: relevant items or {item: gain}}``.
        k: The cut-off.
    """
    _check_k(k)
    ndcg = precision = recall = 0.0
    n = 0
    for key, ranked in rankings.items():
        gains = _gains(relevant.get(key, ()))
        if not gains:
            continue
        ndcg += ndcg_at_k(ranked, gains, k)
        precision += precision_at_k(ranked, gains, k)
        recall += recall_at_k(ranked, gains, k)
        n += 1
    if n == 0:
        return RankingMetrics(k=k, ndcg=0.0, precision=0.0, recall=0.0, lists=0)
    return RankingMetrics(k=k, ndcg=ndcg / n, precision=precision / n, recall=recall / n, lists=n)
