"""Row shaping: how a view's frames look, shared by the batch and the stream paths.

A view's frame holds its join keys (the entity's type, never null), ``event_timestamp``
and, once written, ``created_timestamp`` (timezone-aware UTC, never null), and its
features in the nullable dtype of their :class:`ValueType`. :func:`conform` gives a
frame that shape and :func:`compute_view` runs a view's transform and then conforms its
output, once; everything downstream (the offline store's :meth:`append`, the online
rows, the replay-stable file names) takes the shaped frame as it is.

:func:`compute_on_demand` is the same promise for on-demand views: training sets and
the Serve replicas both call it, so a model is served the features it was trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from entai.shared.core import ContractViolationError, DefinitionError, InvalidInputError
from entai.shared.features._definitions import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureView,
    FeatureViewProjection,
    OnDemandFeatureView,
    ValueType,
)
from entai.shared.features._online import FeatureRow, OnlineBatch, entity_key, entity_keys
from entai.shared.features._values import list_cells, list_column

__all__ = [
    "compute_on_demand",
    "compute_view",
    "conform",
    "latest_per_key",
    "online_batch",
    "online_rows",
    "rows_file_id",
    "stamp_created",
    "to_utc",
]


def to_utc(
    values: pd.Series, column: str, *, error: type[InvalidInputError] = InvalidInputError
) -> pd.Series:
    """Timezone-aware timestamps as ``datetime64[ns, UTC]``.

    Args:
        values: Aware datetimes (any zone), or objects/strings that parse to them.
        column: The column's name, for the error message.
        error: The error class to raise.

    Raises:
        InvalidInputError: (or ``error``) naive values, naive mixed with aware, or
            unparseable values; the message names the column.
    """
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        try:
            values = pd.to_datetime(values)
        except (ValueError, TypeError) as exc:
            raise error(
                f"column {column!r} is not timezone-aware timestamps "
                f"(naive and aware values mixed, or unparseable): {exc}",
                details={"field": column, "dtype": str(values.dtype)},
            ) from None
        if not isinstance(values.dtype, pd.DatetimeTZDtype):
            raise error(
                f"column {column!r} holds naive timestamps; entai needs timezone-aware "
                "timestamps (e.g. pd.to_datetime(..., utc=True))",
                details={"field": column, "dtype": str(values.dtype)},
            )
    return values.dt.tz_convert("UTC").dt.as_unit("ns")


def _cast(values: pd.Series, value_type: ValueType, column: str, owner: str) -> pd.Series:
    if value_type is ValueType.TIMESTAMP:
        return to_utc(values, column, error=ContractViolationError)
    if value_type.is_list:
        try:
            return list_column(values, value_type, column)
        except ContractViolationError as exc:
            raise ContractViolationError(f"{owner}: {exc.message}", details=exc.details) from None
    kinds = {
        ValueType.INT64: "iu",
        ValueType.FLOAT64: "iuf",
        ValueType.BOOL: "b",
        ValueType.STRING: "OSU",
    }[value_type]
    dtype = values.dtype
    ok = getattr(dtype, "kind", "O") in kinds or (
        value_type is ValueType.STRING and pd.api.types.is_string_dtype(dtype)
    )
    if value_type is ValueType.INT64 and pd.api.types.is_float_dtype(dtype):
        ok = bool(((values % 1) == 0).all())  # lossless: 1.0 is fine, 1.5 is not
    try:
        if ok:
            return values.astype(value_type.pandas_dtype)
    except (ValueError, TypeError):
        pass
    raise ContractViolationError(
        f"{owner}: column {column!r} has dtype {dtype}, which is not {value_type.value}",
        details={"field": column, "dtype": str(dtype), "expected": value_type.value},
    )


def conform(view: FeatureView, df: pd.DataFrame, *, require_created: bool = False) -> pd.DataFrame:
    """Select and type a view's columns: join keys, timestamps and features.

    Join keys get the entity's type and may not be null; timestamps become UTC;
    features get the nullable dtype of their :class:`ValueType`. Extra columns are
    dropped. ``created_timestamp`` is kept when present.

    Raises:
        ContractViolationError: a missing column, a null key or timestamp, or a value
            type that does not convert losslessly; the message names view and column.
    """
    owner = f"feature view {view.name!r}"
    needed = [*view.join_keys, EVENT_TIMESTAMP, *view.feature_names]
    if require_created:
        needed.append(CREATED_TIMESTAMP)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ContractViolationError(
            f"{owner}: data lacks column(s) {missing}",
            details={"view": view.name, "missing": missing},
        )
    out: dict[str, pd.Series] = {}
    for key in view.join_keys:
        out[key] = _cast(df[key], view.key_type(key), key, owner)
    for ts in (EVENT_TIMESTAMP, CREATED_TIMESTAMP):
        if ts in df.columns:
            out[ts] = to_utc(df[ts], ts, error=ContractViolationError)
    for name in [*view.join_keys, EVENT_TIMESTAMP, CREATED_TIMESTAMP]:
        if name in out and out[name].isna().any():
            raise ContractViolationError(
                f"{owner}: column {name!r} has null values",
                details={"view": view.name, "field": name},
            )
        if name in view.join_keys and view.key_type(name) is ValueType.INT64:
            out[name] = out[name].astype("int64")
    for f in view.schema:
        out[f.name] = _cast(df[f.name], f.dtype, f.name, owner)
    return pd.DataFrame(out, index=df.index)


def compute_view(view: FeatureView, raw: pd.DataFrame) -> pd.DataFrame:
    """Apply a view's transform to raw events and conform the result to the view.

    The batch (materialization) and streaming paths both call this, so a feature
    is computed by one function everywhere.

    Raises:
        DefinitionError: the transform's output lacks a column or has a bad type.
    """
    out = raw if view.transform is None else view.transform(raw)
    try:
        return conform(view, out)
    except Exception as exc:
        raise DefinitionError(
            f"feature view {view.name!r} transform output is invalid: {exc}",
            details={"object": view.name, **getattr(exc, "details", {})},
        ) from exc


def compute_on_demand(
    views: Sequence[OnDemandFeatureView],
    frame: pd.DataFrame,
    *,
    full_feature_names: bool = False,
    error: type[InvalidInputError] = InvalidInputError,
) -> pd.DataFrame:
    """``frame`` with each on-demand view's outputs appended, row for row.

    Each transform receives the view's request columns and its sources' features under
    their plain names (read from ``frame``, where they are ``view__feature`` when
    ``full_feature_names``) and must return every field of its schema, cast to the
    field's type. Outputs are named like the features (``odfv__feature`` with full
    names).

    Raises:
        error: ``frame`` lacks a request column or a source feature (the caller's
            input error: a training set's join, a prediction's request).
        DefinitionError: a transform did not return a field of its schema, or changed
            the number of rows.
    """
    for odfv in views:
        inputs: dict[str, pd.Series] = {}
        for req in odfv.request_schema:
            if req.name not in frame.columns:
                raise error(
                    f"on-demand feature view {odfv.name!r} needs request column {req.name!r}",
                    details={"field": req.name, "view": odfv.name},
                )
            inputs[req.name] = frame[req.name]
        for src in odfv.sources:
            proj = FeatureViewProjection.of(src)
            for feature in proj.features:
                column = f"{proj.view.name}__{feature}" if full_feature_names else feature
                if column not in frame.columns:
                    raise error(
                        f"on-demand feature view {odfv.name!r} needs feature {column!r}",
                        details={"field": column, "view": odfv.name},
                    )
                inputs[feature] = frame[column]
        out = odfv.transform(pd.DataFrame(inputs, index=frame.index))
        new = {}
        for fld in odfv.schema:
            if fld.name not in out.columns or len(out) != len(frame):
                raise DefinitionError(
                    f"on-demand feature view {odfv.name!r} did not return {fld.name!r} "
                    f"for each of the {len(frame)} rows",
                    details={"object": odfv.name, "field": fld.name},
                )
            name = f"{odfv.name}__{fld.name}" if full_feature_names else fld.name
            new[name] = out[fld.name].astype(fld.dtype.pandas_dtype).to_numpy()
        frame = frame.assign(**new)
    return frame


def stamp_created(rows: pd.DataFrame, created_at: datetime | None = None) -> pd.DataFrame:
    """Give rows without a ``created_timestamp`` one write time (default: now, UTC)."""
    if CREATED_TIMESTAMP not in rows.columns:
        rows[CREATED_TIMESTAMP] = pd.Timestamp(created_at or datetime.now(UTC)).as_unit("ns")
    return rows


def latest_per_key(frame: pd.DataFrame, join_keys: Sequence[str]) -> pd.DataFrame:
    """The newest row per key by (event_timestamp, created_timestamp)."""
    ordered = frame.sort_values([EVENT_TIMESTAMP, CREATED_TIMESTAMP], kind="stable")
    return ordered.drop_duplicates(subset=list(join_keys), keep="last")


def online_rows(view: FeatureView, latest: pd.DataFrame) -> list[FeatureRow]:
    """Online-store rows for the latest value of each key."""
    keys = list(view.join_keys)
    scalars = [f.name for f in view.schema if not f.dtype.is_list]
    key_records = latest[keys].to_dict("records")
    value_records = latest[scalars].astype(object).where(latest[scalars].notna(), None)
    values = value_records.to_dict("records")
    for f in view.schema:
        if f.dtype.is_list:  # Python lists, whatever frame (Arrow, numpy cells) they came in
            for row, cell in zip(values, list_cells(latest[f.name], f.dtype, f.name), strict=True):
                row[f.name] = cell
    events = latest[EVENT_TIMESTAMP].dt.to_pydatetime()
    created = latest[CREATED_TIMESTAMP].dt.to_pydatetime()
    return [
        FeatureRow(
            view=view.name,
            entity_key=entity_key(k),
            values=v,
            event_ts=e,
            created_ts=c,
        )
        for k, v, e, c in zip(key_records, values, events, created, strict=True)
    ]


def online_batch(view: FeatureView, latest: pd.DataFrame) -> OnlineBatch:
    """:func:`online_rows` as one columnar :class:`OnlineBatch`: the same writes, built
    a column at a time (no per-row objects)."""
    keys = entity_keys({k: latest[k].tolist() for k in view.join_keys})
    columns: list[list[Any]] = []
    for f in view.schema:
        values = latest[f.name]
        if f.dtype.is_list:  # Python lists, whatever frame (Arrow, numpy cells) they came in
            columns.append(list_cells(values, f.dtype, f.name))
        else:
            columns.append(values.astype(object).where(values.notna(), None).tolist())
    return OnlineBatch(
        view.name,
        keys,
        tuple(f.name for f in view.schema),
        columns,
        _micros(latest[EVENT_TIMESTAMP]),
        _micros(latest[CREATED_TIMESTAMP]),
    )


def _micros(stamps: pd.Series) -> list[int]:
    """UTC timestamps as integer microseconds since the epoch (sub-microseconds
    dropped, as ``to_pydatetime`` drops them)."""
    dtype = stamps.dtype
    if isinstance(dtype, pd.ArrowDtype) and getattr(dtype.pyarrow_dtype, "tz", None):
        stamps = stamps.astype("datetime64[ns, UTC]")  # Ray Data's frames: Arrow timestamps
    utc = to_utc(stamps, str(stamps.name)).dt.tz_convert(None)  # naive UTC, ns
    nanos = utc.to_numpy(dtype="datetime64[ns]").view("int64")
    out: list[int] = (nanos // 1_000).tolist()
    return out


def _is_list_dtype(dtype: object) -> bool:
    return isinstance(dtype, pd.ArrowDtype) and pa.types.is_list(dtype.pyarrow_dtype)


def rows_file_id(prefix: str, rows: pd.DataFrame) -> str:
    """A file name for a set of feature rows that a replay of the same rows reproduces."""
    lists = [c for c in rows.columns if _is_list_dtype(rows[c].dtype)]
    if lists:  # list cells are not hashable: hash their text
        rows = rows.assign(**{c: rows[c].astype(str) for c in lists})
    hashed = pd.util.hash_pandas_object(rows, index=False).sort_values().to_numpy()
    return f"{prefix}{hashlib.sha256(hashed.tobytes()).hexdigest()[:20]}"
