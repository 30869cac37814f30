"""Global explanations: which features matter to a model overall, and how.

:func:`global_explanation` summarises an :class:`~entai.shared.models._explain.Attribution`
over a dataset (training logs it for the validation set): each feature's importance is
its mean absolute contribution, and for the top features a dependence summary says how
the contribution moves with the feature's value (mean value and mean contribution per
quantile bin, the numbers behind a SHAP dependence plot). The result is a frozen
pydantic model, so it is logged as JSON and stored in the model card.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from entai.shared.core import InvalidInputError
from entai.shared.models._explain import Attribution

__all__ = ["DependenceBin", "FeatureImportance", "GlobalExplanation", "global_explanation"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DependenceBin(_Frozen):
    """One quantile bin of a feature's values (or its missing values).

    Attributes:
        low: Smallest value in the bin (None for the missing-value bin).
        high: Largest value in the bin (None for the missing-value bin).
        rows: Rows in the bin.
        mean_value: Mean feature value (None for the missing-value bin).
        mean_contribution: Mean contribution of the feature over the bin's rows.
    """

    low: float | None
    high: float | None
    rows: int = Field(ge=0)
    mean_value: float | None
    mean_contribution: float


class FeatureImportance(_Frozen):
    """One feature's global importance and, for the top features, its dependence.

    Attributes:
        feature: The feature's name.
        mean_abs_contribution: Mean ``|contribution|`` over the rows (margin units).
        mean_contribution: Mean signed contribution.
        dependence: Quantile bins of the feature's values, lowest first, then missing.
    """

    feature: str
    mean_abs_contribution: float
    mean_contribution: float
    dependence: tuple[DependenceBin, ...] = ()


class GlobalExplanation(_Frozen):
    """A model's global explanation over one dataset.

    Attributes:
        method: The explainer behind it (``tree_shap``, ``linear``, ``sampling_shapley``).
        rows: Rows explained.
        base_value: The explanation's base margin.
        importance: Every feature's mean absolute contribution, largest first.
        top: The ``top_k`` most important features with their dependence summaries.
    """

    method: str
    rows: int = Field(ge=0)
    base_value: float
    importance: dict[str, float]
    top: tuple[FeatureImportance, ...] = ()


def global_explanation(
    attribution: Attribution,
    matrix: npt.ArrayLike,
    *,
    top_k: int = 5,
    bins: int = 5,
) -> GlobalExplanation:
    """Importance of every feature and the dependence of the ``top_k`` most important.

    Args:
        attribution: Contributions of the rows of ``matrix``.
        matrix: The explained rows (columns in the attribution's feature order).
        top_k: Features given a dependence summary.
        bins: Quantile bins per dependence summary (fewer when values repeat).

    Raises:
        InvalidInputError: ``matrix`` does not match the attribution.
    """
    values = np.asarray(matrix, dtype=np.float64)
    contributions = attribution.contributions
    if values.shape != contributions.shape:
        raise InvalidInputError(
            f"explained rows of shape {list(values.shape)} do not match contributions "
            f"of shape {list(contributions.shape)}",
            details={"field": "matrix"},
        )
    names = attribution.feature_names
    if len(values):
        mean_abs = np.abs(contributions).mean(axis=0)
        mean = contributions.mean(axis=0)
    else:
        mean_abs = mean = np.zeros(len(names))
    order = sorted(range(len(names)), key=lambda j: (-mean_abs[j], names[j]))
    top = tuple(
        FeatureImportance(
            feature=names[j],
            mean_abs_contribution=float(mean_abs[j]),
            mean_contribution=float(mean[j]),
            dependence=_dependence(values[:, j], contributions[:, j], bins),
        )
        for j in order[: max(0, top_k)]
    )
    return GlobalExplanation(
        method=attribution.method,
        rows=len(values),
        base_value=attribution.base_value,
        importance={names[j]: float(mean_abs[j]) for j in order},
        top=top,
    )


def _dependence(
    values: np.ndarray, contributions: np.ndarray, bins: int
) -> tuple[DependenceBin, ...]:
    """Quantile bins of ``values`` (edges shared by equal values), then the missing ones."""
    present = np.isfinite(values)
    out: list[DependenceBin] = []
    v, c = values[present], contributions[present]
    if len(v):
        edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, max(1, bins) + 1)))
        # bin index: values equal to an inner edge go to the upper bin; the top edge closes
        index = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max(0, len(edges) - 2))
        for b in range(max(1, len(edges) - 1)):
            mask = index == b
            if not mask.any():
                continue
            out.append(
                DependenceBin(
                    low=float(v[mask].min()),
                    high=float(v[mask].max()),
                    rows=int(mask.sum()),
                    mean_value=float(v[mask].mean()),
                    mean_contribution=float(c[mask].mean()),
                )
            )
    if (~present).any():
        out.append(
            DependenceBin(
                low=None,
                high=None,
                rows=int((~present).sum()),
                mean_value=None,
                mean_contribution=float(contributions[~present].mean()),
            )
        )
    return tuple(out)
