"""``entai train`` and ``entai tune``: config in, trained + logged + registered model out.

The steps: read the label source, build the training set through the point-in-time
join of the feature service, split it by time, train XGBoost on Ray Train (or search
with Ray Tune and retrain the best), fit the scikit-learn baselines, evaluate (AUC,
log loss, calibration, per-segment, fairness by the configured columns, the global
explanation: TreeSHAP importance and dependence of the top features), log
everything to MLflow, register the model with its lineage and model card, and give it
the configured alias. Both functions return a summary dict, so the CLI prints it and
tests assert on it.

The validation set's id is a hash of its rows (entity keys, timestamps, labels):
two models trained on the same labels and split get the same id, which is what lets
the promotion gate compare them like for like.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from entai.actors.core import Service
from entai.actors.models import ModelRegistry, ModelVersionInfo
from entai.actors.services import registry_here
from entai.pipelines.features import get_historical_features
from entai.pipelines.training._config import FairnessConfig, TrainConfig, TuneConfig
from entai.pipelines.training._explain import EXPLANATION_ARTIFACT, validation_explanation
from entai.pipelines.training._fairness import check_fairness_columns, with_fairness
from entai.pipelines.training._lineage import lineage_artifacts, lineage_tags
from entai.pipelines.training._tracking import LoggedRun, log_xgboost_run
from entai.pipelines.training._train import (
    TrainOutcome,
    evaluate_binary,
    time_split,
    train_baselines,
    train_xgboost,
)
from entai.pipelines.training._tune import log_trials, tune_xgboost
from entai.shared.core import InvalidInputError
from entai.shared.data import Lake
from entai.shared.features import (
    Definitions,
    FeatureViewProjection,
    OfflineStore,
    OnDemandFeatureView,
)
from entai.shared.governance import resolve_token
from entai.shared.models import GlobalExplanation, ModelCard, TrainingDataSummary
from entai.shared.settings import EntaiSettings

__all__ = [
    "TrainingData",
    "build_training_data",
    "evaluate_version",
    "run_training",
    "run_tuning",
    "validation_dataset_id",
]

log = logging.getLogger(__name__)


class TrainingData:
    """A point-in-time training set split by time, with its lineage.

    Attributes:
        train: Training rows.
        valid: Validation rows, all later than every training row.
        features: Model input columns, in order.
        manifest: The training set's manifest (dataset id, definitions hash, ...).
        valid_id: Content id of the validation rows.
    """

    def __init__(
        self,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        *,
        features: list[str],
        manifest: dict[str, Any],
        valid_id: str,
    ) -> None:
        self.train, self.valid, self.features = train, valid, features
        self.manifest, self.valid_id = manifest, valid_id


def validation_dataset_id(valid: pd.DataFrame, key_columns: list[str]) -> str:
    """A content id of the validation rows (their keys, timestamps and labels)."""
    hashed = pd.util.hash_pandas_object(valid[key_columns], index=False).to_numpy()
    return "valid-" + hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _read_labels(config: TrainConfig) -> pd.DataFrame:
    path = Path(config.label_source)
    if not path.exists():
        raise InvalidInputError(
            f"label source {path} does not exist", details={"field": "label_source"}
        )
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    missing = [c for c in (config.timestamp_column, config.label_column) if c not in frame]
    if missing:
        raise InvalidInputError(
            f"label source {path} lacks column(s) {missing}",
            details={"field": "label_source", "missing": missing},
        )
    frame[config.timestamp_column] = pd.to_datetime(frame[config.timestamp_column], utc=True)
    return frame


def build_training_data(
    settings: EntaiSettings, config: TrainConfig, *, labels: pd.DataFrame | None = None
) -> TrainingData:
    """Labels + feature service -> PIT join -> time split.

    Args:
        settings: Where the lake (offline store) is.
        config: Feature service, definitions, label source, split.
        labels: Entity/label rows to use instead of reading ``config.label_source``.
    """
    rows = _read_labels(config) if labels is None else labels
    definitions = Definitions.from_module(config.definitions_module)
    service = definitions.service(config.feature_service)
    built = get_historical_features(
        rows,
        service,
        definitions=definitions,
        offline=OfflineStore(Lake(settings.lake.root)),
        timestamp_column=config.timestamp_column,
        as_served=config.as_served,
        save=config.dataset_id,
    )
    features = [
        name
        for item in service.features
        for name in (
            item.feature_names
            if isinstance(item, OnDemandFeatureView)
            else FeatureViewProjection.of(item).features
        )
    ]
    frame = built.to_pandas()
    check_fairness_columns(config.fairness, frame)
    train, valid = time_split(
        frame,
        timestamp_column=config.timestamp_column,
        valid_fraction=config.valid_fraction,
    )
    keys = [c for c in rows.columns if c != config.oracle_column]
    return TrainingData(
        train,
        valid,
        features=features,
        manifest=dict(built.manifest),
        valid_id=validation_dataset_id(valid, keys),
    )


def evaluate_version(
    model_uri: str,
    frame: pd.DataFrame,
    *,
    label_column: str,
    segment_column: str | None = None,
    fairness: FairnessConfig | None = None,
) -> dict[str, Any]:
    """Score a logged or registered model on ``frame``; the metrics of :func:`evaluate_binary`.

    Use it to evaluate champion and challenger on one dataset, then record the
    metrics with ``ModelRegistry.record_evaluation`` under that dataset's id. With
    ``fairness``, the evaluation also carries the fairness reports by its columns
    (``with_fairness``).
    """
    import mlflow.xgboost

    booster = mlflow.xgboost.load_model(model_uri)
    features = list(booster.feature_names or [])
    scores = booster.inplace_predict(frame[features])
    segments = None if segment_column is None else frame[segment_column]
    evaluation = evaluate_binary(frame[label_column], scores, segments=segments)
    return with_fairness(evaluation, fairness, frame, frame[label_column], scores)


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=5
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


@dataclass(frozen=True)
class Evaluation:
    """How a trained booster does on the validation rows.

    Attributes:
        scores: The booster's validation scores.
        report: :func:`evaluate_binary`'s output (metrics, calibration, segments).
        metrics: The model's own metrics (``report["metrics"]``).
        comparisons: The baselines' metrics and the oracle's, for context.
        explanation: Global TreeSHAP importance on the validation rows.
    """

    scores: np.ndarray
    report: dict[str, Any]
    metrics: dict[str, float]
    comparisons: dict[str, float]
    explanation: GlobalExplanation

    @property
    def all_metrics(self) -> dict[str, float]:
        """The model's metrics and the comparisons, as logged to MLflow."""
        return {**self.metrics, **self.comparisons}


