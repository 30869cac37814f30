"""What a model version is monitored against, recorded in its lineage when it is trained.

The training run profiles the model's inputs and its own scores on the validation set
(:class:`MonitoringReference`: held-out rows, so the score distribution is the one
serving will see, not the training set's overfitted one) and logs it as the run's
artifact :data:`REFERENCE_ARTIFACT`. It also logs the training configuration that
produced the version (:data:`TRAIN_CONFIG_ARTIFACT`), which a retrain reuses to rebuild
the training set with fresh data through the same point-in-time path. The registered
version's tags :data:`REFERENCE_TAG` and :data:`TRAIN_CONFIG_TAG` hold the artifacts'
URIs, so lineage leads from a served version to both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.shared.core import InvalidInputError
from entai.shared.monitoring._profiles import ReferenceProfile
from entai.shared.settings import MonitoringSettings

__all__ = [
    "REFERENCE_ARTIFACT",
    "REFERENCE_TAG",
    "TRAIN_CONFIG_ARTIFACT",
    "TRAIN_CONFIG_TAG",
    "MonitoringReference",
    "artifact_uri",
]

REFERENCE_ARTIFACT = "monitoring/reference_profile.json"
TRAIN_CONFIG_ARTIFACT = "training/train_config.json"
REFERENCE_TAG = "entai.monitoring_reference"
TRAIN_CONFIG_TAG = "entai.train_config"


def artifact_uri(run_id: str, path: str) -> str:
    """The URI MLflow loads a run's artifact from."""
    return f"runs:/{run_id}/{path}"


@dataclass(frozen=True)
class MonitoringReference:
    """A model version's reference profile and what the monitor needs around it.

    Attributes:
        feature_columns: The model's inputs, as served rows name them.
        prediction_column: The score column (profiled too, for prediction drift).
        profile: ``ReferenceProfile.to_dict()`` over the features and the scores.
        reference_auc: Validation AUC, for the realised-AUC retraining rule.
    """

    feature_columns: tuple[str, ...]
    prediction_column: str
    profile: Mapping[str, Any]
    reference_auc: float | None

    @classmethod
    def from_scores(
        cls,
        frame: pd.DataFrame,
        feature_columns: Sequence[str],
        scores: npt.ArrayLike,
        *,
        prediction_column: str = "prediction",
        reference_auc: float | None = None,
        sample_size: int = 5000,
    ) -> MonitoringReference:
        """Profile ``frame``'s feature columns and the model's ``scores`` on those rows.

        Raises:
            InvalidInputError: a feature column is missing, or the scores do not match
                the rows one to one.
        """
        features = [str(c) for c in feature_columns]
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"reference rows lack feature column(s) {missing}",
                details={"field": "feature_columns", "missing": missing},
            )
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        if values.size != len(frame):
            raise InvalidInputError(
                f"{values.size} scores for {len(frame)} reference rows",
                details={"field": "scores"},
            )
        data = frame[features].reset_index(drop=True)
        data[prediction_column] = values
        profile = ReferenceProfile.from_frame(data, sample_size=sample_size)
        return cls(tuple(features), prediction_column, profile.to_dict(), reference_auc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the artifact's content)."""
        return {
            "feature_columns": list(self.feature_columns),
            "prediction_column": self.prediction_column,
            "reference_auc": self.reference_auc,
            "profile": dict(self.profile),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitoringReference:
        """Read an artifact written by :meth:`to_dict`.

        Raises:
            InvalidInputError: a field is missing or has the wrong type.
        """
        try:
            auc = data["reference_auc"]
            return cls(
                tuple(str(c) for c in data["feature_columns"]),
                str(data["prediction_column"]),
                dict(data["profile"]),
                None if auc is None else float(auc),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"monitoring reference is malformed: {exc!r}", details={"field": "reference"}
            ) from exc

    def registration(self, settings: MonitoringSettings) -> dict[str, Any]:
        """Keyword arguments of ``DriftMonitor.register_model`` under ``settings``."""
        return {
            "feature_columns": list(self.feature_columns),
            "prediction_column": self.prediction_column,
            "window": settings.window(),
            "drift_config": settings.drift.model_dump(),
            "alert_policy": settings.alerts.model_dump(),
            "retrain_policy": settings.retrain.model_dump(),
            "reference_auc": self.reference_auc,
        }
