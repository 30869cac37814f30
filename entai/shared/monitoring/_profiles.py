"""Bounded-memory data profiles: what drift tests compare.

A profile summarises each column of a dataset in a form the drift tests can use and
that is small enough to checkpoint as JSON:

- numeric columns: a uniform random sample of the finite values (kept sorted), the exact
  count of values and nulls, and the exact mean and sum of squared deviations (merged
  with Chan's formula, so the standard deviation is exact however large the data);
- other columns (strings, categories, booleans): an exact frequency table, capped at
  ``max_categories`` entries; the least frequent categories beyond the cap are folded
  into one :data:`OTHER` bucket.

Sampling is bottom-k: every row gets a uniform random key from the accumulator's seeded
generator and each column keeps the values of its ``sample_size`` smallest keys among
its non-null rows. That is a uniform sample without replacement, it is deterministic for
a seed and a batch sequence, and two accumulators merge by keeping the smallest keys of
both (give accumulators that will be merged different seeds). ``sample_size=None``
keeps every value (exact, unbounded; what :func:`entai.shared.monitoring._drift.dataset_drift`
does for in-memory DataFrames).

Null means NaN, None, NA or, for numeric columns, ``±inf`` (as Evidently drops them).

Rows may carry a *tag* (an entity key or request id): each sampled numeric value keeps
its row's tag, so :meth:`WindowAccumulator.erase` can drop a data subject's sampled
values. Counts, moments and category frequencies are aggregates and stay as they are.
Dropping tagged rows from a bottom-k sample leaves the bottom-k' sample of the remaining
rows (k' < k), so what is left is still a uniform sample. The JSON forms (checkpoints)
are at the end of the module.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.shared.core import InvalidInputError

__all__ = [
    "OTHER",
    "CategoricalColumnProfile",
    "ColumnProfile",
    "DatasetProfile",
    "NumericColumnProfile",
    "ReferenceProfile",
    "WindowAccumulator",
    "WindowProfile",
    "accumulator_from_dict",
    "accumulator_to_dict",
    "column_from_dict",
    "column_to_dict",
    "decode_floats",
    "encode_floats",
    "finite_values",
    "is_numeric_series",
]

logger = logging.getLogger(__name__)

OTHER = "<entai:other>"
"""Label of the bucket holding categories folded away by the ``max_categories`` cap."""

FloatArray = npt.NDArray[np.float64]
TagArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class NumericColumnProfile:
    """A numeric column: sorted sample of finite values plus exact counts and moments.

    Attributes:
        values: Sorted finite values; all of them, or a uniform sample.
        n_values: Finite values seen (may exceed ``len(values)``).
        n_null: Null or non-finite values seen.
        mean: Exact mean of the finite values.
        m2: Exact sum of squared deviations from the mean.
    """

    values: FloatArray
    n_values: int
    n_null: int
    mean: float
    m2: float

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0) of the finite values."""
        return math.sqrt(self.m2 / self.n_values) if self.n_values else 0.0

    @property
    def null_rate(self) -> float:
        """Share of rows that are null or non-finite."""
        total = self.n_values + self.n_null
        return self.n_null / total if total else 0.0


@dataclass(frozen=True)
class CategoricalColumnProfile:
    """A non-numeric column: exact frequency table (capped) and null count.

    Attributes:
        categories: Category labels, most frequent first; may include :data:`OTHER`.
        counts: Count per category, aligned with ``categories``.
        n_null: Null values seen.
    """

    categories: npt.NDArray[np.object_]
    counts: npt.NDArray[np.int64]
    n_null: int

    @property
    def n_values(self) -> int:
        """Non-null values seen."""
        return int(self.counts.sum())

    @property
    def null_rate(self) -> float:
        """Share of rows that are null."""
        total = self.n_values + self.n_null
        return self.n_null / total if total else 0.0


ColumnProfile = NumericColumnProfile | CategoricalColumnProfile


@dataclass(frozen=True)
class DatasetProfile:
    """Column profiles of one dataset, serialisable to plain JSON-able dicts.

    Attributes:
        n_rows: Rows profiled.
        columns: Profile per column name, in the dataset's column order.
    """

    n_rows: int
    columns: Mapping[str, ColumnProfile]

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, sample_size: int | None = 10_000, seed: int = 0
    ) -> Self:
        """Profile a DataFrame in one pass.

        Args:
            frame: The data.
            sample_size: Values kept per numeric column; ``None`` keeps all (exact).
            seed: Seed of the sampling keys.
        """
        accumulator = WindowAccumulator(sample_size=sample_size, seed=seed).add(frame)
        return cls(n_rows=accumulator.n_rows, columns=accumulator.column_profiles())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (categories must be str, int, float or bool)."""

        return {
            "n_rows": self.n_rows,
            "columns": {name: column_to_dict(col) for name, col in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a profile written by :meth:`to_dict`."""

        try:
            columns = {name: column_from_dict(col) for name, col in data["columns"].items()}
            return cls(n_rows=int(data["n_rows"]), columns=columns)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"profile dict is malformed: {exc!r}", details={"field": "profile"}
            ) from exc


