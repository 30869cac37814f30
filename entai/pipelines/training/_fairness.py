"""Training's fairness step: the validation set's fairness by each configured column.

:func:`with_fairness` adds to an evaluation (from ``evaluate_binary``) one report per
column of ``TrainConfig.fairness`` (``entai.shared.models.binary_fairness``) under
``"fairness"``, and their summary measures to its metrics as
``valid_fairness_<column>_<measure>``; training then records both with the version
(the model card's fairness section, which the promotion gate reads; the MLflow run's
metrics and ``evaluation.json``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.pipelines.training._config import FairnessConfig
from entai.shared.core import InvalidInputError
from entai.shared.models import FairnessReport, binary_fairness

__all__ = ["MISSING_GROUP", "check_fairness_columns", "fairness_reports", "with_fairness"]

log = logging.getLogger(__name__)

MISSING_GROUP = "<missing>"
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def check_fairness_columns(config: FairnessConfig | None, frame: pd.DataFrame) -> None:
    """Fail before training when a fairness column is not in the training set.

    Raises:
        InvalidInputError: naming ``fairness.columns`` and the missing columns.
    """
    missing = [c for c in (config.columns if config else ()) if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"fairness.columns {missing} are not columns of the training set (add them to "
            "the label source or the feature service)",
            details={"field": "fairness.columns", "missing": missing},
        )


def fairness_reports(
    config: FairnessConfig,
    frame: pd.DataFrame,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
) -> dict[str, FairnessReport]:
    """One report per configured column over ``frame``'s rows (nulls form one group).

    Raises:
        InvalidInputError: a column is missing, or the labels or scores are invalid.
    """
    check_fairness_columns(config, frame)
    p = np.asarray(scores, dtype=np.float64)
    threshold = config.threshold
    if config.top_fraction is not None and len(p):
        threshold = float(np.quantile(p, 1.0 - config.top_fraction))
    return {
        column: binary_fairness(
            labels,
            p,
            frame[column].astype("string").fillna(MISSING_GROUP).to_numpy(dtype=object),
            attribute=column,
            threshold=threshold,
            min_group_size=config.min_group_size,
            bins=config.bins,
        )
        for column in config.columns
    }


def with_fairness(
    evaluation: Mapping[str, Any],
    config: FairnessConfig | None,
    frame: pd.DataFrame,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    prefix: str = "valid_",
) -> dict[str, Any]:
    """``evaluation`` plus the fairness reports (as JSON) and their summary metrics.

    Without a fairness config the evaluation comes back unchanged (as a new dict).
    """
    out = dict(evaluation)
    if config is None:
        return out
    reports = fairness_reports(config, frame, labels, scores)
    metrics = dict(out.get("metrics", {}))
    for column, report in reports.items():
        name = _METRIC_UNSAFE.sub("_", column)
        for measure, value in report.summary().items():
            metrics[f"{prefix}fairness_{name}_{measure}"] = value
        log.info(
            "fairness evaluated",
            extra={
                "attribute": column,
                "measures": report.summary(),
                "insufficient_groups": list(report.insufficient),
            },
        )
    out["metrics"] = metrics
    out["fairness"] = {c: r.model_dump(mode="json") for c, r in reports.items()}
    return out
