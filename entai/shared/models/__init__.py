"""Models: promotion gates and model cards."""

from __future__ import annotations

from entai.shared.models._fairness import (
    Disparity,
    FairnessReport,
    GroupExposure,
    GroupFairness,
    RankingFairnessReport,
    binary_fairness,
    ranking_fairness,
)
from entai.shared.models._model_card import (
    ModelCard,
    TrainingDataSummary,
)
from entai.shared.models._promotion import (
    Candidate,
    FairnessPolicy,
    GateFailure,
    PromotionPolicy,
    PromotionVerdict,
    check_promotion,
)

__all__ = [
    "Candidate",
    "Disparity",
    "FairnessPolicy",
    "FairnessReport",
    "GateFailure",
    "GroupExposure",
    "GroupFairness",
    "ModelCard",
    "PromotionPolicy",
    "PromotionVerdict",
    "RankingFairnessReport",
    "TrainingDataSummary",
    "binary_fairness",
    "check_promotion",
    "ranking_fairness",
]
