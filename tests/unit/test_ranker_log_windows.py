"""A ranker's fairness windows folded in file by file (``RankerLogWindows``): each
refresh reads only the log files that are new or changed, and its windows equal, to the
last bit, those recomputed from a full read of the same files: with impressions and
feedback appended between refreshes, a late file for an old window, a request whose
rows span two files, a file rewritten in place, and a date partition ageing out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ranker_logs import GROUPS

from entai.shared.data import Lake
from entai.shared.monitoring import (
    RANKER_LOG_COLUMNS,
    RankerLogWindows,
    RankingWindowFairness,
    ranking_fairness_windows,
)

W = 100.0
DAYS = 7
BASE = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
T = BASE.timestamp() - 50 * W  # windows start at multiples of W
FAIRNESS = RankingWindowFairness.from_dict(
    {
        "columns": {"category": {"k": 3, "min_group_size": 5, "groups": ["A", "B", "C"]}},
        "bounds": [["exposure_ratio", 0.8, False], ["ndcg_difference", 0.3, True]],
    }
)


class LakeLogs:
    """The lake's log files of the last DAYS days at ``now``, counting the files read."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.now = BASE
        self.read_paths: list[str] = []

    def files(self, log: str) -> Mapping[str, str]:
        return self.lake.model_log_files(log, "ranker", DAYS, now=self.now)

    def read(self, log: str, path: str, columns: list[str]) -> pd.DataFrame:
        self.read_paths.append(path)
        return self.lake.read_parquet(path, columns)


def write(lake: Lake, log: str, day: str, table: pa.Table, name: str | None = None) -> str:
    name = name or f"part-{uuid.uuid4().hex}.parquet"
    path = lake.path(log, "model=ranker", f"date={day}", name)
    lake.makedirs(path.rsplit("/", 1)[0])
    pq.write_table(table, path)
    return path


def served(
    rng: np.random.Generator,
    prefix: str,
    requests: int,
    window: int,
    *,
    first: int = 0,
    version: int = 1,
) -> pa.Table:
    """Lists ``<prefix>-<first>`` ... of 2-4 of the items 1-4 (and sometimes an unknown
    9), shown during ``window``, ranks in served order with an occasional tie."""
    rows: dict[str, list[Any]] = {c: [] for c in RANKER_LOG_COLUMNS["predictions"]}
    for r in range(first, first + requests):
        items = rng.permutation([1, 2, 3, 4, 9])[: rng.integers(2, 5)]
        ts = T + window * W + float(rng.uniform(0, W - 1))
        for rank, item in enumerate(items, 1):
            rows["request_id"].append(f"{prefix}-{r}")
            rows["item_id"].append(int(item))
            rows["rank"].append(rank if rng.random() > 0.1 else max(1, rank - 1))
            rows["ts"].append(ts)
            rows["version"].append(version)
    return pa.table(rows)


def tied(item: int, rank: int, window: int) -> pa.Table:
    """Request t-0 showing ``item`` at ``rank`` during ``window``."""
    rows = {"request_id": ["t-0"], "item_id": [item], "rank": [rank], "ts": [T + window * W]}
    return pa.table({**rows, "version": [1]})


def clicks(rng: np.random.Generator, requests: list[str]) -> pa.Table:
    rows: dict[str, list[Any]] = {"request_id": [], "item_id": [], "kind": [], "ts": []}
    for rid in requests:
        for item in rng.choice([1, 2, 3, 4], size=rng.integers(1, 3), replace=False):
            rows["request_id"].append(rid)
            rows["item_id"].append(int(item))
            rows["kind"].append(str(rng.choice(["click", "purchase", "view"])))
            rows["ts"].append(T)
    return pa.table(rows)


def from_scratch(lake: Lake, now: datetime) -> list[dict[str, Any]]:
    """Every window recomputed from a full read of the logs, as the monitor did."""
    shown, feedback = (
        lake.read_model_log(log, "ranker", RANKER_LOG_COLUMNS[log], DAYS, now=now)
        for log in ("predictions", "feedback")
    )
    shown = shown[shown["version"] == 1]
    if shown.empty:
        return []
    return ranking_fairness_windows(FAIRNESS, shown, feedback, GROUPS, window_s=W)


def starts(windows: list[dict[str, Any]]) -> list[int]:
    return [round((w["start_s"] - T) / W) for w in windows]


