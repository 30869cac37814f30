"""The demo's champion: a point-in-time training set, XGBoost on Ray Train, registered.

The demo trains by hand (it reports a held-out AUC next to the generator's oracle),
but records the same lineage as ``entai train``: the monitoring reference profile
and the training config, so the DriftMonitor can watch it and the retraining worker
can train it again on fresh labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from entai.actors.models import ModelRegistry
from entai.actors.services import Services
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.pipelines.training import TrainConfig
    from entai.shared.models import ModelCard

__all__ = ["MODEL_NAME", "register_champion", "train_champion", "training_set"]

MODEL_NAME = "purchase_propensity"
HORIZON = timedelta(days=7)
_XGB_PARAMS = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.1, "min_child_weight": 5}
_ROUNDS = 120


def training_set(
    settings: EntaiSettings, world: Any, events: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label rows every 2 days of the history, and their point-in-time training set."""
    from entai.demo import features
    from entai.pipelines.features import get_historical_features
    from entai.shared.data import Lake
    from entai.shared.features import Definitions, OfflineStore

    start = world.config.start
    cutoffs = [start + timedelta(days=d) for d in range(14, world.config.days - 6, 2)]
    rows = world.label_rows(events, cutoffs, HORIZON)
    definitions = Definitions.from_module(features.__name__)
    training = get_historical_features(
        rows,
        features.purchase_propensity,
        definitions=definitions,
        offline=OfflineStore(Lake(settings.lake.root)),
    ).to_pandas()
    return rows, training


def _auc(labels: pd.Series, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def train_champion(settings: EntaiSettings, training: pd.DataFrame) -> dict[str, Any]:
    """Train on the first 80 % of the time range (time-split again for validation).

    Returns:
        The outcome, the splits, where the held-out period starts, and held-out,
        oracle and validation AUCs.
    """
    import xgboost

    from entai.demo.features import MODEL_FEATURES
    from entai.pipelines.training import time_split, train_xgboost

    times = np.sort(training["event_timestamp"].unique())
    held_out_from = times[int(len(times) * 0.8)]
    development = training[training["event_timestamp"] < held_out_from]
    held_out = training[training["event_timestamp"] >= held_out_from]
    train_df, valid_df = time_split(
        development, timestamp_column="event_timestamp", valid_fraction=0.2
    )
    outcome = train_xgboost(
        train_df,
        valid_df,
        feature_columns=MODEL_FEATURES,
        label_column="label",
        params=_XGB_PARAMS,
        num_boost_round=_ROUNDS,
        storage_path=settings.home / "ray_train",
    )
    test_scores = outcome.booster.predict(
        xgboost.DMatrix(held_out[list(MODEL_FEATURES)], feature_names=list(MODEL_FEATURES))
    )
    return {
        "outcome": outcome,
        "train_df": train_df,
        "valid_df": valid_df,
        "held_out_from": held_out_from,
        "test_auc": round(_auc(held_out["label"], test_scores), 4),
        "oracle_auc": round(_auc(held_out["label"], held_out["oracle"].to_numpy()), 4),
        "valid_auc": round(outcome.evals["valid"]["auc"][-1], 4),
    }


def _train_config(label_file: str) -> TrainConfig:
    """How the champion was trained, recorded so that retraining can do it again."""
    from entai.demo import features
    from entai.pipelines.training import CardText, TrainConfig

    return TrainConfig(
        model_name=MODEL_NAME,
        feature_service=features.purchase_propensity.name,
        definitions_module=features.__name__,
        label_source=label_file,
        segment_column="category",
        oracle_column="oracle",
        params=dict(_XGB_PARAMS),
        num_boost_round=_ROUNDS,
        baselines=(),
        card=CardText(
            intended_use="rank users by their chance to buy in a category within 7 days",
            out_of_scope="credit, pricing or any decision about a person",
            limitations=("trained on synthetic events",),
            owners=("demo@entai.local",),
        ),
    )


def _champion_card(label_file: Path, trained: dict[str, Any]) -> ModelCard:
    """The champion's card: the recorded config's text and what it was trained on."""
    from entai.demo.features import purchase_propensity
    from entai.shared.models import ModelCard, TrainingDataSummary

    text = _train_config(str(label_file)).card
    return ModelCard(
        model_name=MODEL_NAME,
        intended_use=text.intended_use,
        out_of_scope=text.out_of_scope,
        training_data=TrainingDataSummary(
            dataset_id="purchase_propensity_train",
            feature_service=purchase_propensity.name,
            rows=len(trained["train_df"]),
            validation_dataset_id="purchase_propensity_valid",
        ),
        metrics={"valid_auc": trained["valid_auc"], "held_out_auc": trained["test_auc"]},
        limitations=text.limitations,
        owners=text.owners,
    )


def register_champion(
    settings: EntaiSettings,
    trained: dict[str, Any],
    rows: pd.DataFrame,
    *,
    label_file: Path,
    trainer_token: str,
    approver_token: str,
    monitoring_policy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Log the run with its lineage artifacts, register it (``trainer_token``) and
    promote it to champion through the gates (``approver_token``: another principal).

    The label rows of the training period are written to ``label_file``, the
    champion's recorded label source, so a retrain with the recorded config rebuilds
    the same split. ``monitoring_policy`` goes into its monitoring reference (see
    ``MonitoringReference.policy``).
    """
    from entai.demo.features import MODEL_FEATURES, purchase_propensity
    from entai.pipelines.training import lineage_artifacts, lineage_tags, log_xgboost_run
    from entai.shared.monitoring import REFERENCE_ARTIFACT, MonitoringReference

    # The champion's label source: the rows it was trained and validated on.
    rows[rows["event_timestamp"] < trained["held_out_from"]].to_parquet(label_file, index=False)
    valid = trained["valid_df"]
    artifacts = lineage_artifacts(
        _train_config(str(label_file)),
        valid,
        MODEL_FEATURES,
        trained["outcome"].booster.inplace_predict(valid[list(MODEL_FEATURES)]),
        valid_auc=trained["valid_auc"],
        sample_size=settings.monitoring.reference_sample_size,
    )
    if monitoring_policy:
        reference = MonitoringReference.from_dict(artifacts[REFERENCE_ARTIFACT])
        artifacts[REFERENCE_ARTIFACT] = reference.with_policy(monitoring_policy).to_dict()
    logged = log_xgboost_run(
        settings.mlflow,
        trained["outcome"],
        params={**_XGB_PARAMS, "num_boost_round": _ROUNDS},
        metrics={"held_out_auc": trained["test_auc"], "oracle_auc": trained["oracle_auc"]},
        training_data=trained["train_df"],
        dataset_name="purchase_propensity_train",
        tags={"entai.feature_service": purchase_propensity.name},
        run_name="demo-train",
        artifacts=artifacts,
    )
    registry = Services.of(settings).registry()
    info = registry.call(
        ModelRegistry.register,
        logged.model_uri,
        MODEL_NAME,
        token=trainer_token,
        lineage={
            "entai.feature_service": purchase_propensity.name,
            **lineage_tags(logged.run_id),
        },
        run_id=logged.run_id,
        metrics={"valid_auc": trained["valid_auc"], "held_out_auc": trained["test_auc"]},
        validation_dataset_id="purchase_propensity_valid",
        card=_champion_card(label_file, trained),
    )
    registry.call(
        ModelRegistry.promote,
        MODEL_NAME,
        info.version,
        "champion",
        token=approver_token,
        reason="first model: passes the gates",
    )
    return {"version": info.version, "run_id": logged.run_id, "label_file": label_file}