class ReferenceProfile(DatasetProfile):
    """The profile a model is monitored against (usually its training dataset)."""


class WindowProfile(DatasetProfile):
    """The profile of one window of served data."""


def _object_array(items: Any) -> npt.NDArray[np.object_]:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


_NUMERIC_INFERRED = frozenset({"floating", "integer", "mixed-integer-float", "decimal"})


def is_numeric_series(series: pd.Series) -> bool:
    """Whether a column is profiled as numeric.

    True for numeric dtypes other than boolean, and for object columns whose non-null
    values are all numbers.
    """
    dtype = series.dtype
    if pd.api.types.is_object_dtype(dtype):
        return pd.api.types.infer_dtype(series, skipna=True) in _NUMERIC_INFERRED
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def finite_values(series: pd.Series, column: str) -> FloatArray:
    """The column as float64 with nulls and ``±inf`` turned into NaN."""
    try:
        values = np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"column {column!r} is not numeric: {exc}", details={"column": column}
        ) from exc
    return np.where(np.isfinite(values), values, np.nan)


@dataclass
class _NumericState:
    keys: FloatArray
    values: FloatArray
    tags: TagArray
    n_values: int = 0
    n_null: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def merge_moments(self, n: int, mean: float, m2: float) -> None:
        """Chan et al.'s parallel update of count, mean and M2."""
        if n == 0:
            return
        total = self.n_values + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n_values * n / total
        self.n_values = total


@dataclass
class _CategoricalState:
    counts: pd.Series
    n_null: int = 0


