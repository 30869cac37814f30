"""The point-in-time join: which feature values a model could have seen at time T.

For each entity row (keys, T) and each feature view V (DESIGN §2):

1. candidates have the same join keys and ``event_timestamp <= T`` (inclusive);
2. with ``V.ttl``, also ``event_timestamp >= T - ttl`` (inclusive);
3. the winner has the latest ``event_timestamp``, ties broken by the latest
   ``created_timestamp``, remaining ties by the later row of the feature table;
4. ``as_served=True`` adds ``created_timestamp <= T``: only what had been written by T;
5. it is a left join: one output row per input row, in input order, with the input's
   index, columns and duplicates kept; no winner gives nulls. A winner's null value
   stays null (it is the latest fact, not a missing one).

How, without a loop over rows: with ``avail = event_ts`` (or ``max(event_ts,
created_ts)`` when ``as_served``), a row is a candidate exactly when ``avail <= T``.
Feature rows sorted by ``avail`` carry the running best row of their key so far (by
``(event_ts, created_ts, position)``, a grouped cumulative max of its rank), and one
``merge_asof`` by key finds, for each T, the last row with ``avail <= T``. Its running
best is the winner; the ttl is then checked on the winner's event time, which is
the latest of all candidates, so no candidate can pass when it fails.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.shared.core import PointInTimeJoinError
from entai.shared.features._definitions import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureView,
    FeatureViewProjection,
    ValueType,
)
from entai.shared.features._rows import to_utc
from entai.shared.features._values import list_column

__all__ = ["entity_timestamps", "hash_partition", "output_name", "point_in_time_join"]

Indices = npt.NDArray[np.int64]


def output_name(view: FeatureView, feature: str, *, full_feature_names: bool) -> str:
    """The output column of a feature: ``feature`` or ``view__feature``."""
    return f"{view.name}__{feature}" if full_feature_names else feature


def point_in_time_join(
    entity_df: pd.DataFrame,
    tables: Sequence[tuple[FeatureViewProjection, pd.DataFrame]],
    *,
    timestamp_column: str = "event_timestamp",
    as_served: bool = False,
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Left-join each view's point-in-time-correct feature values onto ``entity_df``.

    Args:
        entity_df: Join keys, a timezone-aware ``timestamp_column`` and any other
            columns (labels), which are kept as they are.
        tables: Each requested projection with its view's feature rows (join keys,
            ``event_timestamp``, optionally ``created_timestamp``, the features).
        timestamp_column: The entity_df column holding each row's time T.
        as_served: Only rows created by T count (what the online store held at T).
        full_feature_names: Name outputs ``view__feature`` instead of ``feature``.

    Returns:
        ``entity_df`` plus one column per requested feature, with the view's
        nullable dtype.

    Raises:
        PointInTimeJoinError: a missing or naive timestamp column, a missing join key
            or feature, a join key of the wrong type, or an output name clash.
    """
    if entity_df.columns.has_duplicates:
        dupes = sorted(set(entity_df.columns[entity_df.columns.duplicated()].map(str)))
        raise PointInTimeJoinError(
            f"entity_df has duplicate columns {dupes}", details={"columns": dupes}
        )
    when = entity_timestamps(entity_df, timestamp_column)
    new: dict[str, pd.api.extensions.ExtensionArray] = {}
    for proj, table in tables:
        winners = _winners(entity_df, when, proj, table, as_served=as_served)
        for feature in proj.features:
            name = output_name(proj.view, feature, full_feature_names=full_feature_names)
            if name in entity_df.columns or name in new:
                raise PointInTimeJoinError(
                    f"output column {name!r} (view {proj.view.name!r}) clashes with another "
                    "column; pass full_feature_names=True or rename it",
                    details={"field": name, "view": proj.view.name},
                )
            new[name] = _values(proj.view, table, feature).take(winners, allow_fill=True)
    return entity_df.assign(**new)


def hash_partition(frame: pd.DataFrame, join_keys: Sequence[str], num_partitions: int) -> Indices:
    """A partition id in ``[0, num_partitions)`` per row, from a stable key hash.

    Equal keys get equal ids on both sides of a join, whatever their integer width
    or nullability, so a join can run partition by partition.
    """
    acc = np.zeros(len(frame), dtype=np.uint64)
    for key in join_keys:
        col = frame[key]
        if pd.api.types.is_integer_dtype(col.dtype):
            vals: np.ndarray = col.to_numpy(dtype=np.int64, na_value=0)
        else:
            vals = col.astype(object).where(col.notna(), "").to_numpy(dtype=object)
        acc = (acc * np.uint64(1_000_003)) ^ pd.util.hash_array(vals)
    return (acc % np.uint64(num_partitions)).astype(np.int64)


def entity_timestamps(entity_df: pd.DataFrame, timestamp_column: str) -> Indices:
    """The entity rows' times as UTC epoch nanoseconds.

    Raises:
        PointInTimeJoinError: the column is missing, naive, mixed or has nulls.
    """
    if timestamp_column not in entity_df.columns:
        raise PointInTimeJoinError(
            f"entity_df lacks the timestamp column {timestamp_column!r} "
            f"(columns: {list(map(str, entity_df.columns))})",
            details={"field": timestamp_column},
        )
    return _nanos(entity_df[timestamp_column], f"entity_df.{timestamp_column}")


