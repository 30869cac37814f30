"""A stream consumer's in-memory copy of the recent part of a source's raw zone.

A view with history recomputes the keys a micro-batch touches from the source's raw
events of its lookback. Reading those back from the lake for every micro-batch (a
Parquet scan over every file of the lookback, growing with each batch) made a batch's
cost grow with history; :class:`RawMirror` keeps them in memory instead.

It mirrors the lake, never the bus: every :meth:`~RawMirror.sync` lists the raw zone's
date partitions at or after its :attr:`~RawMirror.floor` and reads the files it has
not seen or that changed since (size or modification time: the consumer's own landing,
another consumer's, a file ingest, an erasure's rewrite) and forgets the files that
are gone. So after a sync it holds exactly the rows the lake holds from ``floor`` on,
whoever wrote them, each once (a file rewritten under its name replaces its rows),
and a recompute from it equals one from the lake.

Listing: a full sync lists every date partition from the floor on (one listing per
day: cheap on a local disk, a request per day on an object store). With
``full_listing_s``, a full sync runs at most that often; the syncs in between list
only the days the caller names (a micro-batch's own event days: the files it just
landed) and the newest days (the newest day the last listing saw, and any newer). A
file another writer puts in, rewrites in or removes from an older day (a file
ingest, another consumer's late event, an erasure's rewrite) is then seen by the next
full sync, at most ``full_listing_s`` later, instead of by the next sync.

The first sync fills it from the lake, newest day first, back to the day a caller
asks for (or until ``max_rows``). It is bounded by event time and by rows: the floor
moves to ``retention`` before the newest event held, and further (to the event time
that leaves 90 % of ``max_rows``) when it holds more than ``max_rows``; rows before
the floor are dropped. A caller needing rows from before the floor (a late event
older than the mirror) reads the lake.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from entai.shared.core import InvalidInputError
from entai.shared.data import DataContract, Lake, accepted_schema

__all__ = ["RawMirror"]

logger = logging.getLogger(__name__)

_FILE = "__mirror_file"
_DATE_DIR = "date="
_EVICT_TO = 0.9  # of max_rows, so eviction is not repeated every batch


class RawMirror:
    """The raw events of one source from :attr:`floor` on, as the lake holds them.

    Args:
        lake: The lake.
        contract: The source's contract (its raw schema and event-time column).
        max_rows: Most rows held.
        retention: How far before the newest event time held the floor may stay.
        full_listing_s: Most seconds between two full listings (0: every sync lists
            every day from the floor on).
    """

    def __init__(
        self,
        lake: Lake,
        contract: DataContract,
        *,
        max_rows: int,
        retention: timedelta,
        full_listing_s: float = 0.0,
    ) -> None:
        if max_rows < 1:
            raise InvalidInputError("max_rows must be >= 1", details={"field": "max_rows"})
        if full_listing_s < 0:
            raise InvalidInputError(
                "full_listing_s must be >= 0", details={"field": "full_listing_s"}
            )
        self.full_listing_s = full_listing_s
        self._listed_at = -float("inf")  # monotonic time of the last full listing
        self._newest_day = ""  # the newest date partition the last listing saw
        self.listings = 0  # date partitions listed, for the curious (and the tests)
        self.lake = lake
        self.source = contract.source
        self.max_rows = max_rows
        self.retention = pd.Timedelta(retention)
        self._time = contract.event_time
        self._schema = accepted_schema(contract)
        self._floor: pd.Timestamp | None = None
        self._files: dict[str, tuple[int, int | None, int | None]] = {}  # number, mtime, size
        self._chunks: list[pd.DataFrame] = []
        self._numbers = 0

    def __repr__(self) -> str:
        return (
            f"RawMirror(source={self.source!r}, rows={self.rows}, floor={self._floor}, "
            f"max_rows={self.max_rows})"
        )

    @property
    def floor(self) -> pd.Timestamp | None:
        """Every raw event dated at or after it is held (None: not filled yet)."""
        return self._floor

    @property
    def rows(self) -> int:
        """Rows held."""
        return sum(len(chunk) for chunk in self._chunks)

    def sync(self, start: pd.Timestamp, *, days: Iterable[str] = ()) -> bool:
        """Catch up with the lake; True when every raw event from ``start`` on is held.

        The first call fills the mirror from ``start``'s day on. Between full listings
        (``full_listing_s``) only ``days`` (``YYYY-MM-DD``: the caller's own writes) and
        the newest days are listed.
        """
        if self._floor is None:
            self._fill(start)
            self._listed_at = time.monotonic()
        elif time.monotonic() - self._listed_at >= self.full_listing_s:
            self._refresh(None)
            self._listed_at = time.monotonic()
        else:
            self._refresh(set(days))
        self._evict()
        return self._floor is not None and start >= self._floor

    def frame(
        self, start: pd.Timestamp, key: str | None = None, values: Sequence[Any] | None = None
    ) -> pd.DataFrame:
        """The rows dated at or after ``start`` (and with ``key`` in ``values``), in the
        raw zone's columns and types; call :meth:`sync` first."""
        parts = []
        for chunk in self._chunks:
            mask = chunk[self._time] >= start
            if key is not None:
                mask &= chunk[key].isin(values if values is not None else [])
            if mask.any():
                parts.append(chunk.loc[mask])
        if not parts:
            return self._schema.empty_table().to_pandas()
        return pd.concat(parts, ignore_index=True).drop(columns=_FILE)

    def _dates(self) -> list[str]:
        """The raw zone's date partitions, newest first."""
        infos = self.lake.fs.get_file_info(
            pafs.FileSelector(self.lake.raw(self.source), allow_not_found=True)
        )
        names = (i.base_name for i in infos if i.type == pafs.FileType.Directory)
        return sorted((n[len(_DATE_DIR) :] for n in names if n.startswith(_DATE_DIR)), reverse=True)

    def _listing(self, day: str) -> list[pafs.FileInfo]:
        self.listings += 1
        directory = f"{self.lake.raw(self.source)}/{_DATE_DIR}{day}"
        infos = self.lake.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return [i for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")]

    def _fill(self, start: pd.Timestamp) -> None:
        floor = start.tz_convert(UTC).floor("D")
        low = floor.strftime("%Y-%m-%d")
        oldest: str | None = None  # the oldest day read, every one after it read too
        dates = self._dates()
        self._newest_day = dates[0] if dates else ""
        for day in dates:
            if day < low:
                break
            if oldest is not None and self.rows >= self.max_rows:
                floor = pd.Timestamp(oldest, tz=UTC)
                break
            self._add([self._read(info) for info in self._listing(day)])
            oldest = day
        self._floor = floor
        logger.info(
            "raw mirror filled",
            extra={"source": self.source, "rows": self.rows, "floor": str(self._floor)},
        )

    def _refresh(self, days: set[str] | None) -> None:
        """Read the new and changed files of the days listed (None: every day from the
        floor on; else ``days`` and the newest ones) and forget their removed files."""
        assert self._floor is not None
        low = self._floor.strftime("%Y-%m-%d")
        dates = self._dates()
        newest, self._newest_day = self._newest_day, dates[0] if dates else self._newest_day
        listed: set[str] = set()
        seen: set[str] = set()
        stale: set[int] = set()
        fresh: list[pd.DataFrame] = []
        for day in dates:
            if day < low:
                break
            if days is not None and day < newest and day not in days:
                continue
            listed.add(day)
            for info in self._listing(day):
                seen.add(info.path)
                known = self._files.get(info.path)
                if known is not None and known[1:] == (info.mtime_ns, info.size):
                    continue
                if known is not None:
                    stale.add(known[0])
                fresh.append(self._read(info))
        gone = [p for p in self._files if p not in seen and (days is None or _day(p) in listed)]
        stale |= {self._files.pop(p)[0] for p in gone}
        if stale:
            self._drop(stale)
        self._add(fresh)

    def _read(self, info: pafs.FileInfo) -> pd.DataFrame:
        """One raw file's rows from the floor on, tagged with the file's number."""
        table = pads.dataset(
            info.path, schema=self._schema, format="parquet", filesystem=self.lake.fs
        ).to_table(columns=self._schema.names)
        number = self._numbers
        self._numbers += 1
        self._files[info.path] = (number, info.mtime_ns, info.size)
        frame = table.append_column(_FILE, pa.repeat(pa.scalar(number, pa.int64()), len(table)))
        rows = frame.to_pandas()
        if self._floor is not None:
            rows = rows.loc[rows[self._time] >= self._floor]
        return rows

    def _add(self, frames: list[pd.DataFrame]) -> None:
        frames = [f for f in frames if len(f)]
        if not frames:
            return
        self._chunks.append(pd.concat(frames, ignore_index=True))
        # Merge a chunk into the one before while it is at least half its size: a few
        # chunks of decreasing size, each row copied O(log rows) times.
        while len(self._chunks) > 1 and 2 * len(self._chunks[-1]) >= len(self._chunks[-2]):
            last = self._chunks.pop()
            self._chunks[-1] = pd.concat([self._chunks[-1], last], ignore_index=True)

    def _drop(self, numbers: set[int]) -> None:
        wanted = list(numbers)
        self._chunks = [c.loc[~c[_FILE].isin(wanted)] for c in self._chunks]
        self._chunks = [c for c in self._chunks if len(c)]

    def _evict(self) -> None:
        if not self._chunks or self._floor is None:
            return
        times = [c[self._time].to_numpy(dtype="datetime64[ns]") for c in self._chunks]
        floor = max(self._floor, pd.Timestamp(max(t.max() for t in times), tz=UTC) - self.retention)
        total = sum(len(t) for t in times)
        if total > self.max_rows:
            drop = total - int(self.max_rows * _EVICT_TO)
            cut = np.partition(np.concatenate(times), drop - 1)[drop - 1]
            floor = max(floor, pd.Timestamp(cut, tz=UTC) + pd.Timedelta(1, "ns"))
        if floor == self._floor:
            return
        self._floor = floor
        self._chunks = [c.loc[c[self._time] >= floor] for c in self._chunks]
        self._chunks = [c for c in self._chunks if len(c)]
        low = floor.strftime("%Y-%m-%d")
        for path in [p for p in self._files if _day(p) < low]:
            del self._files[path]
        logger.info(
            "raw mirror evicted",
            extra={"source": self.source, "rows": self.rows, "floor": str(floor)},
        )


def _day(path: str) -> str:
    """The date partition of a raw file's path."""
    part = next((p for p in path.split("/") if p.startswith(_DATE_DIR)), _DATE_DIR)
    return part[len(_DATE_DIR) :]
