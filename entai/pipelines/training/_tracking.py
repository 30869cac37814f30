"""Log a training run to MLflow: params, per-round metrics, dataset input, the model.

The model's pip requirements are pinned from the running interpreter's versions, so
MLflow does not spend seconds inferring them; the per-round curves go in batches of
1,000 points (one store transaction each) rather than one call per point.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pandas as pd

from entai.actors.backends import configure_mlflow
from entai.pipelines.training._train import TrainOutcome
from entai.shared.settings import MlflowSettings

__all__ = ["LoggedRun", "log_xgboost_run", "pinned_requirements"]

_BATCH = 1000  # MLflow's limit of metrics per log_batch call


@dataclass(frozen=True)
class LoggedRun:
    """Where a logged training run and its model live."""

    run_id: str
    model_uri: str


def pinned_requirements() -> list[str]:
    """Exact pins of what loading an XGBoost pyfunc model needs."""
    return [f"{pkg}=={version(pkg)}" for pkg in ("xgboost", "numpy", "pandas", "scikit-learn")]


def log_xgboost_run(
    settings: MlflowSettings,
    outcome: TrainOutcome,
    *,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    training_data: pd.DataFrame,
    dataset_name: str,
    tags: Mapping[str, str],
    run_name: str,
    label_column: str | None = None,
    evaluation: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    artifacts: Mapping[str, Mapping[str, Any]] | None = None,
) -> LoggedRun:
    """Log one training run and its model; return the run id and model URI.

    Args:
        settings: MLflow store.
        outcome: The trained booster and its per-round curves.
        params: Training parameters (logged as strings).
        metrics: Final metrics (e.g. ``valid_auc``, baselines' metrics).
        training_data: The training rows, logged as the run's dataset input.
        dataset_name: Name of the dataset input (e.g. the manifest id).
        tags: Run tags: feature service, definitions hash, dataset ids, git commit.
        run_name: MLflow run name.
        label_column: The label, recorded as the dataset's target.
        evaluation: Calibration table and per-segment metrics, logged as JSON.
        parent_run_id: Makes this a child run (tuning).
        artifacts: More JSON artifacts, ``{path in the run: content}`` (the
            monitoring reference and the training config).
    """
    import mlflow
    import mlflow.xgboost
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    client = configure_mlflow(settings)
    features = list(outcome.feature_columns)
    # The signature records column names and types only: no training row is stored
    # with the model (an input example would keep real rows beyond any erasure).
    example = training_data[features].head(5)
    run_tags = dict(tags)
    if parent_run_id is not None:
        run_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
        run_id = run.info.run_id
        mlflow.log_params({k: str(v) for k, v in params.items()})
        now = int(time.time() * 1000)
        curve = [
            Metric(f"{split}_{metric}", float(value), now, step)
            for split, curves in outcome.evals.items()
            for metric, values in curves.items()
            for step, value in enumerate(values)
        ]
        for start in range(0, len(curve), _BATCH):
            client.log_batch(run_id, metrics=curve[start : start + _BATCH])
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        dataset = from_pandas(training_data, name=dataset_name, targets=label_column)
        mlflow.log_input(dataset, context="training")
        if evaluation is not None:
            mlflow.log_dict(dict(evaluation), "evaluation.json")
        for path, content in (artifacts or {}).items():
            mlflow.log_dict(dict(content), path)
        prediction = outcome.booster.inplace_predict(example)
        info = mlflow.xgboost.log_model(
            outcome.booster,
            name="model",
            signature=infer_signature(example, prediction),
            pip_requirements=pinned_requirements(),
        )
        return LoggedRun(run_id=run_id, model_uri=info.model_uri)
