"""The stream consumer's raw mirror (no Ray): it holds what the lake's raw zone holds
from its floor on, bounded by rows and event time, and a consumer computing its views
from it writes the same feature values as one reading the lake for every batch."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from in_process_bus import InProcessBus

from entai.actors.features import OnlineFeatureClient
from entai.demo.contracts import EVENTS_CONTRACT
from entai.demo.features import (
    product_category_affinity,
    product_popularity,
    user_category_stats,
    user_recent_views,
    user_stats,
)
from entai.pipelines.features import StreamConsumer
from entai.pipelines.features._raw_mirror import RawMirror
from entai.shared.core import InvalidInputError
from entai.shared.data import Event, Lake, event_table
from entai.shared.features import (
    MemoryOnlineStore,
    compute_view,
    latest_per_key,
    online_rows,
    stamp_created,
)

DAY = pd.Timestamp("2026-11-20", tz=UTC)
VIEWS = [user_category_stats, user_stats, user_recent_views, product_category_affinity,
         product_popularity]  # fmt: skip


def _event(i: int, user: int, product: int, at: datetime, kind: str = "view") -> Event:
    return Event(
        event_id=f"ev-1-{i}",
        source="events",
        payload={
            "event_id": f"ev-1-{i}",
            "user_id": user,
            "product_id": product,
            "category": ("books", "toys", "garden")[product % 3],
            "price": 1.0,
            "event_type": kind,
            "event_timestamp": at.isoformat(),
        },
    )


def _land(lake: Lake, name: str, events: list[Event]) -> list[str]:
    """Write events to the raw zone as the stream does: one file per event date."""
    table = event_table(events, EVENTS_CONTRACT, batch_id=name)
    days = table.column("event_timestamp").to_pandas().dt.strftime("%Y-%m-%d")
    paths = []
    for day in sorted(set(days)):
        rel = f"raw/events/date={day}/part-{name}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table.filter(pa.array((days == day).to_numpy())), sink)
        lake.write_bytes(lake.path(rel), sink.getvalue().to_pybytes())
        paths.append(lake.path(rel))
    return paths


def _ids(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["event_id"])


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_fills_from_the_day_asked_and_filters_by_time_and_key(lake: Lake) -> None:
    _land(lake, "a", [_event(i, i % 2, 1, DAY - timedelta(days=i, hours=-1)) for i in range(5)])
    mirror = RawMirror(lake, EVENTS_CONTRACT, max_rows=100, retention=timedelta(days=30))
    assert mirror.floor is None
    assert mirror.sync(DAY - timedelta(days=2))
    assert mirror.floor == DAY - timedelta(days=2) and mirror.rows == 3
    assert not mirror.sync(DAY - timedelta(days=3))  # before the floor: read the lake
    assert _ids(mirror.frame(DAY - timedelta(days=1))) == ["ev-1-0", "ev-1-1"]
    assert _ids(mirror.frame(DAY - timedelta(days=2), "user_id", [0])) == ["ev-1-0", "ev-1-2"]
    assert mirror.frame(DAY, "user_id", [7]).empty
    # Same columns and types as the lake's raw zone.
    assert list(mirror.frame(DAY).dtypes) == list(
        event_table([_event(9, 1, 1, DAY)], EVENTS_CONTRACT).to_pandas().dtypes
    )
    with pytest.raises(InvalidInputError):
        RawMirror(lake, EVENTS_CONTRACT, max_rows=0, retention=timedelta(days=1))


def test_follows_the_lake_new_rewritten_and_removed_files(lake: Lake) -> None:
    mirror = RawMirror(lake, EVENTS_CONTRACT, max_rows=100, retention=timedelta(days=30))
    assert mirror.sync(DAY) and mirror.rows == 0  # an empty lake: nothing to hold, all held
    first = _land(lake, "a", [_event(1, 1, 1, DAY), _event(2, 2, 1, DAY)])
    _land(lake, "b", [_event(3, 3, 1, DAY + timedelta(hours=1))])  # e.g. another consumer
    assert mirror.sync(DAY)
    assert _ids(mirror.frame(DAY)) == ["ev-1-1", "ev-1-2", "ev-1-3"]
    # A file rewritten under its name (an erasure, a redelivered batch) replaces its rows.
    _land(lake, "a", [_event(2, 2, 1, DAY)])
    assert mirror.sync(DAY) and _ids(mirror.frame(DAY)) == ["ev-1-2", "ev-1-3"]
    lake.fs.delete_file(first[0])
    assert mirror.sync(DAY) and _ids(mirror.frame(DAY)) == ["ev-1-3"]
    mirror.sync(DAY)
    assert mirror.rows == 1  # nothing read twice


def test_between_full_listings_a_sync_lists_its_own_days_and_the_newest(lake: Lake) -> None:
    for d in range(6):
        _land(lake, f"d{d}", [_event(d, d, 1, DAY + timedelta(days=d))])
    mirror = RawMirror(
        lake, EVENTS_CONTRACT, max_rows=100, retention=timedelta(days=30), full_listing_s=3600
    )
    assert mirror.sync(DAY) and mirror.rows == 6
    listed = mirror.listings
    newest = (DAY + timedelta(days=5)).strftime("%Y-%m-%d")
    old = (DAY + timedelta(days=1)).strftime("%Y-%m-%d")
    # The batch's own file in an old day, another writer's in the newest day and in a
    # new day: each seen at the next sync, listing those three days only.
    _land(lake, "own", [_event(10, 1, 1, DAY + timedelta(days=1, hours=1))])
    _land(lake, "other", [_event(11, 1, 1, DAY + timedelta(days=5, hours=1))])
    _land(lake, "next", [_event(12, 1, 1, DAY + timedelta(days=6))])
    assert mirror.sync(DAY, days=[old])
    assert mirror.listings - listed == 3
    assert {"ev-1-10", "ev-1-11", "ev-1-12"} <= set(_ids(mirror.frame(DAY)))
    # Another writer's change to an older day waits for the next full listing...
    _land(lake, "late", [_event(13, 1, 1, DAY + timedelta(days=2))])
    gone = lake.path(f"raw/events/date={DAY.strftime('%Y-%m-%d')}/part-d0.parquet")
    lake.fs.delete_file(gone)
    assert mirror.sync(DAY, days=[newest])
    assert "ev-1-13" not in _ids(mirror.frame(DAY)) and "ev-1-0" in _ids(mirror.frame(DAY))
    # ...which lists every day: the mirror holds what the lake holds again.
    mirror.full_listing_s = 0
    assert mirror.sync(DAY)
    assert _ids(mirror.frame(DAY)) == sorted(f"ev-1-{i}" for i in [1, 2, 3, 4, 5, 10, 11, 12, 13])
    with pytest.raises(InvalidInputError, match="full_listing_s"):
        RawMirror(lake, EVENTS_CONTRACT, max_rows=1, retention=timedelta(1), full_listing_s=-1)


def test_bounded_by_rows_evicting_the_oldest_event_times(lake: Lake) -> None:
    mirror = RawMirror(lake, EVENTS_CONTRACT, max_rows=10, retention=timedelta(days=30))
    mirror.sync(DAY)
    for i in range(12):  # out of event-time order
        _land(lake, f"f{i}", [_event(i, i, 1, DAY + timedelta(hours=(i * 7) % 12))])
        mirror.sync(DAY)
    # At 11 rows the floor moved past the two oldest event times (hours 0 and 1),
    # leaving 9 (90 %); the 12th file made 10.
    floor = mirror.floor
    assert floor == DAY + timedelta(hours=1) + pd.Timedelta(1, "ns") and mirror.rows == 10
    held = mirror.frame(DAY)
    assert (held["event_timestamp"] >= floor).all() and len(held) == 10
    assert not mirror.sync(DAY)  # a batch reaching back before it reads the lake
    # A new file dated before the floor adds nothing.
    _land(lake, "late", [_event(99, 99, 1, DAY)])
    mirror.sync(floor)
    assert "ev-1-99" not in _ids(mirror.frame(DAY))


def test_bounded_by_event_time_behind_the_newest(lake: Lake) -> None:
    mirror = RawMirror(lake, EVENTS_CONTRACT, max_rows=100, retention=timedelta(days=2))
    _land(lake, "a", [_event(1, 1, 1, DAY)])
    assert mirror.sync(DAY)
    _land(lake, "b", [_event(2, 1, 1, DAY + timedelta(days=3))])
    assert not mirror.sync(DAY)
    assert mirror.floor == DAY + timedelta(days=1) and _ids(mirror.frame(DAY)) == ["ev-1-2"]
    assert mirror.sync(DAY + timedelta(days=1))


def test_the_fill_stops_at_a_day_once_past_the_row_bound(lake: Lake) -> None:
    for d in range(5):
        _land(lake, f"d{d}", [_event(10 * d + i, i, 1, DAY + timedelta(days=d)) for i in range(4)])
    mirror = RawMirror(lake, EVENTS_CONTRACT, max_rows=6, retention=timedelta(days=30))
    assert not mirror.sync(DAY)  # whole days, newest first, until past 6 rows: 2 days
    assert mirror.floor is not None and mirror.floor >= DAY + timedelta(days=3)
    assert mirror.rows <= 6
    assert mirror.sync(DAY + timedelta(days=4))


def _run(
    tmp_path: Path, mirror_rows: int, batches: list[list[Event]], full_listing_s: float = 0.0
) -> dict[object, object]:
    """Consume the batches one by one; the online store's rows, by view and key."""
    bus, store = InProcessBus(), MemoryOnlineStore()
    consumer = StreamConsumer(
        bus,
        EVENTS_CONTRACT,
        lake=Lake(str(tmp_path / f"lake-{mirror_rows}-{full_listing_s}")),
        consumer="c0",
        views=VIEWS,
        online=OnlineFeatureClient(None, direct_store=store),
        batch_size=1_000,
        mirror_rows=mirror_rows,
        mirror_full_listing_s=full_listing_s,
    )
    for batch in batches:
        bus.publish(batch)
        consumer.run(until_empty=True)
    return {(r.view, r.entity_key): (r.values, r.event_ts) for r in store.scan()}


