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

A ranker is watched the same way by the columns of its card's ``ranking_fairness``
section (:meth:`RankingWindowFairness.columns_of`: the rank cut-off ``k``, the minimum
group size and the groups training saw) against the policy's ranking thresholds
(``min_exposure_ratio``, ``max_ndcg_difference``). :func:`ranking_fairness_windows`
joins the impression log to the clicks and purchases by request id (a request belongs
to the window of its impressions, whenever its feedback arrives) and computes, per
window and column, :func:`~entai.shared.models.ranking_fairness` over the window's
served lists: exposure share and mean exposure per item of each group (the same
``1 / log2(1 + rank)`` position weight within the top ``k``, ranked by the position
served) and NDCG@k per group against the feedback gains (click 1, purchase 2). Unlike
the offline evaluation, which ranks every candidate, only the items shown are logged,
so a group's mean exposure is per item shown; a group training saw that got no
impression in a window is reported with 0 items and exposure share 0, and left out of
the ratio (it has no mean). A column the served ranker does not attribute its items by
is reported unavailable. :func:`fairness_verdicts` reads both kinds of result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.shared.models import (
    MISSING_GROUP,
    FairnessPolicy,
    ModelCard,
    binary_fairness,
    ranking_fairness,
)
from entai.shared.recommend import check_ranking_logs, relevant_items, windowed_impressions

