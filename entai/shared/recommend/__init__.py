"""Recommendations: the interaction index, candidates, ranking metrics and examples.

Plain pandas/numpy, shared by training (examples at cutoffs, offline evaluation
against the popularity baseline), serving (candidates and features per request) and
monitoring (precision, recall and NDCG at k).
"""

from __future__ import annotations

from entai.shared.recommend._affinity import (
    AFFINITY_WINDOW,
    EVENT_WEIGHTS,
    category_activity,
    category_shares,
)
from entai.shared.recommend._examples import (
    RankingExamples,
    evaluate_ranking,
    rank_items,
    ranking_examples,
)
from entai.shared.recommend._index import (
    INDEX_ARTIFACT,
    RANKING_FEATURES,
    CandidatePolicy,
    IndexPolicy,
    InteractionIndex,
    merge_recent_views,
)
from entai.shared.recommend._metrics import (
    RankingMetrics,
    mean_ranking_metrics,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from entai.shared.recommend._monitoring import (
    INTERACTION_GAINS,
    RankingWindow,
    check_ranking_logs,
    ranking_windows,
    relevant_items,
    windowed_impressions,
)

__all__ = [
    "AFFINITY_WINDOW",
    "EVENT_WEIGHTS",
    "INDEX_ARTIFACT",
    "INTERACTION_GAINS",
    "RANKING_FEATURES",
    "CandidatePolicy",
    "IndexPolicy",
    "InteractionIndex",
    "RankingExamples",
    "RankingMetrics",
    "RankingWindow",
    "category_activity",
    "category_shares",
    "check_ranking_logs",
    "evaluate_ranking",
    "mean_ranking_metrics",
    "merge_recent_views",
    "ndcg_at_k",
    "precision_at_k",
    "rank_items",
    "ranking_examples",
    "ranking_windows",
    "recall_at_k",
    "relevant_items",
    "windowed_impressions",
]