def _recomputed(events: list[Event]) -> dict[object, object]:
    """What a full batch recompute of every view over all the events gives for each
    key's newest row."""
    raw = event_table(events, EVENTS_CONTRACT).to_pandas()
    rows = {}
    for view in VIEWS:
        latest = latest_per_key(stamp_created(compute_view(view, raw)), view.join_keys)
        for r in online_rows(view, latest):
            rows[r.view, r.entity_key] = (r.values, r.event_ts)
    return rows


def test_a_consumer_with_the_mirror_writes_what_one_reading_the_lake_writes(
    tmp_path: Path,
) -> None:
    """Out-of-order and tied event times, window edges, late events older than the
    mirror (read from the lake) and newer ones (corrected in place)."""
    rng = random.Random(5)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    kinds = ("view", "view", "cart", "purchase")
    batches, i = [], 0
    for b in range(12):
        batch = []
        for _ in range(rng.randrange(5, 40)):
            back = timedelta(hours=rng.randrange(0, 24 * 10)) if b % 4 else timedelta(hours=1)
            if b == 9:  # late: older than the longest lookback plus a day
                back = timedelta(days=33)
            at = now - back
            batch.append(_event(i, rng.randrange(6), rng.randrange(8), at, rng.choice(kinds)))
            i += 1
        batches.append(batch)
    mirrored = _run(tmp_path, 2_000_000, batches)
    assert mirrored == _run(tmp_path, 0, batches)
    # Listing only each batch's own days and the newest ones: the lone consumer wrote
    # every file, so it misses nothing.
    assert mirrored == _run(tmp_path, 2_000_000, batches, full_listing_s=3600)
    assert mirrored == _recomputed([e for batch in batches for e in batch])
    assert {view for view, _ in mirrored} == {v.name for v in VIEWS}


def test_reads_grow_while_they_come_back_full(tmp_path: Path) -> None:
    bus = InProcessBus()
    consumer = StreamConsumer(
        bus,
        EVENTS_CONTRACT,
        lake=Lake(str(tmp_path / "lake")),
        consumer="c0",
        batch_size=5,
        max_batch_size=20,
    )
    now = datetime.now(UTC)
    bus.publish([_event(i, 1, 1, now) for i in range(60)])
    sizes = [r.events for r in iter(consumer.step, None)]
    assert sizes == [5, 10, 20, 20, 5]
    assert (
        StreamConsumer(
            bus, EVENTS_CONTRACT, lake=consumer.lake, consumer="c1", batch_size=5
        ).max_batch_size
        == 5
    )