def _nanos(values: pd.Series, column: str) -> Indices:
    """UTC epoch nanoseconds of an aware timestamp column without nulls."""
    utc = to_utc(values, column, error=PointInTimeJoinError)
    if utc.isna().any():
        raise PointInTimeJoinError(
            f"column {column!r} has null timestamps", details={"field": column}
        )
    return np.asarray(utc.array.asi8, dtype=np.int64)


def _check_key_type(column: pd.Series, value_type: ValueType, where: str) -> None:
    dtype = column.dtype
    if value_type is ValueType.INT64:
        ok = pd.api.types.is_integer_dtype(dtype)
    elif value_type is ValueType.STRING:
        ok = pd.api.types.is_string_dtype(dtype)
    else:
        ok = True
    if not ok:
        raise PointInTimeJoinError(
            f"join key {where} has dtype {dtype}, but its entity's keys are {value_type.value}",
            details={"field": where, "dtype": str(dtype), "expected": value_type.value},
        )


def _key_codes(
    entity_df: pd.DataFrame, table: pd.DataFrame, view: FeatureView
) -> tuple[Indices, Indices]:
    """Dense codes for the join keys of both sides (-1 where a key is null)."""
    n = len(table)
    combined: Indices | None = None
    for key in view.join_keys:
        if key not in entity_df.columns:
            raise PointInTimeJoinError(
                f"entity_df lacks join key {key!r} of feature view {view.name!r}",
                details={"field": key, "view": view.name},
            )
        _check_key_type(entity_df[key], view.key_type(key), f"entity_df.{key}")
        _check_key_type(table[key], view.key_type(key), f"{view.name}.{key}")
        both = pd.concat([table[key], entity_df[key]], ignore_index=True)
        codes, uniques = pd.factorize(both)
        codes = codes.astype(np.int64)
        if combined is None:
            combined = codes
        else:
            nulls = (codes < 0) | (combined < 0)
            combined = np.where(nulls, -1, combined * len(uniques) + codes)
            combined = np.where(nulls, -1, pd.factorize(combined)[0]).astype(np.int64)
    assert combined is not None  # a view has at least one join key
    return combined[n:], combined[:n]


def _winners(
    entity_df: pd.DataFrame,
    when: Indices,
    proj: FeatureViewProjection,
    table: pd.DataFrame,
    *,
    as_served: bool,
) -> Indices:
    """For each entity row, the position of its winning table row, or -1."""
    view = proj.view
    needed = [EVENT_TIMESTAMP, *proj.features] + ([CREATED_TIMESTAMP] if as_served else [])
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise PointInTimeJoinError(
            f"feature table of view {view.name!r} lacks column(s) {missing}",
            details={"view": view.name, "missing": missing},
        )
    entity_codes, codes = _key_codes(entity_df, table, view)
    event = _nanos(table[EVENT_TIMESTAMP], f"{view.name}.{EVENT_TIMESTAMP}")
    if CREATED_TIMESTAMP in table.columns:
        created = _nanos(table[CREATED_TIMESTAMP], f"{view.name}.{CREATED_TIMESTAMP}")
    else:
        created = np.zeros(len(table), dtype=np.int64)
    if as_served:
        avail = np.maximum(event, created)
        order = np.lexsort((created, event, avail))
        by_rank = np.lexsort((created, event))  # rank order: (event, created, position)
        rank = np.empty(len(table), dtype=np.int64)
        rank[by_rank] = np.arange(len(table), dtype=np.int64)
        running = pd.Series(rank[order]).groupby(codes[order]).cummax().to_numpy()
        best = by_rank[running]
    else:
        avail = event
        order = np.lexsort((created, event))
        best = order
    keep = codes[order] >= 0
    right = pd.DataFrame({"_t": avail[order][keep], "_k": codes[order][keep], "_r": best[keep]})
    by_time = np.argsort(when, kind="stable")
    left = pd.DataFrame({"_t": when[by_time], "_k": entity_codes[by_time]})
    found = pd.merge_asof(left, right, on="_t", by="_k", direction="backward")["_r"]
    winners = np.empty(len(when), dtype=np.int64)
    winners[by_time] = found.fillna(-1).to_numpy(dtype=np.int64)
    if view.ttl is not None:
        ttl = np.int64(view.ttl // pd.Timedelta(1, "ns"))
        matched = np.flatnonzero(winners >= 0)
        stale = event[winners[matched]] < when[matched] - ttl
        winners[matched[stale]] = -1
    return winners


def _values(
    view: FeatureView, table: pd.DataFrame, feature: str
) -> pd.api.extensions.ExtensionArray:
    """A feature column with its nullable dtype, as an array that supports ``take``."""
    dtype = view.field(feature).dtype
    column = table[feature]
    try:
        if dtype is ValueType.TIMESTAMP:
            column = to_utc(column, f"{view.name}.{feature}", error=PointInTimeJoinError)
        elif dtype.is_list:
            column = list_column(
                column, dtype, f"{view.name}.{feature}", error=PointInTimeJoinError
            )
        return column.astype(dtype.pandas_dtype).array
    except (ValueError, TypeError) as exc:
        raise PointInTimeJoinError(
            f"feature {view.name}.{feature} has dtype {column.dtype}, not {dtype.value}",
            details={"view": view.name, "field": feature},
        ) from exc