def _evaluate(config: TrainConfig, data: TrainingData, booster: Any) -> Evaluation:
    valid, label = data.valid, config.label_column
    scores = booster.inplace_predict(valid[data.features])
    segments = None if config.segment_column is None else valid[config.segment_column]
    report = evaluate_binary(valid[label], scores, segments=segments)
    report = with_fairness(report, config.fairness, valid, valid[label], scores)
    metrics = dict(report["metrics"])
    baselines = train_baselines(
        data.train, valid, feature_columns=data.features, label_column=label, names=config.baselines
    )
    comparisons = {
        f"baseline_{name}_{metric}": value
        for name, values in baselines.items()
        for metric, value in values.items()
    }
    if config.oracle_column is not None:
        oracle = evaluate_binary(valid[label], valid[config.oracle_column])["metrics"]
        comparisons["oracle_valid_auc"] = oracle["valid_auc"]
        comparisons["oracle_gap_auc"] = oracle["valid_auc"] - metrics["valid_auc"]
    explanation = validation_explanation(booster, valid, data.features)
    return Evaluation(scores, report, metrics, comparisons, explanation)


def _lineage(
    config: TrainConfig, data: TrainingData, extra: Mapping[str, str] | None
) -> dict[str, str]:
    """The version's lineage tags: feature service, definitions, datasets, code."""
    lineage = {
        "entai.feature_service": config.feature_service,
        "entai.definitions_hash": str(data.manifest.get("definitions_hash", "")),
        "entai.dataset_id": str(data.manifest.get("dataset_id", "")),
        "entai.valid_dataset_id": data.valid_id,
        **dict(extra or {}),
    }
    commit = _git_commit()
    if commit:
        lineage["entai.git_commit"] = commit
    return lineage


