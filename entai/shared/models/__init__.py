"""Models: promotion gates and model cards."""

from __future__ import annotations

from entai.shared.models._model_card import (
    ModelCard,
    TrainingDataSummary,
)
from entai.shared.models._promotion import (
    Candidate,
    GateFailure,
    PromotionPolicy,
    PromotionVerdict,
    check_promotion,
)

__all__ = [
    "Candidate",
    "GateFailure",
    "ModelCard",
    "PromotionPolicy",
    "PromotionVerdict",
    "TrainingDataSummary",
    "check_promotion",
]
