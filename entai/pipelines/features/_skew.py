"""Training/serving skew check: recompute online values from the offline path.

For a sample of keys, the view's shared transform is re-run over the raw history of
those keys, the newest row per key is taken (what materialization would have written
online), and it is compared with what the online store serves now. Each key ends up
``matching``, ``stale`` (the online row is older than the recomputed one),
``mismatched`` (same event time, different values) or ``missing_online``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pads

from entai.actors.features import OnlineFeatureClient
from entai.shared.core import NotFoundError
from entai.shared.data import Lake
from entai.shared.features import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureView,
    OfflineStore,
    compute_view,
    latest_per_key,
)

__all__ = ["SkewReport", "check_skew"]

_EXAMPLES = 10


@dataclass(frozen=True)
class SkewReport:
    """Outcome of one skew check; ``examples`` holds a few offending keys."""

    view: str
    sampled: int
    matching: int
    stale: int
    mismatched: int
    missing_online: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every sampled key serves exactly the recomputed value."""
        return self.matching == self.sampled


def _sample_keys(view: FeatureView, offline: OfflineStore, n: int, seed: int) -> pd.DataFrame:
    keys = offline.read(view, columns=[])[list(view.join_keys)].drop_duplicates()
    if keys.empty:
        raise NotFoundError(
            f"feature view {view.name!r} has no offline rows to check", details={"view": view.name}
        )
    return keys.sample(min(n, len(keys)), random_state=seed).reset_index(drop=True)


def _raw_history(view: FeatureView, lake: Lake, keys: pd.DataFrame) -> pd.DataFrame:
    first = view.join_keys[0]
    dataset = pads.dataset(lake.raw(view.source), filesystem=lake.fs, partitioning="hive")
    table = dataset.to_table(filter=pc.field(first).isin(keys[first].unique().tolist()))
    raw = table.to_pandas().drop(columns=["date"], errors="ignore")
    return raw.merge(keys, on=list(view.join_keys), how="inner") if len(view.join_keys) > 1 else raw


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and (
            b is None or (isinstance(b, float) and math.isnan(b))
        )
    if isinstance(a, float | np.floating) or isinstance(b, float | np.floating):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def check_skew(
    view: FeatureView,
    *,
    lake: Lake,
    online: OnlineFeatureClient,
    sample: int = 100,
    seed: int = 0,
    features: Sequence[str] | None = None,
) -> SkewReport:
    """Compare a sample of online values with a recompute from raw data."""
    names = list(features or view.feature_names)
    keys = _sample_keys(view, OfflineStore(lake), sample, seed)
    recomputed = compute_view(view, _raw_history(view, lake, keys))
    if CREATED_TIMESTAMP not in recomputed.columns:
        recomputed[CREATED_TIMESTAMP] = recomputed[EVENT_TIMESTAMP]
    expected = keys.merge(latest_per_key(recomputed, view.join_keys), on=list(view.join_keys))
    served = online.get_online_features(
        {view.name: names},
        expected[list(view.join_keys)].to_dict("records"),
        {view.name: None},
        join_keys={view.name: list(view.join_keys)},
    )
    counts = {"matching": 0, "stale": 0, "mismatched": 0, "missing_online": 0}
    examples: list[dict[str, Any]] = []
    results = served["results"]
    for i, row in enumerate(expected.to_dict("records")):
        statuses = {str(r["statuses"][i]) for r in results}
        stamp = results[0]["event_timestamps"][i] if results else None
        if "NOT_FOUND" in statuses:
            verdict = "missing_online"
        elif stamp is not None and pd.Timestamp(stamp) < pd.Timestamp(row[EVENT_TIMESTAMP]):
            verdict = "stale"
        elif all(_same(r["values"][i], row[n]) for r, n in zip(results, names, strict=True)):
            verdict = "matching"
        else:
            verdict = "mismatched"
        counts[verdict] += 1
        if verdict != "matching" and len(examples) < _EXAMPLES:
            examples.append(
                {
                    "key": {k: row[k] for k in view.join_keys},
                    "verdict": verdict,
                    "online": {n: r["values"][i] for r, n in zip(results, names, strict=True)},
                    "recomputed": {n: row[n] for n in names},
                }
            )
    return SkewReport(view=view.name, sampled=len(expected), examples=examples, **counts)