def test_incremental_refreshes_equal_a_full_recompute_and_read_only_new_files(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    lake = Lake(str(tmp_path / "lake"))
    logs = LakeLogs(lake)
    windows = RankerLogWindows(FAIRNESS, GROUPS, window_s=W, version=1)

    def refresh() -> list[dict[str, Any]]:
        logs.read_paths.clear()
        out = windows.refresh(logs)
        assert out == from_scratch(lake, logs.now)
        return out

    # day 1 (ages out later): window 0; day 7: windows 1 and 2, another version, clicks,
    # and requests c-0 and c-1 shown in windows 1 and 2 (they belong to window 1)
    write(lake, "predictions", "2026-06-03", served(rng, "a", 40, 0))
    write(lake, "predictions", "2026-06-09", served(rng, "b", 40, 1))
    write(lake, "predictions", "2026-06-09", served(rng, "c", 40, 2))
    write(lake, "predictions", "2026-06-09", served(rng, "c", 2, 1))
    write(lake, "predictions", "2026-06-09", tied(1, 1, 1))  # category A
    write(lake, "predictions", "2026-06-09", served(rng, "v2", 40, 2, version=2))
    write(lake, "feedback", "2026-06-09", clicks(rng, [f"b-{i}" for i in range(0, 40, 3)]))
    first = refresh()
    assert starts(first) == [0, 1, 2]
    assert len(logs.read_paths) == 7 and windows.files_read == 7
    assert first[1]["labelled_requests"] > 0 and first[2]["labelled_requests"] == 0

    # nothing new: no file is read, the windows are carried as they are
    assert refresh() == first
    assert logs.read_paths == []

    # more lists for window 2 only: window 1 (with c-0 and c-1) is carried
    write(lake, "predictions", "2026-06-10", served(rng, "c2", 30, 2))
    second = refresh()
    assert len(logs.read_paths) == 1
    assert second[:2] == first[:2] and second[2] != first[2]

    # appended between refreshes: a new window 3, late clicks for requests of windows
    # 0-2, a late file for the old window 0 in an earlier partition (its path sorts
    # before the others), more rows of request c-3 (moving it from window 2 to 1), and
    # of t-0: its new item ties at rank 1 and goes first as its file's path sorts first
    write(lake, "predictions", "2026-06-10", served(rng, "d", 30, 3))
    write(lake, "feedback", "2026-06-10", clicks(rng, ["b-1", "b-2", "c-5", "a-3"]))
    late = write(lake, "predictions", "2026-06-05", served(rng, "late", 45, 0))
    write(lake, "predictions", "2026-06-05", served(rng, "c", 1, 1, first=3))
    write(lake, "predictions", "2026-06-05", tied(2, 1, 1))  # category B
    third = refresh()
    assert starts(third) == [0, 1, 2, 3]
    assert len(logs.read_paths) == 5  # the five new files only
    assert all(third[w] != second[w] for w in range(3))

    # a file rewritten in place (as erasure does): read again, its old rows forgotten
    rewritten = served(rng, "late", 20, 0)
    write(lake, "predictions", "2026-06-05", rewritten, name=late.rsplit("/", 1)[1])
    fourth = refresh()
    assert logs.read_paths == [late]
    assert fourth[0] != third[0] and fourth[1:] == third[1:]

    # a day on, the 2026-06-03 partition ages out: window 0 keeps only the late file's
    # lists; two more days and the 2026-06-05 files age out too: window 0 is dropped,
    # t-0 and c-3 lose their rows there (c-3 goes back to window 2), window 3 is kept
    logs.now = BASE + timedelta(days=1)
    fifth = refresh()
    assert logs.read_paths == []
    assert starts(fifth) == [0, 1, 2, 3] and fifth[0]["requests"] == 20
    logs.now = BASE + timedelta(days=3)
    sixth = refresh()
    assert starts(sixth) == [1, 2, 3]
    assert sixth[0] != fifth[1] and sixth[1] != fifth[2] and sixth[2] == fifth[3]


def test_an_unreadable_file_changes_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lake = Lake(str(tmp_path / "lake"))
    logs = LakeLogs(lake)
    windows = RankerLogWindows(FAIRNESS, GROUPS, window_s=W, version=1)
    write(lake, "predictions", "2026-06-09", served(rng, "b", 10, 1))
    before = windows.refresh(logs)
    write(lake, "predictions", "2026-06-10", served(rng, "c", 10, 2))
    bad = lake.path("feedback", "model=ranker", "date=2026-06-10", "part-bad.parquet")
    lake.write_bytes(bad, b"not parquet")
    with pytest.raises(pa.ArrowInvalid):
        windows.refresh(logs)
    Path(bad).unlink()
    after = windows.refresh(logs)  # the impressions file is still new to it
    assert starts(before) == [1] and starts(after) == [1, 2]
    assert after == from_scratch(lake, logs.now)
