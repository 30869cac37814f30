"""The product ranker: XGBoost on Ray, evaluated against popularity, registered, promoted.

A pointwise model (``binary:logistic``: will the user interact with this candidate
within the horizon?) is trained on ranking examples built at cutoffs
(:func:`entai.shared.recommend.ranking_examples`: every feature is computed from the
events before its cutoff, so the rows are point-in-time correct by construction).
The cutoffs are split in time: the earliest train, the next validate (early
diagnostics, ``valid_auc`` for the promotion gate), the last ``held_out`` share is
the offline evaluation: NDCG, precision and recall at k of the model's ranking of the
candidates against the popularity baseline on the same requests, and, per column of
``RankerConfig.fairness`` (an item attribute such as the category), the exposure and
NDCG@k each group of items gets (``ranking_fairness``): on the model card's
``ranking_fairness`` section, which the promotion gate's ranking thresholds read, and
as ``valid_fairness_<column>_<measure>`` metrics.

:func:`register_ranker` logs the run to MLflow with the serving index (the
interaction index as of the end of the events, ``interaction_index.json``), registers
the version with its metrics and model card and asks the registry to promote it to
``champion`` through the gates (a second principal approves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from entai.actors.core import Service
from entai.actors.models import ModelRegistry, ModelVersionInfo
from entai.pipelines.training._config import RankingFairnessConfig
from entai.pipelines.training._fairness import (
    check_ranking_fairness_columns,
    fairness_metrics,
    ranking_fairness_reports,
)
from entai.pipelines.training._tracking import LoggedRun, log_xgboost_run
from entai.pipelines.training._train import TrainOutcome, evaluate_binary, train_xgboost
from entai.shared.core import InvalidInputError
from entai.shared.models import ModelCard, RankingFairnessReport, TrainingDataSummary
from entai.shared.recommend import (
    INDEX_ARTIFACT,
    RANKING_FEATURES,
    InteractionIndex,
    RankingExamples,
    evaluate_ranking,
    ranking_examples,
)
from entai.shared.settings import EntaiSettings

__all__ = [
    "RANKER_PARAMS",
    "RankerConfig",
    "TrainedRanker",
    "register_ranker",
    "split_examples",
    "train_ranker",
]

RANKER_PARAMS: Mapping[str, Any] = {
    "objective": "binary:logistic",
    "max_depth": 5,
    "eta": 0.1,
    "min_child_weight": 5,
}
_FEATURE_SOURCE = "entai.shared.recommend:InteractionIndex"


@dataclass(frozen=True, kw_only=True)
class RankerConfig:
    """How the ranker is trained and evaluated.

    Attributes:
        model_name: Registered model name.
        first_cutoff_day: Days of history before the first cutoff.
        cutoff_every_days: Days between cutoffs.
        horizon: How far after a cutoff interactions are relevant.
        users_per_cutoff: Users sampled per cutoff.
        held_out_fraction: Share of the latest cutoffs kept for the offline evaluation.
        valid_fraction: Share of the remaining cutoffs used for validation.
        k: The cut-off of the ranking metrics.
        num_boost_round: Boosting rounds.
        seed: Sampling seed.
        fairness: Item attributes the held-out ranking's fairness is evaluated by.
    """

    model_name: str = "product_ranker"
    first_cutoff_day: int = 14
    cutoff_every_days: int = 3
    horizon: timedelta = timedelta(days=7)
    users_per_cutoff: int = 300
    held_out_fraction: float = 0.25
    valid_fraction: float = 0.25
    k: int = 10
    num_boost_round: int = 120
    seed: int = 0
    fairness: RankingFairnessConfig | None = None

    def split(self, cutoffs: Sequence[datetime]) -> tuple[datetime, datetime]:
        """Where validation and the held-out period start among ``cutoffs``."""
        n = len(cutoffs)
        held = min(max(round(n * (1.0 - self.held_out_fraction)), 2), n - 1)
        valid = min(max(round(held * (1.0 - self.valid_fraction)), 1), held - 1)
        return cutoffs[valid], cutoffs[held]

    def cutoffs(self, start: datetime, end: datetime) -> list[datetime]:
        """Cutoffs from ``start + first_cutoff_day`` while a full horizon fits before ``end``."""
        out: list[datetime] = []
        at = start + timedelta(days=self.first_cutoff_day)
        while at + self.horizon <= end:
            out.append(at)
            at += timedelta(days=self.cutoff_every_days)
        return out


@dataclass(frozen=True)
class TrainedRanker:
    """A trained ranker and its offline evaluation.

    Attributes:
        outcome: The booster and its curves.
        config: How it was trained.
        train: Training examples.
        valid: Validation examples.
        held_out: Offline-evaluation examples (latest cutoffs).
        metrics: ``valid_auc`` and, on held-out time, ``ndcg_at_<k>``,
            ``precision_at_<k>``, ``recall_at_<k>`` of the model and
            ``popularity_ndcg_at_<k>`` etc. of the baseline.
        index: The interaction index as of the end of the events (what serving uses).
        dataset_id: Content hash of the examples.
        fairness: The held-out ranking's fairness per configured column.
    """

    outcome: TrainOutcome
    config: RankerConfig
    train: RankingExamples
    valid: RankingExamples
    held_out: RankingExamples
    metrics: dict[str, float]
    index: InteractionIndex
    dataset_id: str
    fairness: dict[str, RankingFairnessReport] = field(default_factory=dict)


def _dataset_id(rows: pd.DataFrame) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return "ranking-" + digest.hexdigest()[:16]


def split_examples(
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    config: RankerConfig,
) -> tuple[RankingExamples, RankingExamples, RankingExamples, str]:
    """Examples at the config's cutoffs, split in time: train, valid, held out, and the
    content hash of all of them.

    Raises:
        InvalidInputError: fewer than three cutoffs fit in the history.
    """
    cutoffs = config.cutoffs(start, end)
    if len(cutoffs) < 3:
        raise InvalidInputError(
            f"the history gives {len(cutoffs)} cutoff(s); the ranker needs at least 3",
            details={"field": "cutoffs"},
        )
    examples = ranking_examples(
        events,
        catalogue,
        cutoffs,
        config.horizon,
        users_per_cutoff=config.users_per_cutoff,
        seed=config.seed,
        baseline_k=config.k,
    )
    valid_from, held_out_from = config.split(cutoffs)
    development = examples.before(held_out_from)
    return (
        development.before(valid_from),
        development.from_(valid_from),
        examples.from_(held_out_from),
        _dataset_id(examples.rows),
    )


def train_ranker(
    settings: EntaiSettings,
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    config: RankerConfig | None = None,
) -> TrainedRanker:
    """Build examples at cutoffs, train on the early ones, evaluate on held-out time.

    Args:
        settings: Platform settings (Ray Train's storage under its home).
        events: user_id, product_id, event_type, event_timestamp.
        catalogue: product_id, category, price.
        start: First instant of the history.
        end: End of the history (the serving index is built as of it).
        config: Cutoffs, sizes and rounds.

    Raises:
        InvalidInputError: fewer than three cutoffs fit in the history.
    """
    config = config or RankerConfig()
    train, valid, held_out, dataset_id = split_examples(
        events, catalogue, start=start, end=end, config=config
    )
    check_ranking_fairness_columns(config.fairness, held_out.rows, catalogue)
    features = list(RANKING_FEATURES)
    outcome = train_xgboost(
        train.rows,
        valid.rows,
        feature_columns=features,
        label_column="label",
        params=dict(RANKER_PARAMS),
        num_boost_round=config.num_boost_round,
        storage_path=settings.home / "ray_train",
        run_name=f"{config.model_name}-train",
    )
    valid_scores = outcome.booster.inplace_predict(valid.rows[features].to_numpy(np.float32))
    scores = outcome.booster.inplace_predict(held_out.rows[features].to_numpy(np.float32))
    ranked = evaluate_ranking(held_out, scores, config.k)
    metrics = {
        "valid_auc": evaluate_binary(valid.rows["label"], valid_scores)["metrics"]["valid_auc"],
        **{k: v for k, v in ranked["model"].as_dict().items() if k != "lists"},
        **{f"popularity_{k}": v for k, v in ranked["popularity"].as_dict().items() if k != "lists"},
        "held_out_requests": float(ranked["model"].lists),
    }
    fairness = (
        {}
        if config.fairness is None
        else ranking_fairness_reports(config.fairness, held_out.rows, catalogue, scores, k=config.k)
    )
    metrics.update(fairness_metrics(fairness))
    return TrainedRanker(
        outcome=outcome,
        config=config,
        train=train,
        valid=valid,
        held_out=held_out,
        metrics={k: round(float(v), 4) for k, v in metrics.items()},
        index=InteractionIndex.from_events(events, catalogue, as_of=end),
        dataset_id=dataset_id,
        fairness=fairness,
    )


def _card(trained: TrainedRanker) -> ModelCard:
    rows = trained.train.rows
    ts = rows["event_timestamp"]
    return ModelCard(
        model_name=trained.config.model_name,
        intended_use="order a shopper's candidate products by their chance of a view, cart "
        "or purchase within 7 days, for on-site recommendations",
        out_of_scope="pricing, credit or any decision about a person",
        training_data=TrainingDataSummary(
            dataset_id=trained.dataset_id,
            feature_service=_FEATURE_SOURCE,
            rows=len(rows),
            label_rate=float(rows["label"].mean()),
            time_range=(ts.min().isoformat(), ts.max().isoformat()),
            validation_dataset_id=trained.dataset_id + "/valid",
        ),
        metrics=dict(trained.metrics),
        ranking_fairness=dict(trained.fairness),
        limitations=(
            "trained on synthetic events",
            "user histories in the serving index are as of training until the next retrain",
        ),
        owners=("demo@entai.local",),
    )


def register_ranker(
    settings: EntaiSettings,
    trained: TrainedRanker,
    registry: Service[ModelRegistry],
    *,
    token: str,
    approver_token: str,
) -> tuple[ModelVersionInfo, LoggedRun]:
    """Log the run (with the serving index), register it, promote it through the gates.

    ``token`` registers (its principal is the registrant, ``models:register``);
    ``approver_token`` promotes (``models:approve``, another principal: four-eyes).

    Raises:
        PromotionRejectedError: a gate failed (the version stays registered).
    """
    logged = log_xgboost_run(
        settings.mlflow,
        trained.outcome,
        params={**RANKER_PARAMS, "num_boost_round": trained.config.num_boost_round},
        metrics=trained.metrics,
        training_data=trained.train.rows,
        dataset_name=trained.dataset_id,
        tags={"entai.feature_service": _FEATURE_SOURCE, "entai.model_kind": "ranker"},
        run_name=f"{trained.config.model_name}-train",
        label_column="label",
        artifacts={INDEX_ARTIFACT: trained.index.to_dict()},
    )
    info = registry.call(
        ModelRegistry.register,
        logged.model_uri,
        trained.config.model_name,
        token=token,
        lineage={"entai.feature_service": _FEATURE_SOURCE, "entai.run_id": logged.run_id},
        run_id=logged.run_id,
        metrics=trained.metrics,
        validation_dataset_id=trained.dataset_id + "/valid",
        card=_card(trained),
    )
    promoted = registry.call(
        ModelRegistry.promote,
        trained.config.model_name,
        info.version,
        "champion",
        token=approver_token,
        reason=f"NDCG@{trained.config.k} {trained.metrics[f'ndcg_at_{trained.config.k}']} vs "
        f"popularity {trained.metrics[f'popularity_ndcg_at_{trained.config.k}']}",
    )
    return promoted, logged
