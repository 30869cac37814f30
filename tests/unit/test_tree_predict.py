"""CompiledTrees: an XGBoost booster's trees scored in numpy, as XGBoost scores them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from entai.deployments.model_runtime import COMPILED_MAX_ROWS, xgboost_model
from entai.shared.models import CompiledTrees

xgb = pytest.importorskip("xgboost")


def _booster(objective: str, depth: int, rounds: int, **params: Any) -> Any:
    rng = np.random.default_rng(depth + rounds)
    x = rng.normal(size=(1_000, 6))
    x[rng.random(x.shape) < 0.05] = np.nan  # trains default directions both ways
    y = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 3]) + rng.normal(size=1_000) > 0
    full = {"objective": objective, "max_depth": depth, "nthread": 1, **params}
    return xgb.train(full, xgb.DMatrix(x, label=y.astype(int)), rounds)


def _rows(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(scale=2.0, size=(n, 6)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.15] = np.nan
    return rows


@pytest.mark.parametrize(
    ("objective", "depth", "rounds"),
    [
        ("binary:logistic", 5, 50),
        ("binary:logistic", 8, 120),
        ("reg:logistic", 3, 10),
        ("reg:squarederror", 4, 30),
        ("binary:logitraw", 6, 20),
    ],
)
def test_compiled_trees_score_as_xgboost(objective: str, depth: int, rounds: int) -> None:
    booster = _booster(objective, depth, rounds)
    compiled = CompiledTrees.of(booster)
    assert compiled is not None
    rows = _rows(2_000)
    expected = booster.inplace_predict(rows)
    got = compiled.predict(rows)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert np.mean(got == expected) > 0.99  # the same float32 steps: mostly bit-equal
    one = rows[:1]
    np.testing.assert_allclose(compiled.predict(one), booster.inplace_predict(one), rtol=1e-6)


def test_values_on_a_split_point_go_right_and_missing_values_follow_the_default() -> None:
    booster = _booster("reg:squarederror", 1, 1)
    compiled = CompiledTrees.of(booster)
    assert compiled is not None
    root = int(compiled.roots[0])
    feature, threshold = int(compiled.feature[root]), compiled.threshold[root]
    rows = np.zeros((3, 6), dtype=np.float32)
    rows[0, feature] = threshold  # not below the split: right
    rows[1, feature] = np.nextafter(threshold, np.float32(-np.inf))  # just below: left
    rows[2, feature] = np.nan
    np.testing.assert_array_equal(compiled.predict(rows), booster.inplace_predict(rows))
    left, right = compiled.children[2 * root], compiled.children[2 * root + 1]
    assert compiled.predict(rows[:1])[0] != compiled.predict(rows[1:2])[0]
    default = left if compiled.default_left[root] else right
    assert compiled.value[default] + compiled.base_margin == compiled.predict(rows[2:])[0]


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "multi:softprob", "num_class": 3},
        {"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.3},
        {"objective": "count:poisson"},
    ],
)
def test_models_it_does_not_reproduce_are_left_to_xgboost(params: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    y = rng.integers(0, 3 if "num_class" in params else 2, size=300)
    booster = xgb.train({"max_depth": 3, "nthread": 1, **params}, xgb.DMatrix(x, label=y), 5)
    assert CompiledTrees.of(booster) is None


def test_categorical_splits_are_left_to_xgboost() -> None:
    import pandas as pd

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"c": pd.Categorical(rng.choice(list("abcd"), 400)), "x": rng.normal(size=400)}
    )
    y = ((frame["c"] == "b") | (frame["x"] > 1)).astype(int)
    data = xgb.DMatrix(frame, label=y, enable_categorical=True)
    booster = xgb.train({"max_depth": 3, "nthread": 1, "objective": "binary:logistic"}, data, 5)
    assert CompiledTrees.of(booster) is None


def test_a_disagreeing_compilation_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _booster("binary:logistic", 3, 5)
    original = CompiledTrees.predict
    monkeypatch.setattr(CompiledTrees, "predict", lambda self, rows: original(self, rows) * 1.001)
    assert CompiledTrees.of(booster) is None


class _CountingBooster:
    """A booster whose in-place predictions are counted."""

    def __init__(self, booster: Any) -> None:
        self._booster = booster
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._booster, name)

    def inplace_predict(self, rows: np.ndarray, **kwargs: Any) -> Any:
        self.calls += 1
        return self._booster.inplace_predict(rows, **kwargs)


def test_a_served_version_scores_small_requests_with_the_compiled_trees() -> None:
    booster = _CountingBooster(_booster("binary:logistic", 5, 20))
    model = xgboost_model(1, booster)
    after_compile = booster.calls  # the compilation's own check
    small, large = _rows(COMPILED_MAX_ROWS, 3), _rows(COMPILED_MAX_ROWS + 1, 4)
    expected_small = booster._booster.inplace_predict(small)
    np.testing.assert_allclose(model.predict(small.astype(np.float64)), expected_small, rtol=1e-6)
    assert booster.calls == after_compile
    expected_large = booster._booster.inplace_predict(large)
    np.testing.assert_allclose(model.predict(large.astype(np.float64)), expected_large, rtol=1e-6)
    assert booster.calls == after_compile + 1
