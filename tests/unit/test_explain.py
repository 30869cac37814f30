"""Explainers: contributions sum to the margin; sampling Shapley agrees with TreeSHAP.

Stated tolerance of the sampling explainer: on a depth-2 regression forest over four
independent features, with the training rows as its background and 8 permutations,
every contribution is within 0.03 (margin units) of XGBoost's exact TreeSHAP, while
the mean |contribution| is about 0.5. (XGBoost's TreeSHAP is path-dependent and the
sampling explainer interventional; with independent features and the training data as
background the two agree up to the trees' cover statistics, which is what is left.)
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from entai.shared.core import InvalidInputError
from entai.shared.models import (
    Background,
    LinearExplainer,
    SamplingExplainer,
    TreeShapExplainer,
    explainer_for,
    global_explanation,
    margin_function,
)

NAMES = ("a", "b", "c", "d")
SAMPLING_TOLERANCE = 0.03


@cache
def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES)))
    y = 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * (x[:, 0] > 0) + rng.normal(scale=0.1, size=n)
    return x, y


@cache
def _booster(objective: str = "reg:squarederror", depth: int = 2) -> tuple[xgb.Booster, np.ndarray]:
    x, y = _data()
    label = y if objective.startswith("reg") else (y > 0).astype(int)
    data = xgb.DMatrix(x, label=label, feature_names=list(NAMES))
    params = {"objective": objective, "max_depth": depth, "eta": 0.3}
    return xgb.train(params, data, num_boost_round=20), x


def test_treeshap_contributions_sum_to_the_logistic_margin() -> None:
    booster, x = _booster("binary:logistic", depth=4)
    rows = x[:50].copy()
    rows[3, 1] = np.nan  # a missing value takes the booster's default branch
    attribution = TreeShapExplainer(booster).explain(rows)
    assert attribution.method == "tree_shap"
    assert attribution.feature_names == NAMES
    margin = booster.inplace_predict(rows.astype(np.float32), predict_type="margin")
    np.testing.assert_allclose(attribution.margins, margin, atol=1e-5)
    total = attribution.base_value + attribution.contributions.sum(axis=1)
    np.testing.assert_allclose(total, margin, atol=1e-4)
    assert attribution.gap() < 1e-4
    # the margin is the log-odds of what the model serves
    probability = booster.inplace_predict(rows.astype(np.float32))
    np.testing.assert_allclose(1 / (1 + np.exp(-attribution.margins)), probability, atol=1e-5)


def test_treeshap_of_no_rows_still_has_the_base_value() -> None:
    booster, x = _booster()
    one = TreeShapExplainer(booster).explain(x[:1])
    none = TreeShapExplainer(booster).explain(np.zeros((0, 4)))
    assert len(none) == 0
    assert none.base_value == pytest.approx(one.base_value)


def test_linear_contributions_are_exact_and_sum_to_the_decision_function() -> None:
    x, y = _data()
    model = LogisticRegression().fit(x, (y > 0).astype(int))
    background = Background.of(x[:500])
    explainer = explainer_for(model, NAMES, background)
    assert isinstance(explainer, LinearExplainer)
    rows = x[-30:]
    attribution = explainer.explain(rows)
    assert attribution.method == "linear"
    expected = model.coef_[0] * (rows - x[:500].mean(axis=0))
    np.testing.assert_allclose(attribution.contributions, expected, atol=1e-12)
    total = attribution.base_value + attribution.contributions.sum(axis=1)
    np.testing.assert_allclose(total, model.decision_function(rows), atol=1e-4)
    # the base value is the margin of the background's mean row
    mean_row = x[:500].mean(axis=0, keepdims=True)
    assert attribution.base_value == pytest.approx(float(model.decision_function(mean_row)[0]))


def test_linear_regression_is_explained_in_its_own_units() -> None:
    x, y = _data()
    model = LinearRegression().fit(x, y)
    attribution = explainer_for(model, NAMES, Background.of(x)).explain(x[:10])
    np.testing.assert_allclose(
        attribution.base_value + attribution.contributions.sum(axis=1), model.predict(x[:10])
    )


def test_linear_explainer_refuses_missing_values_naming_them() -> None:
    x, y = _data()
    explainer = explainer_for(LinearRegression().fit(x, y), NAMES, Background.of(x))
    rows = x[:2].copy()
    rows[1, 2] = np.nan
    with pytest.raises(InvalidInputError) as err:
        explainer.explain(rows)
    assert err.value.details["missing_values"] == ["c"]


def test_sampling_explainer_is_within_the_stated_tolerance_of_treeshap() -> None:
    booster, x = _booster()
    exact = TreeShapExplainer(booster).explain(x[:6])
    sampling = SamplingExplainer(
        lambda rows: booster.inplace_predict(rows, predict_type="margin"),
        NAMES,
        Background.of(x, max_rows=len(x)),
        n_permutations=8,
        seed=3,
    )
    estimate = sampling.explain(x[:6])
    assert estimate.method == "sampling_shapley"
    assert estimate.base_value == pytest.approx(exact.base_value, abs=1e-4)
    assert np.abs(estimate.contributions - exact.contributions).max() < SAMPLING_TOLERANCE
    assert np.abs(exact.contributions).mean() > 10 * SAMPLING_TOLERANCE  # not trivially small
    assert estimate.gap() < 1e-9  # sums to the margin exactly, whatever the sample


def test_sampling_explainer_is_seeded_and_row_independent() -> None:
    booster, x = _booster(depth=3)
    margin = margin_function(_SklearnLike(booster))
    background = Background.of(x, max_rows=50, seed=1)
    first = SamplingExplainer(margin, NAMES, background, n_permutations=4, seed=7)
    again = SamplingExplainer(margin, NAMES, background, n_permutations=4, seed=7)
    together = first.explain(x[:5]).contributions
    np.testing.assert_array_equal(together, again.explain(x[:5]).contributions)
    np.testing.assert_array_equal(together[2], first.explain(x[2:3]).contributions[0])


class _SklearnLike:
    """A model with only ``predict`` (the sampling explainer's last resort)."""

    def __init__(self, booster: xgb.Booster) -> None:
        self._booster = booster

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._booster.inplace_predict(rows, predict_type="margin"))