class WindowAccumulator:
    """Accumulates batches of rows into a bounded-memory profile.

    The schema (column names and numeric/non-numeric) is fixed by the first batch;
    later batches must have the same columns.

    Args:
        sample_size: Values kept per numeric column; ``None`` keeps all (exact).
        seed: Seed of the sampling keys; the result is deterministic for a seed.
        max_categories: Cap on categories per non-numeric column (rest -> :data:`OTHER`).
    """

    def __init__(
        self, *, sample_size: int | None = 10_000, seed: int = 0, max_categories: int = 1000
    ) -> None:
        if sample_size is not None and sample_size < 1:
            raise InvalidInputError(
                f"sample_size must be >= 1 or None, got {sample_size}",
                details={"field": "sample_size"},
            )
        if max_categories < 2:
            raise InvalidInputError(
                f"max_categories must be >= 2, got {max_categories}",
                details={"field": "max_categories"},
            )
        self.sample_size = sample_size
        self.seed = seed
        self.max_categories = max_categories
        self.n_rows = 0
        self._rng = np.random.default_rng(seed)
        self._numeric: dict[str, _NumericState] = {}
        self._categorical: dict[str, _CategoricalState] = {}
        self._order: list[str] = []

    def __repr__(self) -> str:
        return (
            f"WindowAccumulator(sample_size={self.sample_size}, seed={self.seed}, "
            f"max_categories={self.max_categories}, n_rows={self.n_rows}, "
            f"columns={len(self._order)})"
        )

    def add(self, batch: pd.DataFrame, *, tags: Sequence[str | None] | None = None) -> Self:
        """Fold a batch of rows into the profile; returns ``self`` for chaining.

        Args:
            batch: The rows.
            tags: One tag per row (entity key or request id), kept with sampled values.
        """
        if tags is not None and len(tags) != len(batch):
            raise InvalidInputError(
                f"tags has {len(tags)} entries for {len(batch)} rows", details={"field": "tags"}
            )
        row_tags = _object_array([None] * len(batch) if tags is None else tags)
        if not self._order:
            names = list(batch.columns)
            if not all(isinstance(name, str) for name in names):
                raise InvalidInputError(
                    "column names must be strings", details={"columns": [str(n) for n in names]}
                )
            self._order = names
            for name in self._order:
                if is_numeric_series(batch[name]):
                    empty = np.empty(0, dtype=np.float64)
                    self._numeric[name] = _NumericState(
                        keys=empty, values=empty, tags=_object_array([])
                    )
                else:
                    self._categorical[name] = _CategoricalState(
                        counts=pd.Series([], dtype=np.int64)
                    )
        missing = [c for c in self._order if c not in batch.columns]
        if missing:
            raise InvalidInputError(
                f"batch lacks column(s) {missing} of the profile",
                details={"columns": missing},
            )
        keys = self._rng.random(len(batch)) if self.sample_size is not None else None
        for name, state in self._numeric.items():
            self._add_numeric(state, finite_values(batch[name], name), keys, row_tags)
        for name, cat in self._categorical.items():
            column = batch[name]
            counts = column.value_counts(dropna=True)
            self._merge_counts(cat, counts[counts > 0].astype(np.int64), int(column.isna().sum()))
        self.n_rows += len(batch)
        return self

    def merge(self, other: WindowAccumulator) -> None:
        """Fold another accumulator (same schema, different seed) into this one."""
        if other._order != self._order or other.sample_size != self.sample_size:
            raise InvalidInputError(
                "accumulators to merge must share columns and sample_size",
                details={"columns": other._order, "sample_size": other.sample_size},
            )
        for name, state in self._numeric.items():
            theirs = other._numeric[name]
            state.merge_moments(theirs.n_values, theirs.mean, theirs.m2)
            state.n_null += theirs.n_null
            self._keep_sample(state, theirs.keys, theirs.values, theirs.tags)
        for name, cat in self._categorical.items():
            theirs_cat = other._categorical[name]
            self._merge_counts(cat, theirs_cat.counts, theirs_cat.n_null)
        self.n_rows += other.n_rows

    def _add_numeric(
        self, state: _NumericState, values: FloatArray, keys: FloatArray | None, tags: TagArray
    ) -> None:
        valid = ~np.isnan(values)
        kept = values[valid]
        n = int(kept.size)
        state.n_null += int(values.size) - n
        if n:
            mean = float(kept.mean())
            state.merge_moments(n, mean, float(np.square(kept - mean).sum()))
        self._keep_sample(state, None if keys is None else keys[valid], kept, tags[valid])

    def _keep_sample(
        self, state: _NumericState, keys: FloatArray | None, values: FloatArray, tags: TagArray
    ) -> None:
        all_values = np.concatenate([state.values, values])
        all_tags = np.concatenate([state.tags, tags])
        if keys is None or self.sample_size is None:
            state.values, state.tags = all_values, all_tags
            return
        all_keys = np.concatenate([state.keys, keys])
        k = self.sample_size
        if all_keys.size > k:
            chosen = np.argpartition(all_keys, k - 1)[:k]
            all_keys, all_values, all_tags = all_keys[chosen], all_values[chosen], all_tags[chosen]
        state.keys, state.values, state.tags = all_keys, all_values, all_tags

    def erase(self, tags: Collection[str]) -> int:
        """Drop every sampled numeric value whose row carries one of ``tags``.

        Returns:
            How many sampled values were dropped (over all columns).
        """
        wanted = list(tags)
        dropped = 0
        for state in self._numeric.values():
            keep = ~np.isin(state.tags, wanted)
            dropped += int(keep.size - keep.sum())
            state.values, state.tags = state.values[keep], state.tags[keep]
            if state.keys.size:
                state.keys = state.keys[keep]
        return dropped

    def _merge_counts(self, state: _CategoricalState, counts: pd.Series, n_null: int) -> None:
        merged = state.counts.add(counts, fill_value=0).astype(np.int64)
        merged = merged.sort_values(ascending=False, kind="stable")
        if len(merged) > self.max_categories:
            keep = self.max_categories - 1
            head = merged.drop(OTHER, errors="ignore")
            folded = int(merged.sum() - head.iloc[:keep].sum())
            merged = pd.concat([head.iloc[:keep], pd.Series({OTHER: folded}, dtype=np.int64)])
            logger.debug("folded categories into %s", OTHER, extra={"folded": folded})
        state.counts = merged
        state.n_null += n_null

    def column_profiles(self) -> dict[str, ColumnProfile]:
        """The current profile of every column, in the schema's order."""
        out: dict[str, ColumnProfile] = {}
        for name in self._order:
            if name in self._numeric:
                s = self._numeric[name]
                out[name] = NumericColumnProfile(
                    np.sort(s.values), s.n_values, s.n_null, s.mean, s.m2
                )
            else:
                c = self._categorical[name]
                out[name] = CategoricalColumnProfile(
                    _object_array(c.counts.index.tolist()),
                    c.counts.to_numpy(dtype=np.int64),
                    c.n_null,
                )
        return out

    def to_profile(self) -> WindowProfile:
        """The window's profile so far."""
        return WindowProfile(n_rows=self.n_rows, columns=self.column_profiles())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able checkpoint, including the generator state (sampling continues exactly)."""

        return accumulator_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowAccumulator:
        """Restore an accumulator checkpointed by :meth:`to_dict`."""

        return accumulator_from_dict(data)


# JSON forms of column profiles and window accumulators (checkpoints). An accumulator's
# checkpoint includes its generator state and its sampling keys and tags, so a restored
# accumulator continues exactly as the original would have. Float arrays in accumulator
# checkpoints are base64 of their little-endian float64 bytes (encode_floats): exact,
# and far cheaper to write than decimal lists; plain lists are read too.

_F8 = np.dtype("<f8")


def encode_floats(values: npt.ArrayLike) -> str:
    """A float array as base64 of its little-endian float64 bytes (exact)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=_F8).tobytes()).decode("ascii")


