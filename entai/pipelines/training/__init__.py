"""Training: XGBoost on Ray Train, Ray Tune search, MLflow tracking, lineage, the ranker,
``entai train``/``tune`` and the retraining workflow.
"""

from __future__ import annotations

from entai.pipelines.training._config import (
    CardText,
    FairnessConfig,
    RankingFairnessConfig,
    SearchDimension,
    TrainConfig,
    TuneConfig,
)
from entai.pipelines.training._fairness import (
    MISSING_GROUP,
    check_fairness_columns,
    check_ranking_fairness_columns,
    fairness_metrics,
    fairness_reports,
    ranking_fairness_reports,
    with_fairness,
)
from entai.pipelines.training._lineage import (
    lineage_artifacts,
    lineage_tags,
    recorded_config,
    recorded_train_config,
)
from entai.pipelines.training._ranker import (
    RANKER_PARAMS,
    RankerConfig,
    TrainedRanker,
    register_ranker,
    split_examples,
    train_ranker,
)
from entai.pipelines.training._retrain import (
    RETRAIN_PRINCIPAL,
    ConfigSource,
    last_runs,
    pending_requests,
    process_pending,
    retrain,
)
from entai.pipelines.training._retrain_worker import (
    ACTOR_NAME,
    RetrainWorker,
    RetrainWorkerActor,
    start_retrain_worker,
)
from entai.pipelines.training._run import (
    TrainingData,
    build_training_data,
    evaluate_version,
    run_training,
    run_tuning,
    validation_dataset_id,
)
from entai.pipelines.training._tracking import (
    LoggedRun,
    log_xgboost_run,
    pinned_requirements,
)
from entai.pipelines.training._train import (
    BASELINES,
    Runner,
    TrainOutcome,
    Transport,
    evaluate_binary,
    time_split,
    train_baselines,
    train_xgboost,
)
from entai.pipelines.training._tune import (
    TrialRecord,
    TuneOutcome,
    log_trials,
    tune_xgboost,
)

__all__ = [
    "ACTOR_NAME",
    "BASELINES",
    "MISSING_GROUP",
    "RANKER_PARAMS",
    "RETRAIN_PRINCIPAL",
    "CardText",
    "ConfigSource",
    "FairnessConfig",
    "LoggedRun",
    "RankerConfig",
    "RankingFairnessConfig",
    "RetrainWorker",
    "RetrainWorkerActor",
    "Runner",
    "SearchDimension",
    "TrainConfig",
    "TrainOutcome",
    "TrainedRanker",
    "TrainingData",
    "Transport",
    "TrialRecord",
    "TuneConfig",
    "TuneOutcome",
    "build_training_data",
    "check_fairness_columns",
    "check_ranking_fairness_columns",
    "evaluate_binary",
    "evaluate_version",
    "fairness_metrics",
    "fairness_reports",
    "last_runs",
    "lineage_artifacts",
    "lineage_tags",
    "log_trials",
    "log_xgboost_run",
    "pending_requests",
    "pinned_requirements",
    "process_pending",
    "ranking_fairness_reports",
    "recorded_config",
    "recorded_train_config",
    "register_ranker",
    "retrain",
    "run_training",
    "run_tuning",
    "split_examples",
    "start_retrain_worker",
    "time_split",
    "train_baselines",
    "train_ranker",
    "train_xgboost",
    "tune_xgboost",
    "validation_dataset_id",
    "with_fairness",
]
