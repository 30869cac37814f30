"""Materialization: raw lake events -> feature views -> offline tables + online shards.

Per view, Ray Data reads the view's raw source, hash-partitions rows on the view's
join keys (so every key's whole history is in one block and windowed transforms see
all of it), applies the view's shared transform block by block, appends the result
to the offline table from the workers, and returns only the latest row per key to
the driver, which writes those to the online store. The view's watermark (the
latest event time materialized) is committed after the online write is acknowledged,
so a crash before that point re-runs the view without losing anything; offline files
are named by a hash of their rows' keys and times, so the re-run replaces what the
crashed run wrote instead of appending it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from entai.actors.features import OnlineFeatureClient
from entai.pipelines.data_context import V1_PARQUET_READER, data_settings
from entai.shared.core import NotFoundError
from entai.shared.data import Lake
from entai.shared.features import (
    FeatureView,
    OfflineStore,
    compute_view,
    latest_per_key,
    list_cells,
    online_batch,
    rows_file_id,
    stamp_created,
)

__all__ = [
    "MaterializeReport",
    "materialize",
    "read_watermark",
]

log = logging.getLogger(__name__)

_CREATED = "created_timestamp"
_EVENT = "event_timestamp"
_ONLINE_CHUNK = 5_000
_WRITTEN = "_offline_rows_written"


@dataclass(frozen=True)
class MaterializeReport:
    """What one view's materialization wrote."""

    view: str
    offline_rows: int
    online_keys: int
    watermark: datetime | None


def _empty_latest(view: FeatureView) -> pd.DataFrame:
    columns = [*view.join_keys, *view.feature_names, _EVENT, _CREATED, _WRITTEN]
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _watermark_path(lake: Lake, view: FeatureView) -> str:
    return lake.path("manifests", "materialize", f"{view.name}.json")


def read_watermark(lake: Lake, view: FeatureView) -> datetime | None:
    """The latest event time already materialized for ``view``, if any."""
    path = _watermark_path(lake, view)
    if not lake.exists(path):
        return None
    value = lake.read_json(path).get("watermark")
    return datetime.fromisoformat(value) if value else None


def _compute_and_store(
    raw: pd.DataFrame,
    *,
    view: FeatureView,
    lake_root: str,
    created_at: datetime,
    after: datetime | None,
    lookback: timedelta,
) -> pd.DataFrame:
    """Ray Data task: transform one hash partition, append it offline, keep latest."""
    raw = raw.drop(columns=["date"], errors="ignore")
    if after is not None:
        # History back to (watermark - lookback) feeds the windows; only rows newer
        # than the watermark are new output.
        raw = raw[raw[_EVENT] > pd.Timestamp(after - lookback)]
    if raw.empty:
        return _empty_latest(view)
    features = compute_view(view, raw)
    if after is not None:
        features = features[features[_EVENT] > pd.Timestamp(after)]
        if features.empty:
            return _empty_latest(view)
    features = stamp_created(features, created_at)
    file_id = rows_file_id(f"m{after or ''}-", features[[*view.join_keys, _EVENT]])
    written = OfflineStore(Lake(lake_root)).append(view, features, file_id=file_id)
    latest = latest_per_key(features, view.join_keys).reset_index(drop=True)
    for f in view.schema:  # Ray Data cannot rebuild Arrow list dtypes from pandas metadata
        if f.dtype.is_list:
            latest[f.name] = pd.Series(list_cells(latest[f.name], f.dtype, f.name), dtype=object)
    # The offline row count rides on the first latest row; the driver sums it.
    latest[_WRITTEN] = 0
    if not latest.empty:
        latest.loc[0, _WRITTEN] = written
    return latest


def materialize(
    views: Sequence[FeatureView],
    *,
    lake: Lake,
    online: OnlineFeatureClient | None,
    num_blocks: int = 8,
    rows_per_block: int = 500_000,
    incremental: bool = False,
    lookback: timedelta = timedelta(days=30),
    on_view_done: Callable[[MaterializeReport], None] | None = None,
) -> list[MaterializeReport]:
    """Materialize each view from its raw source into the offline and online stores.

    Args:
        views: The views to compute.
        lake: Where the raw zone and offline tables live.
        online: Where the latest value per key goes (None: offline only).
        num_blocks: Most hash partitions of the raw data.
        rows_per_block: Raw rows per partition; bounds each task's memory.
        incremental: Only emit feature rows newer than the view's committed watermark,
            recomputed from raw history back to ``watermark - lookback``.
        lookback: How much history the view's transform needs (its longest window);
            the view's ttl is used when set.
        on_view_done: Called with each view's report (progress).
    """

    created_at = datetime.now(UTC)
    with data_settings(**V1_PARQUET_READER):
        return [
            _materialize_view(
                view,
                lake=lake,
                online=online,
                num_blocks=num_blocks,
                rows_per_block=rows_per_block,
                created_at=created_at,
                after=read_watermark(lake, view) if incremental else None,
                lookback=view.ttl or lookback,
                on_view_done=on_view_done,
            )
            for view in views
        ]


def _materialize_view(
    view: FeatureView,
    *,
    lake: Lake,
    online: OnlineFeatureClient | None,
    num_blocks: int,
    rows_per_block: int,
    created_at: datetime,
    after: datetime | None,
    lookback: timedelta,
    on_view_done: Callable[[MaterializeReport], None] | None,
) -> MaterializeReport:
    import ray.data

    source = lake.raw(view.source)
    if not lake.exists(source):
        raise NotFoundError(
            f"feature view {view.name!r} reads raw source {view.source!r}, which has no data",
            details={"view": view.name, "source": view.source},
        )
    raw = ray.data.read_parquet(source, filesystem=lake.fs)
    blocks = max(1, min(num_blocks, -(-raw.count() // rows_per_block)))
    # One block needs no shuffle: every key's history is already together.
    partitioned = (
        raw.repartition(1) if blocks == 1 else raw.repartition(blocks, keys=list(view.join_keys))
    )
    # Tasks, not an actor pool: an actor is a fresh worker process per run (seconds
    # to start) and holds its CPU while the shuffle before it runs; tasks reuse the
    # cluster's idle workers and take a CPU only while they compute.
    latest: pd.DataFrame = partitioned.map_batches(
        _compute_and_store,  # type: ignore[arg-type]
        fn_kwargs={
            "view": view,
            "lake_root": lake.root,
            "created_at": created_at,
            "after": after,
            "lookback": lookback,
        },
        batch_size=None,
        batch_format="pandas",
    ).to_pandas()
    # Ray Data drops the columns of an all-empty result.
    written = latest.pop(_WRITTEN) if _WRITTEN in latest.columns else pd.Series(dtype=float)
    offline_rows = int(written.fillna(0).sum())
    if online is not None:
        for start in range(0, len(latest), _ONLINE_CHUNK):
            online.write_batch(online_batch(view, latest.iloc[start : start + _ONLINE_CHUNK]))
    watermark = latest[_EVENT].max().to_pydatetime() if not latest.empty else after
    report = MaterializeReport(view.name, offline_rows, len(latest), watermark)
    # Committed only now, after every online write was acknowledged.
    lake.write_json(
        _watermark_path(lake, view),
        {"view": view.name, "watermark": watermark.isoformat() if watermark else None},
    )
    log.info("materialized view", extra={"view": view.name, "online_keys": len(latest)})
    if on_view_done is not None:
        on_view_done(report)
    return report