def decode_floats(data: str | list[float]) -> npt.NDArray[np.float64]:
    """The inverse of :func:`encode_floats`; a plain list of numbers is accepted too."""
    if isinstance(data, str):
        return np.frombuffer(base64.b64decode(data), dtype=_F8).astype(np.float64)
    return np.asarray(data, dtype=np.float64)


def column_to_dict(col: ColumnProfile) -> dict[str, Any]:
    """A column profile as a JSON-able dict (categories must be str, int, float or bool)."""
    if isinstance(col, NumericColumnProfile):
        return {
            "type": "numeric",
            "values": col.values.tolist(),
            "n_values": col.n_values,
            "n_null": col.n_null,
            "mean": col.mean,
            "m2": col.m2,
        }
    return {
        "type": "categorical",
        "categories": col.categories.tolist(),
        "counts": col.counts.tolist(),
        "n_null": col.n_null,
    }


def column_from_dict(data: Mapping[str, Any]) -> ColumnProfile:
    """Rebuild a column profile written by :func:`column_to_dict`.

    Raises:
        ValueError: for an unknown profile type (callers wrap it in InvalidInputError).
    """
    if data["type"] == "numeric":
        return NumericColumnProfile(
            values=np.sort(np.asarray(data["values"], dtype=np.float64)),
            n_values=int(data["n_values"]),
            n_null=int(data["n_null"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
        )
    if data["type"] == "categorical":
        return CategoricalColumnProfile(
            categories=_object_array(data["categories"]),
            counts=np.asarray(data["counts"], dtype=np.int64),
            n_null=int(data["n_null"]),
        )
    raise ValueError(f"unknown column profile type {data['type']!r}")


def accumulator_to_dict(acc: WindowAccumulator) -> dict[str, Any]:
    """JSON-able checkpoint of an accumulator, including its generator state."""
    return {
        "sample_size": acc.sample_size,
        "seed": acc.seed,
        "max_categories": acc.max_categories,
        "n_rows": acc.n_rows,
        "rng_state": acc._rng.bit_generator.state,
        "order": list(acc._order),
        "numeric": {
            name: {
                "keys": encode_floats(s.keys),
                "values": encode_floats(s.values),
                "tags": s.tags.tolist(),
                "n_values": s.n_values,
                "n_null": s.n_null,
                "mean": s.mean,
                "m2": s.m2,
            }
            for name, s in acc._numeric.items()
        },
        "categorical": {
            name: {
                "categories": c.counts.index.tolist(),
                "counts": c.counts.tolist(),
                "n_null": c.n_null,
            }
            for name, c in acc._categorical.items()
        },
    }


def accumulator_from_dict(data: Mapping[str, Any]) -> WindowAccumulator:
    """Restore an accumulator checkpointed by :func:`accumulator_to_dict`.

    Checkpoints written before tags existed restore with every tag None.

    Raises:
        InvalidInputError: when the checkpoint is malformed.
    """
    try:
        acc = WindowAccumulator(
            sample_size=data["sample_size"],
            seed=int(data["seed"]),
            max_categories=int(data["max_categories"]),
        )
        acc.n_rows = int(data["n_rows"])
        acc._rng.bit_generator.state = dict(data["rng_state"])
        acc._order = [str(c) for c in data["order"]]
        for name, s in data["numeric"].items():
            values = decode_floats(s["values"])
            acc._numeric[name] = _NumericState(
                keys=decode_floats(s["keys"]),
                values=values,
                tags=_object_array(s.get("tags", [None] * values.size)),
                n_values=int(s["n_values"]),
                n_null=int(s["n_null"]),
                mean=float(s["mean"]),
                m2=float(s["m2"]),
            )
        for name, c in data["categorical"].items():
            counts = pd.Series(c["counts"], index=_object_array(c["categories"]), dtype=np.int64)
            acc._categorical[name] = _CategoricalState(counts=counts, n_null=int(c["n_null"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"accumulator checkpoint is malformed: {exc!r}", details={"field": "checkpoint"}
        ) from exc
    return acc
