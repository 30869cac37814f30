"""The six drift statistics, on raw samples or aligned category counts (numpy/scipy only).

- :func:`ks_test`: two-sample Kolmogorov-Smirnov D and its p-value;
- :func:`chi2_test`: Pearson chi-squared on aligned category counts;
- :func:`z_test_proportions`: two-proportion z-test (binary columns);
- :func:`psi`: population stability index on aligned bins (:func:`psi_band` names it);
- :func:`jensen_shannon`: Jensen-Shannon *distance*, natural log;
- :func:`wasserstein_normalised`: Wasserstein-1 / reference std (ddof=0).

Which one a column gets, and the threshold that makes it "drift", is decided in
:mod:`entai.shared.monitoring._drift`.

KS p-values follow ``scipy.stats.ks_2samp(method="auto")``: when both samples have at
most 10,000 values the exact p-value comes from scipy itself; above that the statistic
is computed here on the sorted samples (one linear merge) and the p-value is scipy's
asymptotic one, ``kstwo.sf(D, round(n*m/(n+m)))``, so both agree with scipy.

Chi-squared is the test of homogeneity of the reference and current category counts
(a 2 x k contingency table, no continuity correction); see :mod:`entai.shared.monitoring._drift`
for why this and not a goodness-of-fit against the reference's proportions.

The ``*_sorted`` helpers and :func:`quantile_bin_counts` take already sorted float
samples, so :mod:`entai.shared.monitoring._drift` sorts a profile's sample once for every test.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from entai.shared.core import InvalidInputError

__all__ = [
    "MIN_STD",
    "FloatArray",
    "PsiBand",
    "StatTestResult",
    "chi2_test",
    "jensen_shannon",
    "ks_sorted",
    "ks_test",
    "psi",
    "psi_band",
    "quantile_bin_counts",
    "wasserstein_normalised",
    "wasserstein_sorted",
    "z_test_proportions",
]

FloatArray = npt.NDArray[np.float64]
PsiBand = Literal["none", "moderate", "major"]

_EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp MAX_AUTO_N
MIN_STD = 0.001
"""Evidently's floor on the reference std for normalised Wasserstein."""


class StatTestResult(NamedTuple):
    """A test statistic and its p-value."""

    statistic: float
    p_value: float


def ks_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> StatTestResult:
    """Two-sided two-sample KS test; equals ``scipy.stats.ks_2samp`` (method="auto")."""
    return ks_sorted(_sorted_sample(reference, "reference"), _sorted_sample(current, "current"))


def wasserstein_normalised(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """``scipy.stats.wasserstein_distance`` divided by max(std(reference), 0.001)."""
    ref = _sorted_sample(reference, "reference")
    return wasserstein_sorted(ref, _sorted_sample(current, "current")) / max(
        float(np.std(ref)), MIN_STD
    )


def chi2_test(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> StatTestResult:
    """Pearson chi-squared test of homogeneity of the two samples' category counts.

    Equals ``scipy.stats.chi2_contingency([reference, current], correction=False)``
    after dropping buckets empty on both sides (see the module docstring for why this,
    not a goodness-of-fit against the reference's proportions).
    """
    table = np.vstack(
        [np.asarray(reference_counts, dtype=np.float64), np.asarray(current_counts, np.float64)]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return StatTestResult(0.0, 1.0)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum(np.square(table - expected) / expected))
    return StatTestResult(statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1)))


def z_test_proportions(
    successes_ref: int, n_ref: int, successes_cur: int, n_cur: int
) -> StatTestResult:
    """Two-sided two-proportion z-test with pooled variance (statsmodels' default)."""
    pooled = (successes_ref + successes_cur) / (n_ref + n_cur)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    if se == 0:
        return StatTestResult(0.0, 1.0)
    z = (successes_ref / n_ref - successes_cur / n_cur) / se
    return StatTestResult(z, float(2 * stats.norm.sf(abs(z))))


def psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, eps: float = 1e-4) -> float:
    """Population stability index over aligned bins; empty bins count as ``eps``."""
    ref = _proportions(reference_counts)
    cur = _proportions(current_counts)
    ref = np.where(ref > 0, ref, eps)
    cur = np.where(cur > 0, cur, eps)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_band(value: float) -> PsiBand:
    """Evidently's PSI bands: none < 0.1 <= moderate < 0.25 <= major."""
    if value >= 0.25:
        return "major"
    return "moderate" if value >= 0.1 else "none"


def jensen_shannon(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """JS distance (natural log); equals ``scipy.spatial.distance.jensenshannon``."""
    ref = _proportions(reference_counts)
    cur = _proportions(current_counts)
    mid = (ref + cur) / 2
    divergence = (special.rel_entr(ref, mid).sum() + special.rel_entr(cur, mid).sum()) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def _proportions(counts: npt.ArrayLike) -> FloatArray:
    values = np.asarray(counts, dtype=np.float64)
    total = float(values.sum())
    if total <= 0:
        raise InvalidInputError("counts must have a positive total", details={"field": "counts"})
    out: FloatArray = values / total
    return out


def _sorted_sample(values: npt.ArrayLike, name: str) -> FloatArray:
    out = np.sort(np.asarray(values, dtype=np.float64))
    if out.size == 0:
        raise InvalidInputError(f"{name} sample is empty", details={"field": name})
    return out


def _cdf_gaps(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """ECDF(a) - ECDF(b) at each point of the merged sample, and the merged values."""
    merged = np.concatenate([a, b])
    order = np.argsort(merged, kind="stable")  # two sorted runs: timsort merges linearly
    count_a = np.cumsum(order < a.size)
    count_b = np.arange(1, merged.size + 1) - count_a
    return count_a / a.size - count_b / b.size, merged[order]


def ks_sorted(a: FloatArray, b: FloatArray) -> StatTestResult:
    """KS test on two sorted, non-empty float samples (see the module docstring)."""
    if max(a.size, b.size) <= _EXACT_KS_MAX_N:
        exact = stats.ks_2samp(a, b)
        return StatTestResult(float(exact.statistic), float(exact.pvalue))
    gaps, values = _cdf_gaps(a, b)
    group_end = np.append(values[1:] != values[:-1], True)  # evaluate after ties
    d = float(np.abs(gaps[group_end]).max())
    big, small = max(a.size, b.size), min(a.size, b.size)
    en = big * small / (big + small)
    return StatTestResult(d, float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0)))


def wasserstein_sorted(a: FloatArray, b: FloatArray) -> float:
    """Wasserstein-1 distance between two sorted, non-empty float samples."""
    gaps, values = _cdf_gaps(a, b)
    return float(np.sum(np.abs(gaps[:-1]) * np.diff(values)))


def quantile_bin_counts(a: FloatArray, b: FloatArray, bins: int) -> tuple[FloatArray, FloatArray]:
    """Counts of sorted ``a`` and ``b`` in bins cut at the quantiles of ``a``."""
    position = np.arange(1, bins) / bins * (a.size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, a.size - 1)
    edges = np.unique(a[low] + (a[high] - a[low]) * (position - low))

    def counts(x: FloatArray) -> FloatArray:
        cumulative = np.searchsorted(x, edges, side="right")
        return np.diff(cumulative, prepend=0, append=x.size).astype(np.float64)

    return counts(a), counts(b)
