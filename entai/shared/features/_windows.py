"""Trailing-window sums per key over time-ordered rows, as feature transforms need them.

A per-event window (the sums of a key's rows dated in ``(t - window, t]`` at each of
its rows) is what stream feature views compute; these give it for every row at once,
vectorized, so a batch computation and a stream worker's recomputation of one key
agree exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["trailing_window_sums", "window_groups"]


def window_groups(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Group numbers (0, 1, ...) of rows sorted by ``keys``: a new one where a key changes."""
    n = len(frame)
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for key in keys:
        values = frame[key].to_numpy()
        change[1:] |= values[1:] != values[:-1]
    return np.cumsum(change) - 1


def trailing_window_sums(
    groups: np.ndarray, times: pd.Series, values: np.ndarray, window: pd.Timedelta
) -> np.ndarray:
    """Per row, the column sums of ``values`` over the rows of its group up to it (in row
    order) dated in ``(t - window, t]``: pandas' ``groupby(...).rolling(window).sum()``
    on a time index, by prefix sums and one sort instead of a window per group.

    Rows must be sorted by group, then time. ``values`` is 2-D (rows, columns).
    """
    n = len(groups)
    stamps = pd.DatetimeIndex(times).as_unit("ns").asi8
    # Each row's window starts after the rows of its group dated at or before
    # t - window: sort the rows together with those bounds, a bound after equal times.
    order = np.lexsort(
        (
            np.r_[np.zeros(n, dtype=np.int8), np.ones(n, dtype=np.int8)],
            np.r_[stamps, stamps - window.value],
            np.r_[groups, groups],
        )
    )
    bound = order >= n
    rows_before = np.cumsum(~bound)
    first = np.empty(n, dtype=np.int64)
    first[order[bound] - n] = rows_before[bound]
    sums = np.zeros((n + 1, values.shape[1]), dtype=np.float64)
    np.cumsum(values, axis=0, out=sums[1:])
    return sums[1:] - sums[first]