__all__ = [
    "FairnessColumn",
    "RankingColumn",
    "RankingWindowFairness",
    "WindowFairness",
    "fairness_verdicts",
    "group_values",
    "ranking_fairness_windows",
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
class _Thresholds:
    """The thresholds that flag a window, and the attributes whose crossings alert.

    Attributes:
        bounds: ``(measure, threshold, is_upper_bound)`` that flag a window.
        attributes: Attributes whose crossings alert; empty means every column.
    """

    bounds: tuple[tuple[str, float, bool], ...] = ()
    attributes: tuple[str, ...] = ()

    def alerted(self, attribute: str) -> bool:
        """Whether crossings on ``attribute`` raise alerts."""
        return not self.attributes or attribute in self.attributes

    def crossed(self, measures: Mapping[str, float | None]) -> list[str]:
        """The measures beyond their thresholds."""
        return [m for m, bound, upper in self.bounds if _crosses(measures.get(m), bound, upper)]

    def _bounds_dict(self) -> dict[str, Any]:
        return {
            "bounds": [[m, b, upper] for m, b, upper in self.bounds],
            "attributes": list(self.attributes),
        }

    @staticmethod
    def _bounds_of(data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "bounds": tuple((str(m), float(b), bool(u)) for m, b, u in data.get("bounds", [])),
            "attributes": tuple(str(a) for a in data.get("attributes", [])),
        }


@dataclass(frozen=True, kw_only=True)
class WindowFairness(_Thresholds):
    """What a watched classifier version's windows are checked for.

    Attributes:
        columns: The attributes, by name, with how their groups are compared.
        bounds: ``(measure, threshold, is_upper_bound)`` that flag a window.
        attributes: Attributes whose crossings alert; empty means every column.
    """

    columns: Mapping[str, FairnessColumn]

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
            **self._bounds_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowFairness:
        """Read :meth:`to_dict` output."""
        return cls(
            columns={c: FairnessColumn(**dict(v)) for c, v in data["columns"].items()},
            **cls._bounds_of(data),
        )


@dataclass(frozen=True)
class RankingColumn:
    """How one attribute's groups of items are compared (as the ranker's evaluation did).

    Attributes:
        k: Rank cut-off of exposure and NDCG.
        min_group_size: Groups with fewer impressions are reported, not compared.
        groups: The groups training saw, reported in every window even without
            impressions.
    """

    k: int = 10
    min_group_size: int = 30
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RankingWindowFairness(_Thresholds):
    """What a watched ranker version's windows are checked for.

    Attributes:
        columns: The item attributes, by name, with how their groups are compared.
        bounds: ``(measure, threshold, is_upper_bound)`` of the ranking measures.
        attributes: Attributes whose crossings alert; empty means every column.
    """

    columns: Mapping[str, RankingColumn]

    @staticmethod
    def columns_of(card: ModelCard) -> dict[str, dict[str, Any]]:
        """The ranking fairness columns a card names, with the settings its reports used."""
        return {
            column: {
                "k": report.k,
                "min_group_size": report.min_group_size,
                "groups": [g.group for g in report.groups],
            }
            for column, report in sorted(card.ranking_fairness.items())
        }

    @classmethod
    def create(
        cls, columns: Mapping[str, Mapping[str, Any]], policy: FairnessPolicy | None
    ) -> RankingWindowFairness:
        """Columns (from :meth:`columns_of`) checked against ``policy``'s ranking thresholds."""
        return cls.from_dict(
            {
                "columns": columns,
                "bounds": policy.ranking_bounds() if policy is not None else [],
                "attributes": list(policy.ranking_attributes) if policy is not None else [],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "columns": {
                c: {"k": v.k, "min_group_size": v.min_group_size, "groups": list(v.groups)}
                for c, v in self.columns.items()
            },
            **self._bounds_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankingWindowFairness:
        """Read :meth:`to_dict` output."""
        columns = {
            str(c): RankingColumn(
                k=int(v.get("k", 10)),
                min_group_size=int(v.get("min_group_size", 30)),
                groups=tuple(str(g) for g in v.get("groups", ())),
            )
            for c, v in data["columns"].items()
        }
        return cls(columns=columns, **cls._bounds_of(data))


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
            "crossed": config.crossed(values_by_measure),
        }
    return out


def ranking_fairness_windows(
    config: RankingWindowFairness,
    impressions: pd.DataFrame,
    interactions: pd.DataFrame,
    item_groups: Mapping[str, Mapping[int, str]],
    *,
    window_s: float,
) -> list[dict[str, Any]]:
    """A ranker's fairness per ``window_s`` window with impressions, oldest first.

    Args:
        config: The columns, their settings and the thresholds.
        impressions: One row per item shown: request_id, item_id, rank (1 = top), ts.
        interactions: request_id, item_id, kind (``click`` | ``purchase``).
        item_groups: Per column the served ranker attributes items by, each item's
            group (an item it does not know is in :data:`MISSING_GROUP`).
        window_s: Window length in seconds (windows start at multiples of it).

    Returns:
        Per window ``{"start_s", "end_s", "requests", "labelled_requests",
        "fairness"}``, where ``fairness`` holds per column either ``{"available":
        False, "reason"}`` or ``{"available": True, "impressions", "measures",
        "worst_groups", "reasons", "groups", "crossed"}``.

    Raises:
        InvalidInputError: a log lacks a column, or ``window_s`` <= 0.
    """
    check_ranking_logs(impressions, interactions)
    shown = windowed_impressions(impressions, window_s)
    relevant = relevant_items(interactions)
    gains = np.asarray(
        [
            relevant.get(rid, {}).get(int(item), 0.0)
            for rid, item in zip(shown["request_id"], shown["item_id"], strict=True)
        ],
        dtype=np.float64,
    )
    shown = shown.assign(gain=gains)
    out: list[dict[str, Any]] = []
    for window, rows in shown.groupby("window", sort=True):
        requests = rows["request_id"].to_numpy(dtype=object)
        start = float(window) * window_s
        out.append(
            {
                "start_s": start,
                "end_s": start + window_s,
                "requests": len(set(requests)),
                "labelled_requests": int(rows.loc[rows["gain"] > 0, "request_id"].nunique()),
                "fairness": {
                    column: _window_ranking(config, column, settings, rows, item_groups.get(column))
                    for column, settings in config.columns.items()
                },
            }
        )
    return out


def _window_ranking(
    config: RankingWindowFairness,
    column: str,
    settings: RankingColumn,
    rows: pd.DataFrame,
    groups_of: Mapping[int, str] | None,
) -> dict[str, Any]:
    """One column's ranking fairness over one window's impressions."""
    if groups_of is None:
        return {
            "available": False,
            "reason": f"the served ranker does not attribute its items by {column!r}",
        }
    items = rows["item_id"].astype("int64")
    report = ranking_fairness(
        rows["request_id"].to_numpy(dtype=object),
        rows["gain"].to_numpy(dtype=np.float64),
        -rows["rank"].to_numpy(dtype=np.float64),  # ranked as served
        np.asarray([groups_of.get(int(i), MISSING_GROUP) for i in items], dtype=object),
        attribute=column,
        k=settings.k,
        min_group_size=settings.min_group_size,
        expected_groups=settings.groups,
    )
    measures = report.measures()
    values = {m: d.value for m, d in measures.items()}
    return {
        "available": True,
        "impressions": len(rows),
        "measures": values,
        "worst_groups": {m: dict(d.worst_groups) for m, d in measures.items()},
        "reasons": {m: d.reason for m, d in measures.items() if d.reason},
        "groups": {
            g.group: {
                "items": g.items,
                "sufficient": g.sufficient,
                "exposure_share": g.exposure_share,
                "mean_exposure": g.mean_exposure,
                "ndcg_at_k": g.ndcg_at_k,
                "ndcg_queries": g.ndcg_queries,
            }
            for g in report.groups
        },
        "crossed": config.crossed(values),
    }


def fairness_verdicts(
    config: WindowFairness | RankingWindowFairness, fairness: Mapping[str, Mapping[str, Any]]
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
