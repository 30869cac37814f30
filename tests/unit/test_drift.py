"""Drift statistics: agreement with scipy, false-alarm rates, power, decisions."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from entai.shared.core import ConfigError, InvalidInputError
from entai.shared.monitoring import (
    DriftConfig,
    DriftMethod,
    DriftStatus,
    ReferenceProfile,
    WindowProfile,
    chi2_test,
    column_drift,
    dataset_drift,
    jensen_shannon,
    ks_test,
    psi,
    psi_band,
    wasserstein_normalised,
    z_test_proportions,
)

PAIRS = 200


# --- agreement with scipy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m", "shift"),
    [(300, 300, 0.1), (400, 650, 0.2), (20_000, 15_000, 0.03), (12_000, 12_000, 0.0)],
)
def test_ks_matches_scipy_in_exact_and_asymptotic_modes(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(shift, 1, size=m)
    expected = stats.ks_2samp(a, b)
    result = ks_test(a, b)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_ks_matches_scipy_with_heavy_ties() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, 30_000).astype(float)
    b = rng.integers(0, 6, 25_000).astype(float) + (rng.random(25_000) < 0.02)
    expected = stats.ks_2samp(a, b)
    result = ks_test(a, b)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_wasserstein_normalised_matches_scipy_over_reference_std() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.gamma(2.0, 3.0, 5000), rng.gamma(2.2, 3.0, 7000)
    expected = stats.wasserstein_distance(a, b) / np.std(a)
    assert wasserstein_normalised(a, b) == pytest.approx(expected, rel=1e-12)


def test_wasserstein_of_constant_reference_uses_std_floor() -> None:
    assert wasserstein_normalised([1.0, 1.0, 1.0], [1.5, 1.5]) == pytest.approx(0.5 / 0.001)


def test_jensen_shannon_is_scipy_distance_natural_log() -> None:
    p, q = np.array([10, 20, 30, 0]), np.array([12, 18, 25, 5])
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-15)
    assert jensen_shannon(p, p) == 0.0


def test_chi2_matches_scipy_chi2_contingency() -> None:
    ref, cur = np.array([100, 200, 300, 400]), np.array([30, 55, 60, 95])
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    result = chi2_test(ref, cur)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)


def test_chi2_with_unseen_and_empty_categories_is_finite() -> None:
    ref, cur = np.array([50, 50, 0, 0]), np.array([40, 45, 3, 0])
    expected = stats.chi2_contingency(np.vstack([ref[:3], cur[:3]]), correction=False)
    result = chi2_test(ref, cur)
    assert math.isfinite(result.statistic)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert chi2_test([5, 0], [7, 0]) == (0.0, 1.0)


def test_z_test_matches_2x2_chi2_contingency_without_correction() -> None:
    table = np.array([[130, 370], [170, 330]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    z = z_test_proportions(130, 500, 170, 500)
    assert z.statistic**2 == pytest.approx(chi2, rel=1e-12)
    assert z.p_value == pytest.approx(p, rel=1e-10)
    assert z.statistic < 0  # reference share 0.26 < current share 0.34


def test_psi_hand_computed_with_epsilon_for_empty_bins() -> None:
    ref, cur = np.array([50, 50, 0]), np.array([25, 50, 25])
    p, q = np.array([0.5, 0.5, 1e-4]), np.array([0.25, 0.5, 0.25])
    assert psi(ref, cur) == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert psi(ref, ref) == 0.0


@pytest.mark.parametrize(
    ("value", "band"), [(0.0, "none"), (0.099, "none"), (0.1, "moderate"), (0.25, "major")]
)
def test_psi_bands(value: float, band: str) -> None:
    assert psi_band(value) == band


# --- false alarms and power -------------------------------------------------------------


def _rate(draw: Callable[[np.random.Generator], tuple[object, object]], **kw: object) -> float:
    drifted = 0
    for seed in range(PAIRS):
        ref, cur = draw(np.random.default_rng(seed))
        result = column_drift(ref, cur, **kw)  # type: ignore[arg-type]
        assert result.status is not DriftStatus.INSUFFICIENT_DATA
        drifted += result.status is DriftStatus.DRIFT
    return drifted / PAIRS


CATS = np.array(["a", "b", "c", "d", "e"])
SHARES = np.array([0.35, 0.25, 0.2, 0.12, 0.08])


def test_false_alarm_rate_ks_small_reference() -> None:
    rate = _rate(lambda r: (r.normal(size=500), r.normal(size=400)))
    assert rate <= 0.07


def test_false_alarm_rate_chi2_small_reference() -> None:
    rate = _rate(lambda r: (r.choice(CATS, 800, p=SHARES), r.choice(CATS, 400, p=SHARES)))
    assert rate <= 0.07


def test_false_alarm_rate_z_small_reference() -> None:
    rate = _rate(lambda r: (r.random(600) < 0.3, r.random(500) < 0.3))
    assert rate <= 0.07


def test_wasserstein_and_js_never_fire_on_large_same_distribution_samples() -> None:
    numeric = _rate(lambda r: (r.lognormal(size=5000), r.lognormal(size=3000)))
    categorical = _rate(lambda r: (r.choice(CATS, 5000, p=SHARES), r.choice(CATS, 3000, p=SHARES)))
    assert numeric <= 0.01
    assert categorical <= 0.01


def test_planted_shifts_are_detected() -> None:
    assert _rate(lambda r: (r.normal(size=500), r.normal(0.5, 1, size=500))) >= 0.95
    shifted = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    assert _rate(lambda r: (r.choice(CATS, 800, p=SHARES), r.choice(CATS, 500, p=shifted))) >= 0.95
    assert _rate(lambda r: (r.random(600) < 0.3, r.random(500) < 0.45)) >= 0.95
    assert _rate(lambda r: (r.normal(size=5000), r.normal(0.5, 1, size=3000))) >= 0.95
    big_shift = np.array([0.1, 0.1, 0.2, 0.3, 0.3])
    assert (
        _rate(lambda r: (r.choice(CATS, 5000, p=SHARES), r.choice(CATS, 3000, p=big_shift))) >= 0.95
    )


# --- decisions --------------------------------------------------------------------------


def test_automatic_method_depends_on_kind_and_reference_size() -> None:
    rng = np.random.default_rng(7)
    small, large = rng.normal(size=1000), rng.normal(size=1001)
    assert column_drift(small, small).method is DriftMethod.KS
    assert column_drift(large, large).method is DriftMethod.WASSERSTEIN
    cats = rng.choice(CATS, 1001)
    assert column_drift(cats[:1000], cats).method is DriftMethod.CHI2
    assert column_drift(cats, cats).method is DriftMethod.JS
    flags = rng.random(1001) < 0.5
    assert column_drift(flags[:1000], flags).kind == "binary"
    assert column_drift(flags[:1000], flags).method is DriftMethod.Z
    assert column_drift(flags, flags).method is DriftMethod.JS
    assert column_drift(flags.astype(int)[:500], flags.astype(int)).kind == "binary"


def test_below_min_samples_is_insufficient_never_no_drift() -> None:
    rng = np.random.default_rng(8)
    ref = rng.normal(size=500)
    few = column_drift(ref, rng.normal(size=99))
    assert few.status is DriftStatus.INSUFFICIENT_DATA
    assert few.p_value is None
    assert math.isnan(few.statistic)
    assert column_drift(ref, rng.normal(size=100)).status is not DriftStatus.INSUFFICIENT_DATA
    all_null = column_drift(ref, np.full(500, np.nan))
    assert all_null.status is DriftStatus.INSUFFICIENT_DATA
    assert all_null.null_rate_cur == 1.0
    strict = column_drift(ref, rng.normal(size=300), config=DriftConfig(min_samples=400))
    assert strict.status is DriftStatus.INSUFFICIENT_DATA


def test_null_rate_and_new_category_rate() -> None:
    ref = pd.Series(["a", "b", None, "a"] * 100)
    cur = pd.Series(["a", "z", None, None, "b", "y"] * 50)
    result = column_drift(ref, cur)
    assert result.null_rate_ref == pytest.approx(0.25)
    assert result.null_rate_cur == pytest.approx(2 / 6)
    assert result.new_category_rate == pytest.approx(2 / 4)
    assert result.n_ref == 300
    assert result.n_cur == 200
    rng = np.random.default_rng(5)
    numeric = column_drift(np.r_[rng.normal(size=150), np.nan, np.inf], rng.normal(size=100))
    assert numeric.null_rate_ref == pytest.approx(2 / 152)
    assert numeric.new_category_rate == 0.0


def test_overrides_choose_method_and_threshold() -> None:
    rng = np.random.default_rng(9)
    ref, cur = rng.normal(size=5000), rng.normal(0.3, 1, size=5000)
    default = column_drift(ref, cur, column="x")
    forced = column_drift(ref, cur, column="x", config=DriftConfig(overrides={"x": ("psi", 0.5)}))
    assert default.status is DriftStatus.DRIFT
    assert forced.method is DriftMethod.PSI
    assert forced.statistic == forced.psi
    assert forced.status is DriftStatus.NO_DRIFT
    js = column_drift(
        ref, cur, column="x", config=DriftConfig(overrides={"x": ("jensen_shannon", 0.05)})
    )
    assert js.method is DriftMethod.JS
    assert js.status is DriftStatus.DRIFT


def test_invalid_overrides_and_config_raise_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        column_drift(
            ["a", "b", "c"] * 50,
            ["a"] * 200,
            column="c",
            config=DriftConfig(overrides={"c": (DriftMethod.KS, 0.05)}),
        )
    assert err.value.details["column"] == "c"
    with pytest.raises(ConfigError):
        DriftConfig(overrides={"c": ("t-test", 0.05)})
    with pytest.raises(ConfigError) as bad:
        DriftConfig(share_threshold=0, ks_p=1.5)
    assert bad.value.details["fields"] == ["share_threshold", "ks_p"]


def _frames(seed: int, shift: float, n: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(delta: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x1": rng.normal(delta, 1, n),
                "x2": rng.exponential(1 + delta, n),
                "c1": rng.choice(CATS, n, p=SHARES),
                "flag": rng.random(n) < 0.3,
            }
        )

    return frame(0.0), frame(shift)


def test_dataset_drift_share_and_threshold() -> None:
    ref, cur = _frames(10, shift=1.0)
    result = dataset_drift(ref, cur)
    assert result.columns["x1"].status is DriftStatus.DRIFT
    assert result.columns["x2"].status is DriftStatus.DRIFT
    assert result.columns["c1"].status is DriftStatus.NO_DRIFT
    assert result.drifted_share == 0.5
    assert result.status is DriftStatus.DRIFT
    assert dataset_drift(ref, cur, config=DriftConfig(share_threshold=0.75)).status is (
        DriftStatus.NO_DRIFT
    )
    same = dataset_drift(*_frames(11, shift=0.0))
    assert same.status is DriftStatus.NO_DRIFT
    assert same.drifted_share == 0.0


def test_dataset_drift_all_insufficient_and_missing_columns() -> None:
    ref, cur = _frames(12, shift=0.0)
    tiny = dataset_drift(ref, cur.head(50))
    assert tiny.status is DriftStatus.INSUFFICIENT_DATA
    with pytest.raises(InvalidInputError) as err:
        dataset_drift(ref, cur.drop(columns=["x2"]))
    assert err.value.details["columns"] == ["x2"]


def test_dataset_drift_on_exact_profiles_equals_dataframe_path() -> None:
    ref, cur = _frames(13, shift=0.2)
    from_frames = dataset_drift(ref, cur)
    from_profiles = dataset_drift(
        ReferenceProfile.from_frame(ref, sample_size=None),
        WindowProfile.from_frame(cur, sample_size=None),
    )
    assert from_profiles == from_frames


def test_dataset_drift_on_sampled_profiles_detects_shift() -> None:
    ref, cur = _frames(14, shift=0.5, n=40_000)
    reference = ReferenceProfile.from_frame(ref, sample_size=5000, seed=1)
    window = WindowProfile.from_frame(cur, sample_size=5000, seed=2)
    result = dataset_drift(reference, window)
    assert result.columns["x1"].status is DriftStatus.DRIFT
    assert result.columns["x1"].n_cur == 40_000
    same = dataset_drift(reference, WindowProfile.from_frame(ref, sample_size=5000, seed=3))
    assert same.status is DriftStatus.NO_DRIFT
