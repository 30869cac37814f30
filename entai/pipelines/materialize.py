"""Materialization: raw lake events -> feature views -> offline tables + online shards.

Per view, Ray Data reads the view's raw source, hash-partitions rows on the view's
join keys (so every key's whole history is in one block and windowed transforms see
all of it), applies the view's shared transform block by block, appends the result
to the offline table from the workers, and returns only the latest row per key to
the driver, which writes those to the online store. The view's watermark (the
latest event time materialized) is committed after the online write is acknowledged,
so a crash before that point re-runs the view without losing anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from entai.actors.online_client import OnlineFeatureClient
from entai.shared.definitions import FeatureView
from entai.shared.errors import NotFoundError
from entai.shared.lake import Lake
from entai.shared.offline_store import OfflineStore
from entai.shared.online import FeatureRow, entity_key

__all__ = ["MaterializeReport", "latest_per_key", "materialize", "online_rows"]

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


def latest_per_key(frame: pd.DataFrame, join_keys: Sequence[str]) -> pd.DataFrame:
    """The newest row per key by (event_timestamp, created_timestamp)."""
    ordered = frame.sort_values([_EVENT, _CREATED], kind="stable")
    return ordered.drop_duplicates(subset=list(join_keys), keep="last")


def online_rows(view: FeatureView, latest: pd.DataFrame) -> list[FeatureRow]:
    """Online-store rows for the latest value of each key."""
    keys = list(view.join_keys)
    features = list(view.feature_names)
    key_records = latest[keys].to_dict("records")
    value_records = latest[features].astype(object).where(latest[features].notna(), None)
    values = value_records.to_dict("records")
    events = latest[_EVENT].dt.to_pydatetime()
    created = latest[_CREATED].dt.to_pydatetime()
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


class _ComputeAndStore:
    """Ray Data callable: transform one hash partition, append it offline, keep latest."""

    def __init__(self, view: FeatureView, lake_root: str, created_at: datetime) -> None:
        self._view = view
        self._offline = OfflineStore(Lake(lake_root))
        self._created_at = created_at

    def __call__(self, raw: pd.DataFrame) -> pd.DataFrame:
        if raw.empty:
            return pd.DataFrame()
        features = self._view.compute(raw.drop(columns=["date"], errors="ignore"))
        if _CREATED not in features.columns:
            features[_CREATED] = pd.Timestamp(self._created_at)
        written = self._offline.write(self._view, features)
        latest = latest_per_key(features, self._view.join_keys).reset_index(drop=True)
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
    on_view_done: Callable[[MaterializeReport], None] | None = None,
) -> list[MaterializeReport]:
    """Materialize each view from its raw source into the offline and online stores.

    Args:
        views: The views to compute.
        lake: Where the raw zone and offline tables live.
        online: Where the latest value per key goes (None: offline only).
        num_blocks: Most hash partitions of the raw data.
        rows_per_block: Raw rows per partition; bounds each task's memory.
        on_view_done: Called with each view's report (progress).
    """
    import ray.data

    reports = []
    created_at = datetime.now(UTC)
    for view in views:
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
            raw.repartition(1)
            if blocks == 1
            else raw.repartition(blocks, keys=list(view.join_keys))
        )
        latest: pd.DataFrame = partitioned.map_batches(
            _ComputeAndStore,
            fn_constructor_args=(view, lake.root, created_at),
            batch_size=None,
            batch_format="pandas",
            concurrency=1,
        ).to_pandas()
        offline_rows = int(latest.pop(_WRITTEN).sum()) if not latest.empty else 0
        rows = online_rows(view, latest) if not latest.empty else []
        if online is not None:
            for start in range(0, len(rows), _ONLINE_CHUNK):
                online.write(rows[start : start + _ONLINE_CHUNK])
        watermark = latest[_EVENT].max().to_pydatetime() if not latest.empty else None
        report = MaterializeReport(view.name, offline_rows, len(rows), watermark)
        lake.write_json(
            lake.path("manifests", "materialize", f"{view.name}.json"),
            {"view": view.name, "watermark": watermark.isoformat() if watermark else None},
        )
        log.info("materialized view", extra={"view": view.name, "online_keys": len(rows)})
        reports.append(report)
        if on_view_done is not None:
            on_view_done(report)
    return reports
