"""Fairness per monitoring window: a binary classifier's disparity measures recomputed
from the feedback labels of each window's served rows.

A version whose model card names fairness columns (``ModelCard.fairness``, filled by
training) is watched by them: :meth:`WindowFairness.columns_of` reads, per column,
the decision threshold, minimum group size and calibration bins training used, and
the policy's thresholds (``registry.policy.fairness``, the promotion gate's) say when
a measure is flagged. The group of each served row is the value of that column in the
row the prediction tap sent (a served feature or request feature); a column no served
row carries is reported unavailable, never guessed.

:func:`window_fairness` computes, for one window's labelled rows, every column's
:func:`~entai.shared.models.binary_fairness` summary (demographic parity difference,
equalized odds difference, disparate impact ratio, and the per-group counts and
rates) and which thresholds it crosses; :func:`fairness_verdicts` turns that into one
verdict per ``(attribute, measure)`` for the alert state machine, skipping measures
that could not be computed (too few labelled rows per group), as drift skips
``INSUFFICIENT_DATA``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from entai.shared.models import MISSING_GROUP, FairnessPolicy, ModelCard, binary_fairness

__all__ = [
    "FairnessColumn",
    "WindowFairness",
    "fairness_verdicts",
    "group_values",
    "window_fairness",
]


@dataclass(frozen=True)
class FairnessColumn:
    """How one attribute's groups are compared (as training compared them).

    Attributes:
        threshold: Scores at or above it count as selected.
        min_group_size: Groups with fewer labelled rows are reported, not compared.
        bins: Equal-width score bins of each group's calibration error.
    """

    threshold: float = 0.5
    min_group_size: int = 30
    bins: int = 10


@dataclass(frozen=True)
class WindowFairness:
    """What a watched version's windows are checked for.

    Attributes:
        columns: The attributes, by name, with how their groups are compared.
        bounds: ``(measure, threshold, is_upper_bound)`` that flag a window.
        attributes: Attributes whose crossings alert; empty means every column.
    """

    columns: Mapping[str, FairnessColumn]
    bounds: tuple[tuple[str, float, bool], ...] = ()
    attributes: tuple[str, ...] = ()

    @staticmethod
    def columns_of(card: ModelCard) -> dict[str, dict[str, Any]]:
        """The fairness columns a card names, with the settings its reports used."""
        return {
            column: {
                "threshold": report.threshold,
                "min_group_size": report.min_group_size,
                "bins": report.bins,
            }
            for column, report in sorted(card.fairness.items())
        }

    @classmethod
    def create(
        cls, columns: Mapping[str, Mapping[str, Any]], policy: FairnessPolicy | None
    ) -> WindowFairness:
        """Columns (from :meth:`columns_of`) checked against ``policy``'s binary thresholds."""
        return cls(
            columns={c: FairnessColumn(**dict(v)) for c, v in columns.items()},
            bounds=tuple(policy.bounds()) if policy is not None else (),
            attributes=tuple(policy.attributes) if policy is not None else (),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (part of the watch's configuration)."""
        return {
            "columns": {
                c: {"threshold": v.threshold, "min_group_size": v.min_group_size, "bins": v.bins}
                for c, v in self.columns.items()
            },
            "bounds": [[m, b, upper] for m, b, upper in self.bounds],
            "attributes": list(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowFairness:
        """Read :meth:`to_dict` output."""
        return cls(
            columns={c: FairnessColumn(**dict(v)) for c, v in data["columns"].items()},
            bounds=tuple((str(m), float(b), bool(u)) for m, b, u in data.get("bounds", [])),
            attributes=tuple(str(a) for a in data.get("attributes", [])),
        )

    def alerted(self, attribute: str) -> bool:
        """Whether crossings on ``attribute`` raise alerts."""
        return not self.attributes or attribute in self.attributes


def group_values(values: Sequence[Any]) -> list[str | None]:
    """A served column's values as group names (None where the row has no value)."""
    out: list[str | None] = []
    for v in values:
        missing = v is None or (isinstance(v, float) and np.isnan(v))
        out.append(None if missing else str(v))
    return out


def window_fairness(
    config: WindowFairness,
    labels: npt.NDArray[np.float64],
    predictions: npt.NDArray[np.float64],
    groups: Mapping[str, npt.NDArray[np.object_] | None],
) -> dict[str, dict[str, Any]]:
    """Each column's fairness over one window's labelled rows.

    Args:
        config: The columns, their settings and the thresholds.
        labels: 0/1 labels of the window's labelled rows.
        predictions: The scores served for those rows.
        groups: Per column, each row's group (None for a null value), or None when
            no logged row carries the column.

    Returns:
        Per column, either ``{"available": False, "reason"}`` or ``{"available": True,
        "n_labels", "measures", "worst_groups", "reasons", "groups", "crossed"}``
        (``crossed`` names the measures beyond their thresholds).
    """
    usable = np.isfinite(predictions) & (predictions >= 0.0) & (predictions <= 1.0)
    out: dict[str, dict[str, Any]] = {}
    for column, settings in config.columns.items():
        values = groups.get(column)
        if values is None or all(v is None for v in values[usable]):
            out[column] = {
                "available": False,
                "reason": f"no labelled served row of the window carries {column!r}",
            }
            continue
        named = np.asarray([MISSING_GROUP if v is None else v for v in values[usable]], object)
        report = binary_fairness(
            labels[usable],
            predictions[usable],
            named,
            attribute=column,
            threshold=settings.threshold,
            min_group_size=settings.min_group_size,
            bins=settings.bins,
        )
        measures = report.measures()
        values_by_measure = {m: d.value for m, d in measures.items()}
        out[column] = {
            "available": True,
            "n_labels": int(usable.sum()),
            "measures": values_by_measure,
            "worst_groups": {m: dict(d.worst_groups) for m, d in measures.items()},
            "reasons": {m: d.reason for m, d in measures.items() if d.reason},
            "groups": {
                g.group: {
                    "count": g.count,
                    "sufficient": g.sufficient,
                    "label_rate": g.label_rate,
                    "selection_rate": g.selection_rate,
                    "tpr": g.tpr,
                    "fpr": g.fpr,
                }
                for g in report.groups
            },
            "crossed": [
                m
                for m, bound, upper in config.bounds
                if _crosses(values_by_measure.get(m), bound, upper)
            ],
        }
    return out


def fairness_verdicts(
    config: WindowFairness, fairness: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str, bool]]:
    """``(attribute, measure, crossed)`` for every threshold whose measure was computed
    on an alerted attribute (none is given for a measure that could not be)."""
    verdicts: list[tuple[str, str, bool]] = []
    for attribute, result in fairness.items():
        if not result.get("available") or not config.alerted(attribute):
            continue
        for measure, bound, upper in config.bounds:
            value = result["measures"].get(measure)
            if value is not None:
                verdicts.append((attribute, measure, _crosses(value, bound, upper)))
    return verdicts


def _crosses(value: float | None, bound: float, upper: bool) -> bool:
    if value is None:
        return False
    return value > bound if upper else value < bound
