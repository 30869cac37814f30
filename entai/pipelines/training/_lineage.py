"""A trained version's lineage artifacts: its monitoring reference and training config.

Every training run logs both (:mod:`entai.shared.monitoring._reference` names them) and
tags the registered version with their URIs. Serving has the DriftMonitor watch a
champion against its reference; the retraining worker reads the config back with
:func:`recorded_train_config` to train the same model again on fresh data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from entai.actors.models import version_artifact
from entai.pipelines.training._config import TrainConfig
from entai.shared.core import ConfigError, NotFoundError
from entai.shared.monitoring import (
    REFERENCE_ARTIFACT,
    REFERENCE_TAG,
    TRAIN_CONFIG_ARTIFACT,
    TRAIN_CONFIG_TAG,
    MonitoringReference,
    artifact_uri,
)
from entai.shared.settings import EntaiSettings

__all__ = ["lineage_artifacts", "lineage_tags", "recorded_config", "recorded_train_config"]


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def recorded_config(config: TrainConfig) -> dict[str, Any]:
    """The config as JSON: ``TrainConfig`` fields only, local paths made absolute.

    A tuning config is recorded as the plain training config of its best trial (pass
    it with the best parameters and rounds filled in), which is what a retrain reruns.
    """
    data = config.model_dump(mode="json", include=set(TrainConfig.model_fields))
    data["label_source"] = _absolute(config.label_source)
    if config.definitions_module.endswith(".py"):
        data["definitions_module"] = _absolute(config.definitions_module)
    return data


def lineage_artifacts(
    config: TrainConfig,
    valid: pd.DataFrame,
    features: Sequence[str],
    scores: npt.ArrayLike,
    *,
    valid_auc: float,
    sample_size: int,
) -> dict[str, dict[str, Any]]:
    """The artifacts a training run logs: ``{path: JSON content}``.

    The reference profiles ``features`` of the validation rows together with the
    model's scores on those rows (held out, so the scores look like served ones).

    Args:
        config: The configuration that trained the model (as it ran).
        valid: Validation rows.
        features: The model's inputs.
        scores: The model's score for each validation row.
        valid_auc: Validation AUC (the realised-AUC retraining rule's baseline).
        sample_size: Values kept per numeric column of the reference.
    """
    reference = MonitoringReference.from_scores(
        valid, features, scores, reference_auc=valid_auc, sample_size=sample_size
    )
    return {REFERENCE_ARTIFACT: reference.to_dict(), TRAIN_CONFIG_ARTIFACT: recorded_config(config)}


def lineage_tags(run_id: str) -> dict[str, str]:
    """Version tags pointing at the artifacts of run ``run_id``."""
    return {
        REFERENCE_TAG: artifact_uri(run_id, REFERENCE_ARTIFACT),
        TRAIN_CONFIG_TAG: artifact_uri(run_id, TRAIN_CONFIG_ARTIFACT),
    }


def recorded_train_config(settings: EntaiSettings, model: str, version: int) -> TrainConfig:
    """The training config recorded in a version's lineage.

    Raises:
        NotFoundError: no such version, or it was registered without a config.
        ConfigError: the recorded config is no longer a valid ``TrainConfig``.
    """
    data = version_artifact(settings.mlflow, model, version, TRAIN_CONFIG_TAG)
    if data is None:
        raise NotFoundError(
            f"version {version} of model {model!r} has no recorded training config; "
            "train it with `entai train` to make it retrainable",
            details={"model": model, "version": version, "tag": TRAIN_CONFIG_TAG},
        )
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"the training config of model {model!r} version {version} is invalid: "
            f"{exc.error_count()} error(s)",
            details={"model": model, "version": version},
        ) from exc