def _log(
    settings: EntaiSettings,
    config: TrainConfig,
    data: TrainingData,
    *,
    outcome: TrainOutcome,
    evaluation: Evaluation,
    lineage: Mapping[str, str],
    params: dict[str, Any],
    num_boost_round: int,
    run_name: str,
    parent_run_id: str | None,
) -> LoggedRun:
    """Log the run to MLflow: params, metrics, dataset, model, lineage artifacts."""
    trained = config.model_copy(update={"params": params, "num_boost_round": num_boost_round})
    return log_xgboost_run(
        settings.mlflow,
        outcome,
        params={
            **params,
            "num_boost_round": num_boost_round,
            "num_workers": config.num_workers,
            "runner": outcome.runner,
        },
        metrics=evaluation.all_metrics,
        training_data=data.train,
        dataset_name=lineage["entai.dataset_id"],
        tags=dict(lineage),
        run_name=run_name,
        label_column=config.label_column,
        evaluation=evaluation.report,
        parent_run_id=parent_run_id,
        artifacts={
            **lineage_artifacts(
                trained,
                data.valid,
                data.features,
                evaluation.scores,
                valid_auc=evaluation.metrics["valid_auc"],
                sample_size=settings.monitoring.reference_sample_size,
            ),
            EXPLANATION_ARTIFACT: evaluation.explanation.model_dump(mode="json"),
        },
    )


def _register(
    registry: Service[ModelRegistry],
    config: TrainConfig,
    data: TrainingData,
    *,
    evaluation: Evaluation,
    lineage: Mapping[str, str],
    logged: LoggedRun,
    token: str,
) -> ModelVersionInfo:
    """Register the logged model as a new version (its registrant is ``token``'s
    principal), and give it the configured alias."""
    info = registry.call(
        ModelRegistry.register,
        logged.model_uri,
        config.model_name,
        token=token,
        lineage={**lineage, **lineage_tags(logged.run_id)},
        run_id=logged.run_id,
        metrics=evaluation.metrics,
        validation_dataset_id=data.valid_id,
        card=_card(config, data, evaluation),
    )
    if config.alias is not None:
        registry.call(
            ModelRegistry.set_alias,
            config.model_name,
            config.alias,
            info.version,
            token=token,
            reason=f"trained by run {logged.run_id}",
        )
    return info


