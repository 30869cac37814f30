"""Training's explanation step: the trained booster's global explanation on validation rows.

Exact TreeSHAP (``entai.shared.models``) over the validation rows, or a seeded sample of
them when there are many, summarised as each feature's mean absolute contribution and a
dependence summary of the top features. Training logs it to the MLflow run as
:data:`EXPLANATION_ARTIFACT` and puts it in the model card.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from entai.shared.models import GlobalExplanation, TreeShapExplainer, global_explanation

__all__ = ["EXPLANATION_ARTIFACT", "validation_explanation"]

log = logging.getLogger(__name__)

EXPLANATION_ARTIFACT = "explanations/global_importance.json"
"""Where in the run the global explanation is logged (JSON)."""


def validation_explanation(
    booster: Any,
    valid: pd.DataFrame,
    features: Sequence[str],
    *,
    max_rows: int = 20_000,
    top_k: int = 5,
    bins: int = 5,
    seed: int = 0,
) -> GlobalExplanation:
    """Global importance and top-feature dependence of ``booster`` on the validation rows.

    Args:
        booster: The trained XGBoost booster.
        valid: Validation rows (at least the ``features`` columns).
        features: The model's inputs, in its order.
        max_rows: Rows explained at most (a seeded uniform sample above it).
        top_k: Features given a dependence summary.
        bins: Quantile bins per dependence summary.
        seed: Seed of the sample.
    """
    frame = valid
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    matrix = frame[list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    attribution = TreeShapExplainer(booster, features).explain(matrix)
    explanation = global_explanation(attribution, matrix, top_k=top_k, bins=bins)
    log.info(
        "global explanation computed",
        extra={"rows": explanation.rows, "top": [f.feature for f in explanation.top]},
    )
    return explanation
