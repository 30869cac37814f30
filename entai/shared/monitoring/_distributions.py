"""The compact distributions a monitoring report plots, computed from profiles.

A monitored model's report (``ModelWatch.report``, served by
``GET /v1/monitoring/{model}``) carries ``distributions``: per profiled column, a compact
histogram of the reference next to the last closed window on the same bins.

Distributions (:func:`column_distribution`) are computed from the profiles, never from
raw rows:

- numeric: ``bins`` equal-width bins between the 0.5 % and 99.5 % quantiles of the two
  sides' samples (values beyond count in the end bins), as shares of non-null values;
- categorical: the ``max_categories - 1`` categories with the largest share on either
  side, the rest summed into ``(other)``; ``new`` flags categories the reference never
  had.

The window's side is computed when the window closes (its profile is gone after), so
the last closed window's distributions are kept in the watch's checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from entai.shared.monitoring._profiles import (
    OTHER,
    CategoricalColumnProfile,
    ColumnProfile,
    DatasetProfile,
    NumericColumnProfile,
)

__all__ = ["OTHER_LABEL", "column_distribution", "window_distributions"]

OTHER_LABEL = "(other)"
"""Label of the bucket that sums the categories not shown."""

_DIGITS = 6


def _shares(counts: npt.NDArray[Any]) -> list[float]:
    total = float(counts.sum())
    if total <= 0:
        return [0.0] * int(counts.size)
    return [round(float(c) / total, _DIGITS) for c in counts]


def _numeric(
    ref: NumericColumnProfile, cur: NumericColumnProfile | None, bins: int
) -> dict[str, Any]:
    sides = [ref.values] + ([cur.values] if cur is not None else [])
    present = [v for v in sides if v.size]
    if not present:
        return {"kind": "numeric", "edges": [], "reference": [], "current": None}
    lo = min(float(np.quantile(v, 0.005)) for v in present)
    hi = max(float(np.quantile(v, 0.995)) for v in present)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def shares(values: npt.NDArray[np.float64]) -> list[float]:
        counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
        return _shares(counts)

    return {
        "kind": "numeric",
        "edges": [round(float(e), _DIGITS) for e in edges],
        "reference": shares(ref.values),
        "current": None if cur is None else shares(cur.values),
    }


def _category_counts(profile: CategoricalColumnProfile) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, count in zip(profile.categories.tolist(), profile.counts.tolist(), strict=True):
        name = OTHER_LABEL if label == OTHER else str(label)
        out[name] = out.get(name, 0.0) + float(count)
    return out


def _categorical(
    ref: CategoricalColumnProfile, cur: CategoricalColumnProfile | None, max_categories: int
) -> dict[str, Any]:
    sides = [_category_counts(ref)] + ([_category_counts(cur)] if cur is not None else [])
    totals = [sum(side.values()) for side in sides]
    labels = {label for side in sides for label in side if label != OTHER_LABEL}
    weight = {
        label: max(s.get(label, 0.0) / t for s, t in zip(sides, totals, strict=True) if t > 0)
        for label in labels
    }
    ranked = sorted(labels, key=lambda label: (-weight[label], label))
    shown = ranked[: max_categories - 1] if len(ranked) >= max_categories else ranked
    folded = len(shown) < len(ranked) or any(OTHER_LABEL in side for side in sides)
    categories = [*shown, OTHER_LABEL] if folded else shown

    def shares(side: Mapping[str, float], total: float) -> list[float]:
        counts = [side.get(label, 0.0) for label in shown]
        if folded:
            counts.append(total - sum(counts))
        return _shares(np.asarray(counts, dtype=np.float64))

    return {
        "kind": "categorical",
        "categories": categories,
        "new": [label not in sides[0] and label != OTHER_LABEL for label in categories],
        "reference": shares(sides[0], totals[0]),
        "current": None if cur is None else shares(sides[1], totals[1]),
    }


def column_distribution(
    reference: ColumnProfile,
    current: ColumnProfile | None,
    *,
    bins: int = 20,
    max_categories: int = 12,
) -> dict[str, Any]:
    """A column's reference and current distributions on shared bins or categories.

    Args:
        reference: The reference profile of the column.
        current: The window's profile of the column; None gives the reference alone
            (``current`` is then None). A profile of the other kind counts as None.
        bins: Equal-width bins of a numeric column.
        max_categories: Categories shown for a categorical column, ``(other)`` included.

    Returns:
        ``{"kind": "numeric", "edges", "reference", "current"}`` or ``{"kind":
        "categorical", "categories", "new", "reference", "current"}``; shares of the
        non-null values (null rates are in the drift summary).
    """
    if isinstance(reference, NumericColumnProfile):
        cur = current if isinstance(current, NumericColumnProfile) else None
        return _numeric(reference, cur, bins)
    cat = current if isinstance(current, CategoricalColumnProfile) else None
    return _categorical(reference, cat, max_categories)


def window_distributions(
    reference: DatasetProfile, window: DatasetProfile | None, columns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """:func:`column_distribution` of each of ``columns`` the reference profiles."""
    current = {} if window is None else window.columns
    return {
        name: column_distribution(reference.columns[name], current.get(name))
        for name in columns
        if name in reference.columns
    }
