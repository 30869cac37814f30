"""The feedback log (clicks and purchases of recommended items) and the ranker's report.

``POST /v1/feedback`` hands its ``interactions`` here; each call appends one Parquet
file under ``<lake>/feedback/model=<name>/date=<YYYY-MM-DD>/`` with request_id,
item_id, kind (``click`` | ``purchase``) and ts (epoch seconds when received).
:func:`ranking_report` joins them to the ranker's impressions in the prediction log
(written by the tap) by request id and item, and gives CTR, precision, recall and
NDCG at k per window (:func:`entai.shared.recommend.ranking_windows`): the ranker's
answer to ``GET /v1/monitoring/{model}``. It reads the logs of the last ``days``
days on each call, which suits a demo-sized log; a long-lived deployment would fold
them incrementally in the monitor.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from entai.deployments.schemas import Interaction
from entai.shared.data import Lake
from entai.shared.recommend import ranking_windows

__all__ = ["FeedbackLog", "ranking_report"]


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


def ranking_report(
    lake: Lake, model: str, *, window_s: float, k: int = 10, days: int = 7
) -> dict[str, Any]:
    """A ranker's live quality per window over the last ``days`` days of its logs."""
    impressions = lake.read_model_log(
        "predictions", model, ["request_id", "item_id", "rank", "ts"], days
    )
    interactions = lake.read_model_log("feedback", model, ["request_id", "item_id", "kind"], days)
    windows = ranking_windows(impressions, interactions, window_s=window_s, k=k)
    return {
        "model": model,
        "kind": "ranker",
        "k": k,
        "window_s": window_s,
        "windows": [w.as_dict() for w in windows],
    }
