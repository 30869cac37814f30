"""What a model version is monitored against, recorded in its lineage when it is trained.

The training run profiles the model's inputs and its own scores on the validation set
(:class:`MonitoringReference`: held-out rows, so the score distribution is the one
serving will see, not the training set's overfitted one) and logs it as the run's
artifact :data:`REFERENCE_ARTIFACT`. It also logs the training configuration that
produced the version (:data:`TRAIN_CONFIG_ARTIFACT`), which a retrain reuses to rebuild
the training set with fresh data through the same point-in-time path. The registered
version's tags :data:`REFERENCE_TAG` and :data:`TRAIN_CONFIG_TAG` hold the artifacts'
URIs, so lineage leads from a served version to both.

A reference may also carry the version's own monitoring policy (:data:`POLICY_FIELDS`
of the ``monitoring`` settings: windows, drift thresholds, alerting, retraining), for a
model that must be watched differently from the platform's defaults (the demo's small
windows); the platform's settings fill in whatever it leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from entai.shared.core import InvalidInputError
from entai.shared.monitoring._profiles import ReferenceProfile
from entai.shared.settings import MonitoringSettings

__all__ = [
    "POLICY_FIELDS",
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
POLICY_FIELDS = frozenset(
    {"window_count", "window_seconds", "grace_s", "sample_size", "drift", "alerts", "retrain"}
)
"""The ``monitoring`` settings a version's reference may set for that version alone."""


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
        policy: This version's own values of some :data:`POLICY_FIELDS` (nested
            sections may be partial), or None to follow the platform's settings.
        fairness: The fairness columns the version's model card names, with the
            settings training compared their groups with
            (``WindowFairness.columns_of``); the registry's lineage source adds them
            from the card, and the monitor recomputes them per window.
    """

    feature_columns: tuple[str, ...]
    prediction_column: str
    profile: Mapping[str, Any]
    reference_auc: float | None
    policy: Mapping[str, Any] | None = None
    fairness: Mapping[str, Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policy or {}) - POLICY_FIELDS)
        if unknown:
            raise InvalidInputError(
                f"monitoring policy fields {unknown} cannot be set per model; "
                f"allowed: {sorted(POLICY_FIELDS)}",
                details={"field": "policy", "unknown": unknown},
            )

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
        out: dict[str, Any] = {
            "feature_columns": list(self.feature_columns),
            "prediction_column": self.prediction_column,
            "reference_auc": self.reference_auc,
            "profile": dict(self.profile),
        }
        if self.policy:
            out["policy"] = dict(self.policy)
        if self.fairness:
            out["fairness"] = {c: dict(v) for c, v in self.fairness.items()}
        return out

    def with_policy(self, policy: Mapping[str, Any]) -> MonitoringReference:
        """A copy that monitors this version with ``policy`` (see :data:`POLICY_FIELDS`)."""
        return MonitoringReference(
            self.feature_columns, self.prediction_column, self.profile, self.reference_auc,
            dict(policy), self.fairness,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitoringReference:
        """Read an artifact written by :meth:`to_dict`.

        Raises:
            InvalidInputError: a field is missing or has the wrong type.
        """
        try:
            auc = data["reference_auc"]
            policy = data.get("policy")
            fairness = data.get("fairness")
            return cls(
                tuple(str(c) for c in data["feature_columns"]),
                str(data["prediction_column"]),
                dict(data["profile"]),
                None if auc is None else float(auc),
                None if policy is None else dict(policy),
                None if not fairness else {str(c): dict(v) for c, v in fairness.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"monitoring reference is malformed: {exc!r}", details={"field": "reference"}
            ) from exc

    def settings_for(self, settings: MonitoringSettings) -> MonitoringSettings:
        """``settings`` with this version's policy applied over them.

        Raises:
            InvalidInputError: the policy gives a field an invalid value.
        """
        if not self.policy:
            return settings
        merged = settings.model_dump()
        for key, value in self.policy.items():
            base = merged.get(key)
            merged[key] = {**base, **value} if isinstance(base, dict) else value
        try:
            return MonitoringSettings.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInputError(
                f"monitoring policy of the reference is invalid: {where}: {first['msg']}",
                details={"field": f"policy.{where}"},
            ) from exc

    def registration(self, settings: MonitoringSettings) -> dict[str, Any]:
        """Keyword arguments of ``DriftMonitor.register_model`` (but its credential) under
        ``settings`` (with this version's policy applied over them)."""
        settings = self.settings_for(settings)
        return {
            "feature_columns": list(self.feature_columns),
            "prediction_column": self.prediction_column,
            "window": settings.window(),
            "drift_config": settings.drift.model_dump(),
            "alert_policy": settings.alerts.model_dump(),
            "retrain_policy": settings.retrain.model_dump(),
            "reference_auc": self.reference_auc,
        }
