"""A small XGBoost model logged to MLflow the way training logs one, for tests that need a
registered version without running training."""

from __future__ import annotations

import numpy.typing as npt
import pandas as pd

from entai.pipelines.training import LoggedRun
from entai.shared.settings import EntaiSettings

__all__ = ["log_small_model"]


def log_small_model(
    settings: EntaiSettings, frame: pd.DataFrame, labels: npt.ArrayLike, *, rounds: int = 2
) -> LoggedRun:
    """Train a binary XGBoost model on ``frame`` and log it with ``log_xgboost_run``.

    Returns:
        The logged run (``model_uri``, ``run_id``), as training gets it.
    """
    import xgboost

    from entai.pipelines.training import TrainOutcome, log_xgboost_run

    booster = xgboost.train(
        {"objective": "binary:logistic"},
        xgboost.DMatrix(frame, label=labels),
        num_boost_round=rounds,
    )
    return log_xgboost_run(
        settings.mlflow,
        TrainOutcome(booster=booster, evals={}, feature_columns=tuple(frame.columns)),
        params={},
        metrics={},
        training_data=frame,
        dataset_name="t",
        tags={},
        run_name="t",
    )
