"""The offline store: each feature view's history as Parquet in the lake.

A view's table lives under ``<lake>/offline/<view>/date=YYYY-MM-DD/`` (hive
partitioning by event date, UTC). Every row carries the join keys, ``event_timestamp``
(when the fact happened) and ``created_timestamp`` (when it was written), both
timezone-aware UTC. Writes only ever add new files, so history (late corrections
included) is never rewritten; the point-in-time join picks the right row.

Rows reach the store already shaped by :mod:`entai.shared.features._rows` (the column
contract of a view's frames); :meth:`OfflineStore.write` shapes a frame from elsewhere first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from entai.shared.core import InvalidInputError
from entai.shared.data import Lake
from entai.shared.features._definitions import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureView,
    ValueType,
)
from entai.shared.features._rows import conform, stamp_created
from entai.shared.features._values import arrow_list_type

__all__ = ["OfflineStore", "arrow_schema"]

logger = logging.getLogger(__name__)

_DATE = "date"
_ARROW = {
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT64: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BOOL: pa.bool_(),
    ValueType.TIMESTAMP: pa.timestamp("ns", tz="UTC"),
    ValueType.LIST_STRING: arrow_list_type(ValueType.LIST_STRING),
    ValueType.LIST_INT64: arrow_list_type(ValueType.LIST_INT64),
}
_PARTITIONING = pads.partitioning(pa.schema([(_DATE, pa.string())]), flavor="hive")


def arrow_schema(view: FeatureView) -> pa.Schema:
    """The Arrow schema of a view's stored rows (without the date partition column)."""
    ts = pa.timestamp("ns", tz="UTC")
    return pa.schema(
        [(k, _ARROW[view.key_type(k)]) for k in view.join_keys]
        + [(EVENT_TIMESTAMP, ts), (CREATED_TIMESTAMP, ts)]
        + [(f.name, _ARROW[f.dtype]) for f in view.schema]
    )


class OfflineStore:
    """Per-view Parquet tables in the lake, appended to and read with date pruning.

    Args:
        lake: The lake holding the ``offline`` zone.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def __repr__(self) -> str:
        return f"OfflineStore(lake={self.lake!r})"

    def write(self, view: FeatureView, df: pd.DataFrame, *, file_id: str | None = None) -> int:
        """Shape a frame to the view, then :meth:`append` it; return the row count.

        ``created_timestamp`` defaults to now (UTC) when the frame has none.

        Raises:
            ContractViolationError: the frame does not fit the view (see ``conform``).
        """
        return self.append(view, stamp_created(conform(view, df)), file_id=file_id)

    def append(self, view: FeatureView, rows: pd.DataFrame, *, file_id: str | None = None) -> int:
        """Append a view's shaped rows to its table in new Parquet files; return the count.

        ``rows`` come from ``conform``/``compute_view`` with ``created_timestamp`` set
        (``stamp_created``); they are not shaped again. ``file_id`` names the files:
        writing again with the same id replaces them, so a replayed batch does not
        duplicate rows.
        """
        frame = rows
        if frame.empty:
            return 0
        naive = {  # UTC wall times: the schema's tz type reads them as UTC
            c: frame[c].dt.tz_convert(None)
            for c in frame.columns
            if isinstance(frame[c].dtype, pd.DatetimeTZDtype)
        }
        table = pa.Table.from_pandas(
            frame.assign(**naive), schema=arrow_schema(view), preserve_index=False
        )
        dates = frame[EVENT_TIMESTAMP].dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        table = table.append_column(_DATE, pa.array(dates, pa.string()))
        pads.write_dataset(
            table,
            self.lake.offline(view.name),
            format="parquet",
            partitioning=_PARTITIONING,
            basename_template=f"part-{file_id or uuid.uuid4().hex}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            filesystem=self.lake.fs,
        )
        logger.info("offline write", extra={"view": view.name, "rows": len(frame)})
        return len(frame)

    def read(
        self,
        view: FeatureView,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows with ``start <= event_timestamp <= end`` (either bound optional).

        Only the date partitions that can hold such rows are opened. ``columns``
        selects features; keys and both timestamps are always returned.
        """
        schema = arrow_schema(view)
        names = [*view.join_keys, EVENT_TIMESTAMP, CREATED_TIMESTAMP]
        names += [c for c in (columns or view.feature_names) if c not in names]
        unknown = [c for c in names if c not in schema.names]
        if unknown:
            raise InvalidInputError(
                f"feature view {view.name!r} has no column(s) {unknown}",
                details={"view": view.name, "columns": unknown},
            )
        root = self.lake.offline(view.name)
        if not self.lake.exists(root):
            table = schema.empty_table().select(names)
        else:
            full = schema.append(pa.field(_DATE, pa.string()))
            data = pads.dataset(
                root,
                schema=full,
                format="parquet",
                partitioning=_PARTITIONING,
                filesystem=self.lake.fs,
            )
            table = data.to_table(columns=names, filter=_time_filter(start, end))
        return table.to_pandas(types_mapper=_nullable).pipe(_typed, view)


def _time_filter(start: datetime | None, end: datetime | None) -> pads.Expression | None:
    expr: pads.Expression | None = None
    for bound, op in ((start, "ge"), (end, "le")):
        if bound is None:
            continue
        ts = pd.Timestamp(bound)
        if ts.tzinfo is None:
            raise InvalidInputError(
                f"read bound {bound!r} must be timezone-aware", details={"field": op}
            )
        ts = ts.tz_convert("UTC")
        day, when = ts.strftime("%Y-%m-%d"), pa.scalar(ts.as_unit("ns"), pa.timestamp("ns", "UTC"))
        date_field, ts_field = pads.field(_DATE), pads.field(EVENT_TIMESTAMP)
        part = (
            (date_field >= day) & (ts_field >= when)
            if op == "ge"
            else ((date_field <= day) & (ts_field <= when))
        )
        expr = part if expr is None else expr & part
    return expr


def _nullable(arrow_type: pa.DataType) -> object:
    if pa.types.is_list(arrow_type):  # list features read back as Python lists per cell
        return pd.ArrowDtype(arrow_type)
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    return mapping.get(arrow_type)


def _typed(df: pd.DataFrame, view: FeatureView) -> pd.DataFrame:
    """Give keys their storage dtype and features their nullable dtype."""
    for key in view.join_keys:
        if view.key_type(key) is ValueType.INT64:
            df[key] = df[key].astype("int64")
    for f in view.schema:
        if f.name in df.columns:
            df[f.name] = df[f.name].astype(f.dtype.pandas_dtype)
    return df