def test_any_other_model_gets_the_sampling_explainer_on_its_log_odds() -> None:
    x, y = _data(600)
    forest = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0)
    forest.fit(x, (y > 0).astype(int))
    explainer = explainer_for(forest, NAMES, Background.of(x, max_rows=40), n_permutations=4)
    assert isinstance(explainer, SamplingExplainer)
    attribution = explainer.explain(x[:3])
    p = np.clip(forest.predict_proba(x[:3])[:, 1], 1e-12, 1 - 1e-12)
    np.testing.assert_allclose(attribution.margins, np.log(p / (1 - p)))
    assert attribution.gap() < 1e-9


def test_a_model_other_than_xgboost_needs_a_background() -> None:
    x, y = _data(100)
    with pytest.raises(InvalidInputError, match="needs a background"):
        explainer_for(LinearRegression().fit(x, y), NAMES)


def test_rows_with_the_wrong_width_are_refused() -> None:
    booster, _ = _booster()
    with pytest.raises(InvalidInputError):
        TreeShapExplainer(booster).explain(np.zeros((2, 3)))


def test_background_keeps_exact_means_and_only_complete_rows() -> None:
    data = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, 30.0], [5.0, np.nan]])
    background = Background.of(data, max_rows=10)
    np.testing.assert_allclose(background.mean, [3.0, 20.0])
    np.testing.assert_array_equal(background.rows, [[1.0, 10.0], [3.0, 30.0]])
    with pytest.raises(InvalidInputError):
        Background.of(np.array([[np.nan, 1.0]]))


def test_global_explanation_ranks_by_mean_abs_contribution_with_dependence() -> None:
    booster, x = _booster()
    rows = x[:400].copy()
    rows[:10, 3] = np.nan
    attribution = TreeShapExplainer(booster).explain(rows)
    summary = global_explanation(attribution, rows, top_k=2, bins=4)
    assert list(summary.importance)[:2] == ["a", "b"]  # y = 2a - b + ...
    assert summary.importance["a"] == pytest.approx(np.abs(attribution.contributions[:, 0]).mean())
    assert [f.feature for f in summary.top] == ["a", "b"]
    bins = summary.top[0].dependence
    assert len(bins) == 4 and sum(b.rows for b in bins) == 400
    # the contribution of a rises with a, that of b falls with b
    assert [b.mean_contribution for b in bins] == sorted(b.mean_contribution for b in bins)
    b_bins = summary.top[1].dependence
    assert b_bins[0].mean_contribution > b_bins[-1].mean_contribution
    assert summary.rows == 400 and summary.method == "tree_shap"


def test_global_explanation_puts_missing_values_in_a_bin_of_their_own() -> None:
    booster, x = _booster()
    rows = x[:100].copy()
    rows[:10, 0] = np.nan
    attribution = TreeShapExplainer(booster).explain(rows)
    summary = global_explanation(attribution, rows, top_k=1, bins=3)
    missing = summary.top[0].dependence[-1]
    assert (missing.low, missing.mean_value, missing.rows) == (None, None, 10)
    assert missing.mean_contribution == pytest.approx(attribution.contributions[:10, 0].mean())