def _fit_and_register(
    settings: EntaiSettings,
    config: TrainConfig,
    data: TrainingData,
    *,
    registry: Service[ModelRegistry] | None,
    token: str | None,
    params: dict[str, Any],
    num_boost_round: int,
    run_name: str,
    parent_run_id: str | None = None,
    extra_lineage: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Train, evaluate, log and (if configured) register; return the run's summary."""
    if config.register_model:  # refuse before training, not after
        token = resolve_token(token, settings.security.token_file)
    outcome = train_xgboost(
        data.train,
        data.valid,
        feature_columns=data.features,
        label_column=config.label_column,
        params=params,
        num_boost_round=num_boost_round,
        storage_path=settings.home / "ray_train",
        num_workers=config.num_workers,
        cpus_per_worker=config.cpus_per_worker,
        runner=config.runner,
        run_name=run_name,
    )
    evaluation = _evaluate(config, data, outcome.booster)
    lineage = _lineage(config, data, extra_lineage)
    logged = _log(
        settings,
        config,
        data,
        outcome=outcome,
        evaluation=evaluation,
        lineage=lineage,
        params=params,
        num_boost_round=num_boost_round,
        run_name=run_name,
        parent_run_id=parent_run_id,
    )
    summary: dict[str, Any] = {
        "run_id": logged.run_id,
        "model_uri": logged.model_uri,
        "metrics": evaluation.all_metrics,
        "dataset_id": lineage["entai.dataset_id"],
        "valid_dataset_id": data.valid_id,
        "rows": {"train": len(data.train), "valid": len(data.valid)},
        "timings_s": outcome.timings,
    }
    if config.register_model:
        info = _register(
            registry or registry_here(settings),
            config,
            data,
            evaluation=evaluation,
            lineage=lineage,
            logged=logged,
            token=str(token),
        )
        summary["version"] = info.version
        if config.alias is not None:
            summary["alias"] = config.alias
    log.info("training run finished", extra={"model": config.model_name, **summary["rows"]})
    return summary


def _card(config: TrainConfig, data: TrainingData, evaluation: Evaluation) -> ModelCard:
    ts = data.train[config.timestamp_column]
    report = evaluation.report
    return ModelCard(
        model_name=config.model_name,
        intended_use=config.card.intended_use,
        out_of_scope=config.card.out_of_scope,
        training_data=TrainingDataSummary(
            dataset_id=str(data.manifest.get("dataset_id", "")),
            feature_service=config.feature_service,
            definitions_hash=str(data.manifest.get("definitions_hash", "")),
            rows=len(data.train),
            label_rate=float(data.train[config.label_column].mean()),
            time_range=(ts.min().isoformat(), ts.max().isoformat()),
            validation_dataset_id=data.valid_id,
        ),
        metrics=report["metrics"],
        segment_metrics=report["segments"],
        fairness=report.get("fairness", {}),
        limitations=config.card.limitations,
        owners=config.card.owners,
        explanations=evaluation.explanation,
    )


def run_training(
    settings: EntaiSettings,
    config: TrainConfig,
    *,
    labels: pd.DataFrame | None = None,
    lineage: Mapping[str, str] | None = None,
    registry: Service[ModelRegistry] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Build the training set, train, evaluate, log and register; return a summary.

    The run also logs the version's monitoring reference and this config as artifacts
    (:mod:`entai.pipelines.training._lineage`); ``lineage`` adds tags to the version
    (a retrain records its request and reason there). ``registry`` is where the version
    is registered; default: the running platform's registry, else a local one.
    ``token`` is the caller's API token (default ``$ENTAI_TOKEN``, then the embedded
    admin token file): its principal is the registrant, never a name in the config.
    """
    data = build_training_data(settings, config, labels=labels)
    return _fit_and_register(
        settings,
        config,
        data,
        registry=registry,
        token=token,
        params=dict(config.params),
        num_boost_round=config.num_boost_round,
        run_name=f"train-{config.model_name}",
        extra_lineage=lineage,
    )


def run_tuning(
    settings: EntaiSettings,
    config: TuneConfig,
    *,
    labels: pd.DataFrame | None = None,
    data: TrainingData | None = None,
    registry: Service[ModelRegistry] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Search with Ray Tune + ASHA, log every trial, retrain and register the best.

    Args:
        settings: Lake, MLflow and Ray settings.
        config: The search and the training it wraps.
        labels: Entity/label rows to use instead of ``config.label_source``.
        data: An already built and split training set (skips the PIT join).
        registry: Where the best is registered; default as :func:`run_training`.
        token: The registering caller's token; default as :func:`run_training`.
    """
    if data is None:
        data = build_training_data(settings, config, labels=labels)
    outcome = tune_xgboost(
        data.train,
        data.valid,
        feature_columns=data.features,
        label_column=config.label_column,
        config=config,
        storage_path=settings.home / "ray_tune",
        run_name=f"tune-{config.model_name}",
    )
    parent = log_trials(
        settings.mlflow,
        outcome,
        run_name=f"tune-{config.model_name}",
        tags={"entai.feature_service": config.feature_service},
    )
    summary = _fit_and_register(
        settings,
        config,
        data,
        registry=registry,
        token=token,
        params={**config.params, **outcome.best.params},
        num_boost_round=outcome.best_rounds,
        run_name=f"tune-{config.model_name}/best",
        parent_run_id=parent,
    )
    summary["tuning"] = {
        "parent_run_id": parent,
        "trials": len(outcome.trials),
        "early_stopped": sum(t.status == "early_stopped" for t in outcome.trials),
        "best_params": outcome.best.params,
        "best_rounds": outcome.best_rounds,
        f"best_{outcome.metric}": outcome.best_value,
        "seconds": outcome.seconds,
    }
    return summary
