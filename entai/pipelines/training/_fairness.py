"""Training's fairness step: the validation set's fairness by each configured column.

:func:`with_fairness` adds to an evaluation (from ``evaluate_binary``) one report per
column of ``TrainConfig.fairness`` (``entai.shared.models.binary_fairness``) under
``"fairness"``, and their summary measures to its metrics as
``valid_fairness_<column>_<measure>``; training then records both with the version
(the model card's fairness section, which the promotion gate reads; the MLflow run's
metrics and ``evaluation.json``).

The ranker's evaluation does the same on its held-out ranking
(:func:`ranking_fairness_reports`, :func:`ranking_fairness_metrics`): exposure and
NDCG@k per group of each column of ``RankerConfig.fairness``, recorded in the card's
``ranking_fairness`` section and as ``valid_fairness_<column>_exposure_ratio`` and
``valid_fairness_<column>_ndcg_difference``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.pipelines.training._config import FairnessConfig, RankingFairnessConfig
from entai.shared.core import InvalidInputError
from entai.shared.models import (
    MISSING_GROUP,
    FairnessReport,
    RankingFairnessReport,
    binary_fairness,
    ranking_fairness,
)

__all__ = [
    "MISSING_GROUP",
    "check_fairness_columns",
    "check_ranking_fairness_columns",
    "fairness_metrics",
    "fairness_reports",
    "ranking_fairness_reports",
    "with_fairness",
]

log = logging.getLogger(__name__)

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
    out["metrics"] = {**out.get("metrics", {}), **fairness_metrics(reports, prefix=prefix)}
    out["fairness"] = {c: r.model_dump(mode="json") for c, r in reports.items()}
    return out


def fairness_metrics(
    reports: Mapping[str, FairnessReport | RankingFairnessReport], *, prefix: str = "valid_"
) -> dict[str, float]:
    """The reports' summary measures as ``<prefix>fairness_<column>_<measure>`` metrics."""
    metrics: dict[str, float] = {}
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
    return metrics


def ranking_fairness_reports(
    config: RankingFairnessConfig,
    rows: pd.DataFrame,
    catalogue: pd.DataFrame,
    scores: npt.ArrayLike,
    *,
    k: int,
) -> dict[str, RankingFairnessReport]:
    """One exposure/NDCG report per configured column over a ranker's ranked rows.

    Args:
        config: The columns and the minimum group size.
        rows: Ranked rows: ``request_id`` (the query), ``product_id``, ``gain`` (graded
            relevance) and any attribute columns.
        catalogue: Item attributes by ``product_id``, for columns ``rows`` lacks.
        scores: The ranker's score per row.
        k: Rank cut-off of exposure and NDCG.

    Raises:
        InvalidInputError: a column is in neither frame, or the scores are invalid.
    """
    frame = _with_item_attributes(config.columns, rows, catalogue)
    return {
        column: ranking_fairness(
            frame["request_id"].to_numpy(dtype=object),
            frame["gain"].to_numpy(dtype=np.float64),
            scores,
            frame[column].astype("string").fillna(MISSING_GROUP).to_numpy(dtype=object),
            attribute=column,
            k=k,
            min_group_size=config.min_group_size,
        )
        for column in config.columns
    }


def check_ranking_fairness_columns(
    config: RankingFairnessConfig | None, rows: pd.DataFrame, catalogue: pd.DataFrame
) -> None:
    """Fail before training when a ranker's fairness column is in neither frame.

    Raises:
        InvalidInputError: naming ``fairness.columns`` and the missing columns.
    """
    available = {*rows.columns, *catalogue.columns}
    missing = [c for c in (config.columns if config else ()) if c not in available]
    if missing:
        raise InvalidInputError(
            f"fairness.columns {missing} are neither columns of the ranking examples nor "
            "of the catalogue",
            details={"field": "fairness.columns", "missing": missing},
        )


def _with_item_attributes(
    columns: tuple[str, ...], rows: pd.DataFrame, catalogue: pd.DataFrame
) -> pd.DataFrame:
    """``rows`` with the catalogue's value of every column it lacks (by ``product_id``)."""
    check_ranking_fairness_columns(RankingFairnessConfig(columns=columns), rows, catalogue)
    wanted = [c for c in columns if c not in rows.columns]
    if not wanted:
        return rows
    items = catalogue[["product_id", *wanted]].drop_duplicates("product_id")
    joined = rows[["product_id"]].merge(items, on="product_id", how="left", validate="m:1")
    return rows.assign(**{c: joined[c].to_numpy() for c in wanted})
