"""A ranker's logs as serving writes them, for fairness-per-window tests: impression
frames (one row per item shown), a biased or an even stream of lists, and the tap that
writes them to a lake's prediction log."""

from __future__ import annotations

import numpy as np
import pandas as pd

from entai.deployments.tap import PredictionTap, ServedBatch
from entai.shared.data import Lake
from entai.shared.recommend import RANKING_FEATURES

GROUPS = {"category": {1: "A", 2: "B", 3: "A", 4: "B"}}
"""Items 1 and 3 are in category A, 2 and 4 in B."""


def impressions(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """Impression rows ``(request_id, item_id, rank, ts)``."""
    return pd.DataFrame(rows, columns=["request_id", "item_id", "rank", "ts"])


def stream(biased: bool, requests: int = 100, start: float = 0.0) -> pd.DataFrame:
    """``requests`` lists of 4 items, 2 per group of :data:`GROUPS`, served at
    ``start + 1``; biased: group B always at ranks 3-4; else the groups take turns at
    the top. Request ids are ``s<int(start)>-<i>``."""
    rows = []
    for r in range(requests):
        a_first = biased or r % 2 == 0
        order = [1, 3, 2, 4] if a_first else [2, 4, 1, 3]
        rid = f"s{int(start)}-{r}"
        rows += [(rid, item, rank, start + 1.0) for rank, item in enumerate(order, 1)]
    return impressions(rows)


def log_served(lake: Lake, frame: pd.DataFrame, *, model: str = "ranker", version: int = 1) -> None:
    """Write ``frame``'s lists to the prediction log as the ingress does (one served
    batch per request, with the rank and item id columns)."""
    tap = PredictionTap(lake, None, prediction_column="score")
    for rid, rows in frame.groupby("request_id", sort=False):
        n = len(rows)
        features = np.column_stack(
            [np.zeros((n, len(RANKING_FEATURES))), rows["rank"], rows["item_id"]]
        ).astype(np.float64)
        tap.submit(
            ServedBatch(
                request_id=str(rid),
                model=model,
                aliases=["champion"] * n,
                versions=[version] * n,
                entity_keys=[f"k{i}" for i in rows["item_id"]],
                feature_names=(*RANKING_FEATURES, "rank", "item_id"),
                features=features,
                predictions=[1.0 / r for r in rows["rank"]],
                ts=float(rows["ts"].iloc[0]),
            )
        )
    tap.flush()
