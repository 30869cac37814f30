"""The feedback log: clicks and purchases of recommended items, by request id, in the lake.

``POST /v1/feedback`` hands its ``interactions`` here; each call appends one Parquet
file under ``<lake>/feedback/model=<name>/date=<YYYY-MM-DD>/`` with request_id,
item_id, kind (``click`` | ``purchase``) and ts (epoch seconds when received). The
ranking monitor joins them to the impressions of the prediction log by request id
and item (:func:`entai.shared.recommend.ranking_windows`).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from entai.deployments.schemas import Interaction
from entai.shared.data import Lake

__all__ = ["FeedbackLog"]


class FeedbackLog:
    """Appends interactions to the lake, one immutable file per call."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake

    def append(self, model: str, interactions: Sequence[Interaction]) -> int:
        """Write ``interactions`` of ``model``; returns how many were written."""
        if not interactions:
            return 0
        now = time.time()
        table = pa.table(
            {
                "request_id": [i.request_id for i in interactions],
                "item_id": pa.array([i.item_id for i in interactions], pa.int64()),
                "kind": [i.kind for i in interactions],
                "ts": pa.array([now] * len(interactions), pa.float64()),
            }
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        name = f"part-{int(now * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        path = self._lake.path("feedback", f"model={model}", f"date={day}", name)
        self._lake.write_bytes(path, sink.getvalue(), overwrite=False)
        return len(interactions)
