"""Bounded-memory profiles: exact counts and moments, sampling, merging, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from entai.shared.core import InvalidInputError
from entai.shared.monitoring import (
    OTHER,
    CategoricalColumnProfile,
    DatasetProfile,
    NumericColumnProfile,
    ReferenceProfile,
    WindowAccumulator,
)


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, n)
    x[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "x": x,
            "c": rng.choice(["a", "b", "c", None], n, p=[0.5, 0.3, 0.15, 0.05]),
            "flag": rng.random(n) < 0.2,
        }
    )


def _numeric(profile: DatasetProfile, name: str) -> NumericColumnProfile:
    column = profile.columns[name]
    assert isinstance(column, NumericColumnProfile)
    return column


def _categorical(profile: DatasetProfile, name: str) -> CategoricalColumnProfile:
    column = profile.columns[name]
    assert isinstance(column, CategoricalColumnProfile)
    return column


def test_counts_and_moments_are_exact_while_the_sample_is_bounded() -> None:
    frame = _frame(50_000)
    profile = ReferenceProfile.from_frame(frame, sample_size=1000, seed=1)
    x = _numeric(profile, "x")
    finite = frame["x"].dropna().to_numpy()
    assert profile.n_rows == 50_000
    assert x.values.size == 1000
    assert np.all(np.diff(x.values) >= 0)
    assert np.isin(x.values, finite).all()
    assert x.n_values == finite.size
    assert x.null_rate == pytest.approx(frame["x"].isna().mean())
    assert x.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert x.std == pytest.approx(finite.std(), rel=1e-9)
    c = _categorical(profile, "c")
    assert dict(zip(c.categories, c.counts, strict=True)) == frame["c"].value_counts().to_dict()
    assert c.null_rate == pytest.approx(frame["c"].isna().mean())
    assert set(_categorical(profile, "flag").categories) == {True, False}


def test_sample_is_spread_over_the_whole_stream() -> None:
    acc = WindowAccumulator(sample_size=2000, seed=5)
    for part in range(10):
        acc.add(pd.DataFrame({"row": np.arange(part * 20_000, (part + 1) * 20_000)}))
    rows = _numeric(acc.to_profile(), "row").values
    per_part = np.bincount((rows // 20_000).astype(int), minlength=10)
    assert per_part.sum() == 2000
    assert per_part.min() >= 140  # expected 200 each; binomial sd ~13
    assert np.unique(rows).size == 2000  # without replacement


def test_sampling_is_deterministic_and_independent_of_batch_boundaries() -> None:
    frame = _frame(30_000, seed=2)
    whole = WindowAccumulator(sample_size=500, seed=9).add(frame).to_profile()
    chunked = WindowAccumulator(sample_size=500, seed=9)
    for start in range(0, 30_000, 7_000):
        chunked.add(frame.iloc[start : start + 7_000])
    parts = chunked.to_profile()
    np.testing.assert_array_equal(_numeric(parts, "x").values, _numeric(whole, "x").values)
    other_seed = WindowAccumulator(sample_size=500, seed=10).add(frame).to_profile()
    assert not np.array_equal(_numeric(other_seed, "x").values, _numeric(whole, "x").values)


def test_merge_combines_exact_statistics_and_keeps_the_bound() -> None:
    a, b = _frame(20_000, seed=3), _frame(15_000, seed=4)
    left = WindowAccumulator(sample_size=800, seed=1).add(a)
    left.merge(WindowAccumulator(sample_size=800, seed=2).add(b))
    merged = left.to_profile()
    both = pd.concat([a, b])
    x = _numeric(merged, "x")
    assert merged.n_rows == 35_000
    assert x.values.size == 800
    assert x.n_values == both["x"].notna().sum()
    assert x.std == pytest.approx(both["x"].std(ddof=0), rel=1e-9)
    c = _categorical(merged, "c")
    assert dict(zip(c.categories, c.counts, strict=True)) == both["c"].value_counts().to_dict()
    with pytest.raises(InvalidInputError):
        left.merge(WindowAccumulator(sample_size=800).add(a[["x"]]))


def test_category_cap_folds_the_rarest_into_other() -> None:
    values = np.repeat([f"k{i}" for i in range(10)], np.arange(10, 0, -1) * 10)
    acc = WindowAccumulator(max_categories=4).add(pd.DataFrame({"c": values}))
    c = _categorical(acc.to_profile(), "c")
    assert list(c.categories) == ["k0", "k1", "k2", OTHER]
    assert list(c.counts) == [100, 90, 80, values.size - 270]


def test_profile_round_trips_through_json() -> None:
    profile = ReferenceProfile.from_frame(_frame(5000), sample_size=300, seed=3)
    restored = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert restored.n_rows == profile.n_rows
    assert list(restored.columns) == list(profile.columns)
    np.testing.assert_array_equal(_numeric(restored, "x").values, _numeric(profile, "x").values)
    assert _numeric(restored, "x").std == _numeric(profile, "x").std
    np.testing.assert_array_equal(
        _categorical(restored, "c").counts, _categorical(profile, "c").counts
    )
    with pytest.raises(InvalidInputError):
        ReferenceProfile.from_dict({"n_rows": 1})


def test_accumulator_checkpoint_resumes_exactly() -> None:
    frame = _frame(20_000, seed=6)
    straight = (
        WindowAccumulator(sample_size=400, seed=4).add(frame.iloc[:9000]).add(frame.iloc[9000:])
    )
    first = WindowAccumulator(sample_size=400, seed=4).add(frame.iloc[:9000])
    resumed = WindowAccumulator.from_dict(json.loads(json.dumps(first.to_dict())))
    resumed.add(frame.iloc[9000:])
    np.testing.assert_array_equal(
        _numeric(resumed.to_profile(), "x").values, _numeric(straight.to_profile(), "x").values
    )
    assert resumed.to_profile().n_rows == 20_000


def test_bad_batches_name_the_column() -> None:
    acc = WindowAccumulator().add(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}))
    with pytest.raises(InvalidInputError) as missing:
        acc.add(pd.DataFrame({"x": [1.0]}))
    assert missing.value.details["columns"] == ["c"]
    with pytest.raises(InvalidInputError) as wrong:
        acc.add(pd.DataFrame({"x": ["not a number"], "c": ["a"]}))
    assert wrong.value.details["column"] == "x"
    with pytest.raises(InvalidInputError):
        WindowAccumulator(sample_size=0)


def test_dtypes_decide_numeric_or_categorical() -> None:
    frame = pd.DataFrame(
        {
            "nullable_int": pd.array([1, None, 3, 4], dtype="Int64"),
            "object_floats": pd.Series([1.5, None, 2.5, 3.0], dtype=object),
            "object_bools": pd.Series([True, None, False, True], dtype=object),
            "category": pd.Series(["a", "b", "a", "c"], dtype="category"),
        }
    )
    columns = ReferenceProfile.from_frame(frame).columns
    assert isinstance(columns["nullable_int"], NumericColumnProfile)
    assert columns["nullable_int"].null_rate == 0.25
    assert isinstance(columns["object_floats"], NumericColumnProfile)
    assert isinstance(columns["object_bools"], CategoricalColumnProfile)
    assert isinstance(columns["category"], CategoricalColumnProfile)
    with pytest.raises(InvalidInputError):
        ReferenceProfile.from_frame(pd.DataFrame({0: [1.0]}))
