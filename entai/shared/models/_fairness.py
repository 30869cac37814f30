"""Fairness of a model's decisions across the groups of one attribute (pure numpy).

Binary classifiers (:func:`binary_fairness`): per group, the row count, the label
rate, the selection rate (share of rows scored at or above the decision threshold),
the true and false positive rates, the AUC (None unless both classes occur), and
calibration (mean score against the observed label rate, and the expected calibration
error over equal-width score bins). The summary measures compare the groups that have
at least ``min_group_size`` rows:

- demographic parity difference: highest minus lowest selection rate;
- equalized odds difference: the larger of the TPR range and the FPR range, each over
  the groups where that rate is defined (a group without positive labels has no TPR);
- disparate impact ratio: lowest over highest selection rate (the "four-fifths rule"
  compares it with 0.8).

Rankers (:func:`ranking_fairness`): per group of items, the exposure the ranking gives
them (position weight ``1 / log2(1 + rank)`` within the top ``k`` of each query) and
the NDCG@k of the group's items within each query (linear gain, as scikit-learn's
``ndcg_score``), averaged over the queries where the group has a relevant item.

No group is silently dropped: a group below ``min_group_size`` is reported with its
numbers and ``sufficient=False`` and is named in the ``reason`` of every summary
measure it is left out of; a group named in ``expected_groups`` without rows is
reported with a count of 0. A measure that cannot be computed is None, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from entai.shared.core import InvalidInputError, NotFoundError

__all__ = [
    "MISSING_GROUP",
    "Disparity",
    "FairnessReport",
    "GroupExposure",
    "GroupFairness",
    "RankingFairnessReport",
    "binary_fairness",
    "ranking_fairness",
]

MISSING_GROUP = "<missing>"
"""The group of a row whose attribute has no value (training and monitoring name it so)."""

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Disparity(_Frozen):
    """One summary measure and the groups that set it.

    Attributes:
        value: The measure; None when it cannot be computed (``reason`` says why).
        rate: The per-group rate it compares (``selection_rate``, ``tpr``, ``fpr``,
            ``mean_exposure``, ``ndcg_at_k``).
        worst_groups: The lowest and the highest group on ``rate``, with their rates,
            lowest first.
        reason: Why ``value`` is None, or which groups it leaves out and why.
    """

    value: float | None = None
    rate: str = ""
    worst_groups: dict[str, float] = Field(default_factory=dict)
    reason: str = ""


class GroupFairness(_Frozen):
    """A binary classifier's numbers on one group.

    Attributes:
        group: The attribute's value.
        count: Rows in the group.
        sufficient: ``count`` reaches the minimum group size (it enters the summary).
        positives: Rows with label 1.
        label_rate: Observed share of label 1.
        selection_rate: Share of rows scored at or above the threshold.
        tpr: Selected share of the positives (None without positives).
        fpr: Selected share of the negatives (None without negatives).
        auc: ROC AUC (None unless both classes occur).
        mean_score: Mean predicted probability (compare with ``label_rate``).
        ece: Expected calibration error over the report's score bins.
    """

    group: str
    count: int = Field(ge=0)
    sufficient: bool
    positives: int = Field(ge=0)
    label_rate: float | None = None
    selection_rate: float | None = None
    tpr: float | None = None
    fpr: float | None = None
    auc: float | None = None
    mean_score: float | None = None
    ece: float | None = None


class FairnessReport(_Frozen):
    """A binary classifier's fairness across the groups of one attribute.

    Attributes:
        attribute: The column the groups come from (e.g. ``region``).
        threshold: Scores at or above it count as selected.
        min_group_size: Groups with fewer rows are reported but left out of the summary.
        bins: Equal-width score bins of the calibration error.
        groups: Every group, sorted by name.
        demographic_parity_difference: Highest minus lowest selection rate.
        equalized_odds_difference: The larger of the TPR and the FPR range.
        disparate_impact_ratio: Lowest over highest selection rate.
    """

    attribute: str = Field(min_length=1)
    threshold: float = Field(ge=0.0, le=1.0)
    min_group_size: int = Field(ge=1)
    bins: int = Field(ge=1)
    groups: tuple[GroupFairness, ...]
    demographic_parity_difference: Disparity
    equalized_odds_difference: Disparity
    disparate_impact_ratio: Disparity

    @property
    def insufficient(self) -> tuple[str, ...]:
        """Groups below the minimum size (reported, left out of the summary)."""
        return tuple(g.group for g in self.groups if not g.sufficient)

    def group(self, name: str) -> GroupFairness:
        """The numbers of one group.

        Raises:
            NotFoundError: the report has no such group.
        """
        for row in self.groups:
            if row.group == name:
                return row
        raise NotFoundError(
            f"fairness report on {self.attribute!r} has no group {name!r}",
            details={"attribute": self.attribute, "group": name},
        )

    def measures(self) -> dict[str, Disparity]:
        """The summary measures by name."""
        return {
            "demographic_parity_difference": self.demographic_parity_difference,
            "equalized_odds_difference": self.equalized_odds_difference,
            "disparate_impact_ratio": self.disparate_impact_ratio,
        }

    def summary(self) -> dict[str, float]:
        """The summary measures that could be computed, by name."""
        return {k: m.value for k, m in self.measures().items() if m.value is not None}


class GroupExposure(_Frozen):
    """A ranker's numbers on one group of items.

    Attributes:
        group: The attribute's value.
        items: Ranked items of the group (over all queries).
        queries: Queries with at least one item of the group.
        sufficient: ``items`` reaches the minimum group size (it enters the summary).
        exposure: Sum of the group's position weights in the top ``k``.
        exposure_share: Its share of all exposure (None when nothing is exposed).
        relevance_share: Its share of all relevance (None when nothing is relevant).
        mean_exposure: Exposure per item of the group.
        ndcg_at_k: Mean NDCG@k of the group's items over ``ndcg_queries``.
        ndcg_queries: Queries where the group has a relevant item (the others have no
            ideal ranking to compare with).
    """

    group: str
    items: int = Field(ge=0)
    queries: int = Field(ge=0)
    sufficient: bool
    exposure: float = Field(ge=0.0)
    exposure_share: float | None = None
    relevance_share: float | None = None
    mean_exposure: float | None = None
    ndcg_at_k: float | None = None
    ndcg_queries: int = Field(0, ge=0)


class RankingFairnessReport(_Frozen):
    """A ranker's fairness across the groups of one item (or query) attribute.

    Attributes:
        attribute: The column the groups come from.
        k: Rank cut-off of exposure and NDCG.
        min_group_size: Groups with fewer items are reported but left out of the summary.
        groups: Every group, sorted by name.
        exposure_ratio: Lowest over highest mean exposure per item.
        ndcg_difference: Highest minus lowest NDCG@k.
    """

    attribute: str = Field(min_length=1)
    k: int = Field(ge=1)
    min_group_size: int = Field(ge=1)
    groups: tuple[GroupExposure, ...]
    exposure_ratio: Disparity
    ndcg_difference: Disparity

    @property
    def insufficient(self) -> tuple[str, ...]:
        """Groups below the minimum size (reported, left out of the summary)."""
        return tuple(g.group for g in self.groups if not g.sufficient)

    def measures(self) -> dict[str, Disparity]:
        """The summary measures by name."""
        return {"exposure_ratio": self.exposure_ratio, "ndcg_difference": self.ndcg_difference}

    def summary(self) -> dict[str, float]:
        """The summary measures that could be computed, by name."""
        return {k: m.value for k, m in self.measures().items() if m.value is not None}

    def group(self, name: str) -> GroupExposure:
        """The numbers of one group.

        Raises:
            NotFoundError: the report has no such group.
        """
        for row in self.groups:
            if row.group == name:
                return row
        raise NotFoundError(
            f"ranking fairness report on {self.attribute!r} has no group {name!r}",
            details={"attribute": self.attribute, "group": name},
        )


def binary_fairness(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    attribute: str,
    threshold: float = 0.5,
    min_group_size: int = 30,
    bins: int = 10,
    expected_groups: Iterable[object] = (),
) -> FairnessReport:
    """Per-group rates and the summary disparity measures of a binary classifier.

    Args:
        labels: 0/1 outcomes.
        scores: Predicted probabilities in [0, 1].
        groups: The attribute's value per row (compared as strings).
        attribute: Name of the attribute, recorded in the report.
        threshold: Scores at or above it count as selected.
        min_group_size: Groups with fewer rows are reported but not compared.
        bins: Equal-width score bins of each group's calibration error.
        expected_groups: Groups to report even when they have no rows.

    Raises:
        InvalidInputError: naming the argument that is empty, mismatched or out of range.
    """
    y = _labels(labels)
    p = _unit_interval("scores", scores, len(y))
    _check_settings(threshold=threshold, min_group_size=min_group_size, bins=bins)
    names, codes = _group_codes(groups, len(y), expected_groups)
    g = len(names)
    selected = (p >= threshold).astype(np.float64)
    count = _sums(codes, None, g)
    pos = _sums(codes, y, g)
    neg = count - pos
    sel = _sums(codes, selected, g)
    tp = _sums(codes, selected * y, g)
    score_sum = _sums(codes, p, g)
    cell = codes * bins + np.minimum((p * bins).astype(np.int64), bins - 1)
    predicted = _sums(cell, p, g * bins)
    observed = _sums(cell, y, g * bins)
    ece = np.abs(predicted - observed).reshape(g, bins).sum(axis=1)
    auc = _auc_per_group(codes, y, p, pos, neg)
    sufficient = count >= min_group_size
    rates = {
        "selection_rate": _div(sel, count),
        "tpr": _div(tp, pos),
        "fpr": _div(sel - tp, neg),
    }
    rows = tuple(
        GroupFairness(
            group=names[i],
            count=int(count[i]),
            sufficient=bool(sufficient[i]),
            positives=int(pos[i]),
            label_rate=_opt(_div(pos, count)[i]),
            selection_rate=_opt(rates["selection_rate"][i]),
            tpr=_opt(rates["tpr"][i]),
            fpr=_opt(rates["fpr"][i]),
            auc=_opt(auc[i]),
            mean_score=_opt(_div(score_sum, count)[i]),
            ece=_opt(_div(ece, count)[i]),
        )
        for i in range(g)
    )
    small = _left_out(names, sufficient, min_group_size, "rows")
    parity = _difference(names, rates["selection_rate"], sufficient, "selection_rate", small)
    return FairnessReport(
        attribute=attribute,
        threshold=threshold,
        min_group_size=min_group_size,
        bins=bins,
        groups=rows,
        demographic_parity_difference=parity,
        equalized_odds_difference=_equalized_odds(names, rates, sufficient, small),
        disparate_impact_ratio=_impact_ratio(
            names, rates["selection_rate"], sufficient, small, threshold
        ),
    )


def ranking_fairness(
    query_ids: npt.ArrayLike,
    relevance: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    attribute: str,
    k: int = 10,
    min_group_size: int = 30,
    expected_groups: Iterable[object] = (),
) -> RankingFairnessReport:
    """Exposure and NDCG@k per group of a ranker's ranked lists.

    Each query's items are ranked by descending score (ties in input order).

    Args:
        query_ids: The query (e.g. request or user) each row was ranked for.
        relevance: Graded relevance per row, >= 0 (0 = not relevant).
        scores: The ranker's score per row.
        groups: The attribute's value per row (an item attribute such as the seller,
            or a query attribute such as the user's segment).
        attribute: Name of the attribute, recorded in the report.
        k: Only the top ``k`` of each query are exposed and enter NDCG.
        min_group_size: Groups with fewer items are reported but not compared.
        expected_groups: Groups to report even when they have no items.

    Raises:
        InvalidInputError: naming the argument that is empty, mismatched or out of range.
    """
    rel = _finite("relevance", relevance, None)
    n = len(rel)
    if (rel < 0).any():
        raise InvalidInputError("relevance must be >= 0", details={"field": "relevance"})
    s = _finite("scores", scores, n)
    if k < 1 or min_group_size < 1:
        field = "k" if k < 1 else "min_group_size"
        raise InvalidInputError(f"{field} must be >= 1", details={"field": field})
    queries = _as_strings("query_ids", query_ids, n)
    _, qc = np.unique(queries, return_inverse=True)
    names, gc = _group_codes(groups, n, expected_groups)
    g = len(names)
    rank = _ranks(qc, s)
    exposure = np.where(rank <= k, 1.0 / np.log2(1.0 + rank), 0.0)
    items = _sums(gc, None, g)
    exposed = _sums(gc, exposure, g)
    relevant = _sums(gc, rel, g)
    segments, seg = np.unique(qc.astype(np.int64) * g + gc, return_inverse=True)
    seg_group = (segments % g).astype(np.int64)
    dcg = _dcg(seg, s, rel, k, len(segments))
    ideal = _dcg(seg, rel, rel, k, len(segments))
    scored = ideal > 0
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=scored)
    ndcg_sum = _sums(seg_group, ndcg, g)
    ndcg_n = _sums(seg_group, scored.astype(np.float64), g)
    group_queries = _sums(seg_group, None, g)
    mean_exposure, mean_ndcg = _div(exposed, items), _div(ndcg_sum, ndcg_n)
    exposure_share = _div(exposed, np.full(g, exposed.sum()))
    relevance_share = _div(relevant, np.full(g, relevant.sum()))
    sufficient = items >= min_group_size
    rows = tuple(
        GroupExposure(
            group=names[i],
            items=int(items[i]),
            queries=int(group_queries[i]),
            sufficient=bool(sufficient[i]),
            exposure=float(exposed[i]),
            exposure_share=_opt(exposure_share[i]),
            relevance_share=_opt(relevance_share[i]),
            mean_exposure=_opt(mean_exposure[i]),
            ndcg_at_k=_opt(mean_ndcg[i]),
            ndcg_queries=int(ndcg_n[i]),
        )
        for i in range(g)
    )
    small = _left_out(names, sufficient, min_group_size, "items")
    return RankingFairnessReport(
        attribute=attribute,
        k=k,
        min_group_size=min_group_size,
        groups=rows,
        exposure_ratio=_ratio(names, mean_exposure, sufficient, "mean_exposure", small),
        ndcg_difference=_difference(names, mean_ndcg, sufficient, "ndcg_at_k", small),
    )


# -- summary measures -------------------------------------------------------------------


def _extremes(values: _Floats, usable: npt.NDArray[np.bool_]) -> tuple[int, int] | None:
    """Indices of the lowest (first such) and highest (last such) usable defined value."""
    idx = np.flatnonzero(usable & ~np.isnan(values))
    if len(idx) < 2:
        return None
    picked = values[idx]
    return int(idx[np.argmin(picked)]), int(idx[len(idx) - 1 - np.argmax(picked[::-1])])


def _worst(names: Sequence[str], values: _Floats, lo: int, hi: int) -> dict[str, float]:
    return {names[lo]: float(values[lo]), names[hi]: float(values[hi])}


def _undefined(names: Sequence[str], values: _Floats, usable: npt.NDArray[np.bool_]) -> list[str]:
    return [names[int(i)] for i in np.flatnonzero(usable & np.isnan(values))]


def _too_few(
    rate: str, names: Sequence[str], values: _Floats, usable: npt.NDArray[np.bool_]
) -> str:
    undefined = _undefined(names, values, usable)
    why = f"fewer than two groups of sufficient size have a {rate}"
    return why + (f" ({rate} undefined for {undefined})" if undefined else "")


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _difference(
    names: Sequence[str], values: _Floats, usable: npt.NDArray[np.bool_], rate: str, small: str
) -> Disparity:
    ends = _extremes(values, usable)
    if ends is None:
        return Disparity(rate=rate, reason=_join(_too_few(rate, names, values, usable), small))
    lo, hi = ends
    undefined = _undefined(names, values, usable)
    note = f"{rate} undefined for {undefined}" if undefined else ""
    return Disparity(
        value=float(values[hi] - values[lo]),
        rate=rate,
        worst_groups=_worst(names, values, lo, hi),
        reason=_join(note, small),
    )


def _ratio(
    names: Sequence[str], values: _Floats, usable: npt.NDArray[np.bool_], rate: str, small: str
) -> Disparity:
    ends = _extremes(values, usable)
    if ends is None:
        return Disparity(rate=rate, reason=_join(_too_few(rate, names, values, usable), small))
    lo, hi = ends
    worst = _worst(names, values, lo, hi)
    if values[hi] <= 0.0:
        return Disparity(
            rate=rate, worst_groups=worst, reason=_join(f"every group's {rate} is 0", small)
        )
    return Disparity(
        value=float(values[lo] / values[hi]), rate=rate, worst_groups=worst, reason=small
    )


def _impact_ratio(
    names: Sequence[str],
    selection: _Floats,
    usable: npt.NDArray[np.bool_],
    small: str,
    threshold: float,
) -> Disparity:
    ratio = _ratio(names, selection, usable, "selection_rate", small)
    if ratio.value is None and ratio.worst_groups:
        reason = _join(f"no group has a score at or above the threshold {threshold}", small)
        return ratio.model_copy(update={"reason": reason})
    return ratio


def _equalized_odds(
    names: Sequence[str],
    rates: dict[str, _Floats],
    usable: npt.NDArray[np.bool_],
    small: str,
) -> Disparity:
    parts = {rate: _difference(names, rates[rate], usable, rate, "") for rate in ("tpr", "fpr")}
    defined = [d for d in parts.values() if d.value is not None]
    if not defined:
        why = " and ".join(d.reason for d in parts.values())
        return Disparity(reason=_join(why, small))
    worst = max(defined, key=lambda d: d.value or 0.0)
    notes = [d.reason for d in parts.values() if d.reason]
    return worst.model_copy(update={"reason": _join(*notes, small)})


def _left_out(
    names: Sequence[str], sufficient: npt.NDArray[np.bool_], min_size: int, unit: str
) -> str:
    small = [names[int(i)] for i in np.flatnonzero(~sufficient)]
    return f"groups with fewer than {min_size} {unit} left out: {small}" if small else ""


# -- vectorised helpers -----------------------------------------------------------------


def _auc_per_group(codes: _Ints, y: _Floats, p: _Floats, pos: _Floats, neg: _Floats) -> _Floats:
    """ROC AUC per group from mid-ranks (Mann-Whitney U); NaN without both classes."""
    n, g = len(codes), len(pos)
    order = np.lexsort((p, codes))
    cs, ps, ys = codes[order], p[order], y[order]
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (cs[1:] != cs[:-1]) | (ps[1:] != ps[:-1])
    block = np.cumsum(new_block) - 1
    starts = np.flatnonzero(new_block)
    ends = np.append(starts[1:], n) - 1
    mid = (starts + ends) / 2.0
    first = np.searchsorted(cs, np.arange(g))
    rank = mid[block] - first[cs] + 1.0
    rank_sum = _sums(cs, rank * ys, g)
    both = (pos > 0) & (neg > 0)
    u = rank_sum - pos * (pos + 1.0) / 2.0
    out = np.full(g, np.nan)
    np.divide(u, pos * neg, out=out, where=both)
    return out


def _ranks(query: _Ints, scores: _Floats) -> _Floats:
    """1-based rank of each row within its query by descending score, ties in row order."""
    n = len(query)
    order = np.lexsort((np.arange(n), -scores, query))
    q = query[order]
    first = np.searchsorted(q, q)
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n) - first + 1.0
    return rank


def _dcg(segment: _Ints, order_by: _Floats, gain: _Floats, k: int, segments: int) -> _Floats:
    """DCG@k per segment, the segment's rows ranked by descending ``order_by``."""
    n = len(segment)
    order = np.lexsort((np.arange(n), -order_by, segment))
    seg = segment[order]
    position = np.arange(n) - np.searchsorted(seg, seg)
    weight = np.where(position < k, 1.0 / np.log2(position + 2.0), 0.0)
    return _sums(seg, gain[order] * weight, segments)


