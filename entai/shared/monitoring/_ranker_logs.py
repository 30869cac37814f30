"""A ranker's fairness windows kept up to date from the log files that changed.

:class:`RankerLogWindows` keeps the rows of every impression file (the watched
version's) and feedback file it has read, with the stamp each file had, and the result
of every window. A refresh lists the files in range (:class:`RankerLogSource`), reads
only those that are new or changed, forgets those that are gone (aged out of the
range, or changed: erasure rewrites a file) and recomputes only the windows of the
requests with a row in one of those files, in either log: a late file for an old
window recomputes that window, a click recomputes the window of its request, a window
whose files all aged out is dropped. Every other window's result is carried forward.

A window is recomputed by
:func:`~entai.shared.monitoring._fairness_windows.ranking_fairness_windows` over the
rows a full read gives it, in the same order (files in path order, rows in file
order), so the result is the one recomputing every window from a full read of the
same files would give, to the last bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pandas as pd

from entai.shared.monitoring._fairness_windows import (
    RankingWindowFairness,
    ranking_fairness_windows,
)

__all__ = [
    "FEEDBACK_LOG",
    "IMPRESSION_LOG",
    "RANKER_LOG_COLUMNS",
    "RankerLogSource",
    "RankerLogWindows",
]

IMPRESSION_LOG = "predictions"
"""The lake log of a ranker's impressions (one row per item shown)."""
FEEDBACK_LOG = "feedback"
"""The lake log of a ranker's clicks and purchases."""
RANKER_LOG_COLUMNS = {
    IMPRESSION_LOG: ["request_id", "item_id", "rank", "ts", "version"],
    FEEDBACK_LOG: ["request_id", "item_id", "kind"],
}
"""The columns read from each log."""

_FILE = "_file"  # the path a row was read from
_WINDOW = "_w"  # the window of the row's own time (its request's is the least of them)


class RankerLogSource(Protocol):
    """Where a ranker's log files are listed and read (the lake, for the monitor)."""

    def files(self, log: str) -> Mapping[str, str]:
        """The log's files in range, path -> a stamp that changes when the file does."""
        ...

    def read(self, log: str, path: str, columns: list[str]) -> pd.DataFrame:
        """The ``columns`` of one file of the log."""
        ...


class RankerLogWindows:
    """The fairness of one ranker version's windows, folded in file by file.

    Args:
        fairness: The columns, their settings and the thresholds.
        item_groups: Per column, each item's group.
        window_s: Window length in seconds.
        version: The version whose impressions count (rows of others are left out).
    """

    def __init__(
        self,
        fairness: RankingWindowFairness,
        item_groups: Mapping[str, Mapping[int, str]],
        *,
        window_s: float,
        version: int,
    ) -> None:
        self._fairness = fairness
        self._item_groups = item_groups
        self._window_s = window_s
        self._version = version
        self._stamps: dict[str, dict[str, str]] = {log: {} for log in RANKER_LOG_COLUMNS}
        self._rows: dict[str, pd.DataFrame] = {
            IMPRESSION_LOG: _empty([*RANKER_LOG_COLUMNS[IMPRESSION_LOG][:4], _FILE, _WINDOW]),
            FEEDBACK_LOG: _empty([*RANKER_LOG_COLUMNS[FEEDBACK_LOG], _FILE]),
        }
        self._windows: dict[int, dict[str, Any]] = {}
        self.files_read = 0
        """Files read so far (each new or changed file once)."""

    def refresh(self, source: RankerLogSource) -> list[dict[str, Any]]:
        """Fold in the files that are new, changed or gone; returns every window, oldest
        first (``ranking_fairness_windows``'s dicts).

        Nothing changes when a file cannot be read (the error propagates).
        """
        listings = {log: dict(source.files(log)) for log in RANKER_LOG_COLUMNS}
        gone: dict[str, set[str]] = {}
        fresh: dict[str, list[pd.DataFrame]] = {}
        for log, listing in listings.items():
            stamps = self._stamps[log]
            gone[log] = {p for p, stamp in stamps.items() if listing.get(p) != stamp}
            fresh[log] = [
                self._read(source, log, path)
                for path, stamp in sorted(listing.items())
                if stamps.get(path) != stamp
            ]
            self.files_read += len(fresh[log])
        changed = [
            frame["request_id"]
            for log in RANKER_LOG_COLUMNS
            for frame in (self._rows[log][self._rows[log][_FILE].isin(gone[log])], *fresh[log])
        ]
        requests = set(pd.concat(changed).unique()) if changed else set()
        shown = self._rows[IMPRESSION_LOG]  # the windows the changed requests were in or join
        dirty = set(shown.loc[shown["request_id"].isin(requests), _WINDOW].unique().tolist())
        dirty.update(w for frame in fresh[IMPRESSION_LOG] for w in frame[_WINDOW].unique().tolist())
        for log in RANKER_LOG_COLUMNS:
            self._rows[log] = _merged(self._rows[log], gone[log], fresh[log])
            self._stamps[log] = listings[log]
        if dirty:
            self._recompute({int(w) for w in dirty})
        return [self._windows[w] for w in sorted(self._windows)]

    def _read(self, source: RankerLogSource, log: str, path: str) -> pd.DataFrame:
        frame = source.read(log, path, RANKER_LOG_COLUMNS[log])
        if log == IMPRESSION_LOG:
            frame = frame.loc[frame["version"] == self._version, RANKER_LOG_COLUMNS[log][:4]]
            frame = frame.assign(
                **{_WINDOW: (frame["ts"].astype(float) // self._window_s).astype("int64")}
            )
        return frame.assign(request_id=frame["request_id"].astype(str), **{_FILE: path})

    def _recompute(self, dirty: set[int]) -> None:
        """Recompute the ``dirty`` windows from every row of every request in them."""
        shown = self._rows[IMPRESSION_LOG]
        candidates = shown.loc[shown[_WINDOW].isin(dirty), "request_id"].unique()
        rows = shown[shown["request_id"].isin(candidates)]
        feedback = self._rows[FEEDBACK_LOG]
        feedback = feedback[feedback["request_id"].isin(candidates)]
        for window in dirty:
            self._windows.pop(window, None)
        if rows.empty:
            return
        for result in ranking_fairness_windows(
            self._fairness,
            rows[RANKER_LOG_COLUMNS[IMPRESSION_LOG][:4]],
            feedback[RANKER_LOG_COLUMNS[FEEDBACK_LOG]],
            self._item_groups,
            window_s=self._window_s,
        ):
            window = round(result["start_s"] / self._window_s)
            if window in dirty:  # a candidate's request may belong to an earlier window
                self._windows[window] = result


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


def _merged(rows: pd.DataFrame, gone: set[str], fresh: list[pd.DataFrame]) -> pd.DataFrame:
    """``rows`` without the files gone, with the fresh ones, in path order (stable)."""
    kept = rows[~rows[_FILE].isin(gone)] if gone else rows
    parts = [f for f in ([kept] if len(kept) else []) + fresh if len(f)]
    if not parts:
        return rows.iloc[:0]
    merged = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if len(kept) and any(f[_FILE].iloc[0] < kept[_FILE].iloc[-1] for f in fresh if len(f)):
        merged = merged.sort_values(_FILE, kind="stable", ignore_index=True)
    return merged
