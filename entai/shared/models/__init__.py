"""Models: promotion gates, model cards, fairness, and explanations of predictions."""

from __future__ import annotations

from entai.shared.models._explain import (
    Attribution,
    Background,
    Explainer,
    ExplainMethod,
    LinearExplainer,
    SamplingExplainer,
    TreeShapExplainer,
    explainer_for,
    margin_function,
)
from entai.shared.models._fairness import (
    MISSING_GROUP,
    Disparity,
    FairnessReport,
    GroupExposure,
    GroupFairness,
    RankingFairnessReport,
    binary_fairness,
    ranking_fairness,
)
from entai.shared.models._importance import (
    DependenceBin,
    FeatureImportance,
    GlobalExplanation,
    global_explanation,
)
from entai.shared.models._model_card import (
    Approval,
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
from entai.shared.models._tree_predict import CompiledTrees

__all__ = [
    "MISSING_GROUP",
    "Approval",
    "Attribution",
    "Background",
    "Candidate",
    "CompiledTrees",
    "DependenceBin",
    "Disparity",
    "ExplainMethod",
    "Explainer",
    "FairnessPolicy",
    "FairnessReport",
    "FeatureImportance",
    "GateFailure",
    "GlobalExplanation",
    "GroupExposure",
    "GroupFairness",
    "LinearExplainer",
    "ModelCard",
    "PromotionPolicy",
    "PromotionVerdict",
    "RankingFairnessReport",
    "SamplingExplainer",
    "TrainingDataSummary",
    "TreeShapExplainer",
    "binary_fairness",
    "check_promotion",
    "explainer_for",
    "global_explanation",
    "margin_function",
    "ranking_fairness",
]