def _div(num: _Floats, den: _Floats) -> _Floats:
    out = np.full(len(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _sums(codes: _Ints, weights: _Floats | None, size: int) -> _Floats:
    """Per-index sums of ``weights`` (counts when None), as floats, ``size`` long."""
    return np.bincount(codes, weights=weights, minlength=size).astype(np.float64)


def _opt(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


# -- input checks -----------------------------------------------------------------------


def _vector(name: str, values: npt.ArrayLike, n: int | None) -> npt.NDArray[np.generic]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional", details={"field": name})
    if n is None and len(array) == 0:
        raise InvalidInputError(f"{name} is empty; fairness needs rows", details={"field": name})
    if n is not None and len(array) != n:
        raise InvalidInputError(
            f"{name} has {len(array)} values, expected {n} (one per row)", details={"field": name}
        )
    return array


def _finite(name: str, values: npt.ArrayLike, n: int | None) -> _Floats:
    try:
        array = _vector(name, values, n).astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be numeric", details={"field": name}) from None
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{name} must be finite (no NaN)", details={"field": name})
    return array


def _labels(values: npt.ArrayLike) -> _Floats:
    y = _finite("labels", values, None)
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidInputError("labels must be 0 or 1", details={"field": "labels"})
    return y


def _unit_interval(name: str, values: npt.ArrayLike, n: int) -> _Floats:
    array = _finite(name, values, n)
    if ((array < 0.0) | (array > 1.0)).any():
        raise InvalidInputError(f"{name} must be probabilities in [0, 1]", details={"field": name})
    return array


def _check_settings(*, threshold: float, min_group_size: int, bins: int) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(
            f"threshold must be in [0, 1], got {threshold}", details={"field": "threshold"}
        )
    for field, value in (("min_group_size", min_group_size), ("bins", bins)):
        if value < 1:
            raise InvalidInputError(f"{field} must be >= 1, got {value}", details={"field": field})


def _as_strings(name: str, values: npt.ArrayLike, n: int) -> npt.NDArray[np.str_]:
    return _vector(name, np.asarray(values, dtype=object), n).astype(str)


def _group_codes(
    groups: npt.ArrayLike, n: int, expected: Iterable[object]
) -> tuple[list[str], _Ints]:
    """Sorted group names (observed and expected) and each row's index into them."""
    values = _as_strings("groups", groups, n)
    observed, codes = np.unique(values, return_inverse=True)
    names = sorted({*observed.tolist(), *(str(e) for e in expected)})
    where = np.searchsorted(np.asarray(names, dtype=str), observed)
    return names, where[codes].astype(np.int64)
