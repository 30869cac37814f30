"""The embedded event bus (QueueBus actor), the stream consumer and push()."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from credentials import service_of

from entai.actors.bus import QueueBus
from entai.actors.features import FeatureShardActor, OnlineFeatureClient
from entai.demo.contracts import EVENTS_CONTRACT
from entai.demo.features import user_category_stats, user_stats
from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.pipelines.features import StreamConsumer, publish_events, push
from entai.shared.data import Lake, pseudonym
from entai.shared.features import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureView,
    OfflineStore,
    compute_view,
    latest_per_key,
)
from entai.shared.settings import MemoryOnlineStoreSettings, load_settings

KEY = b"ray-stream-key-0123456789abcdef"
VISIBILITY_S = 1.5  # long enough that a loaded machine does not redeliver early


@pytest.fixture
def bus(ray_cluster: Any) -> Iterator[QueueBus]:
    queue = QueueBus(f"test-queue-{uuid.uuid4().hex[:8]}", visibility_timeout_s=VISIBILITY_S)
    yield queue
    ray_cluster.kill(ray_cluster.get_actor(queue.name))


@pytest.fixture
def online(ray_cluster: Any, tmp_path: Path) -> Iterator[OnlineFeatureClient]:
    platform = load_settings(home=tmp_path / "platform").resolved()
    shards = [
        FeatureShardActor.options(num_cpus=0).remote(
            f"test-shard-{i}-{uuid.uuid4().hex[:6]}", MemoryOnlineStoreSettings(), callers=platform
        )
        for i in range(2)
    ]
    yield OnlineFeatureClient(shards, credential=service_of(platform))
    for shard in shards:
        ray_cluster.kill(shard)


def events(n_users: int = 12, days: int = 8) -> pd.DataFrame:
    world = EcommerceWorld(WorldConfig(n_users=n_users, n_products=40, days=days, seed=3))
    return world.events()


def lake_ids(lake: Path) -> Counter[str]:
    files = sorted((lake / "raw" / "events").rglob("*.parquet"))
    ids = [i for f in files for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()]
    return Counter(ids)


def read_raw(lake: Path) -> pd.DataFrame:
    files = sorted((lake / "raw" / "events").rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()


def test_queue_bus_redelivers_what_was_not_acknowledged(bus: QueueBus) -> None:
    frame = events().head(3)
    receipt = publish_events(bus, EVENTS_CONTRACT, frame.to_dict("records"), hmac_key=KEY)
    assert (receipt.accepted, receipt.rejected) == (3, 0)

    first = bus.read("events", "a", block_s=0)
    assert [d.event.event_id for d in first] == frame["event_id"].tolist()
    assert bus.read("events", "b", block_s=0) == []  # invisible while in flight
    time.sleep(VISIBILITY_S + 0.1)
    again = bus.read("events", "b", block_s=0)
    assert [d.event.event_id for d in again] == frame["event_id"].tolist()
    assert all(d.redelivered for d in again)
    assert bus.ack("events", again) == 3
    assert bus.backlog("events") == 0
    assert set(bus.ledger("events", frame["event_id"].tolist()).values()) == {"done"}


def test_redelivered_batches_reach_the_lake_exactly_once(bus: QueueBus, tmp_path: Path) -> None:
    frame = events()
    records = frame.to_dict("records")
    publish_events(bus, EVENTS_CONTRACT, records, hmac_key=KEY)
    lake = Lake(str(tmp_path))
    dying = StreamConsumer(bus, EVENTS_CONTRACT, lake=lake, consumer="dying", batch_size=40)
    dying.process(bus.read("events", "dying", max_events=40, block_s=0))  # crashes before ack
    time.sleep(VISIBILITY_S + 0.1)

    survivor = StreamConsumer(
        bus, EVENTS_CONTRACT, lake=lake, consumer="survivor", batch_size=15, block_s=0
    )
    report = survivor.run(until_empty=True)
    publish_events(bus, EVENTS_CONTRACT, records[:25], hmac_key=KEY)  # a client retried
    repeat = survivor.run(until_empty=True)

    counts = lake_ids(tmp_path)
    assert set(counts) == set(frame["event_id"]) and set(counts.values()) == {1}
    assert report.duplicates == 40 and report.written == len(frame) - 40
    assert (repeat.written, repeat.duplicates) == (0, 25)
    assert bus.backlog("events") == 0
    raw = read_raw(tmp_path)
    assert set(raw["user_email"]) == {pseudonym(e, KEY) for e in frame["user_email"]}


def view_consumer(
    bus: QueueBus, lake: Lake, online: OnlineFeatureClient, view: FeatureView, **options: Any
) -> StreamConsumer:
    """A consumer ``c`` of the events feeding ``view`` online, reading without waiting."""
    return StreamConsumer(
        bus,
        EVENTS_CONTRACT,
        lake=lake,
        consumer="c",
        views=[view],
        online=online,
        block_s=0,
        **options,
    )


def online_frame(
    client: OnlineFeatureClient, view: FeatureView, keys: pd.DataFrame
) -> pd.DataFrame:
    rows = keys.to_dict("records")
    reply = client.get_online_features({view.name: list(view.feature_names)}, rows, {})
    values = {
        name: r["values"] for name, r in zip(view.feature_names, reply["results"], strict=True)
    }
    stamps = reply["results"][0]["event_timestamps"]
    return keys.assign(**values, **{EVENT_TIMESTAMP: pd.to_datetime(stamps, utc=True)})


@pytest.mark.parametrize("view", [user_category_stats, user_stats], ids=lambda v: v.name)
def test_streamed_windowed_features_equal_a_full_batch_recompute(
    bus: QueueBus, online: OnlineFeatureClient, tmp_path: Path, view: FeatureView
) -> None:
    frame = events(n_users=10, days=12)
    lake = Lake(str(tmp_path))
    consumer = view_consumer(bus, lake, online, view, batch_size=60)
    records = frame.to_dict("records")
    for start in range(0, len(records), 60):  # events arrive over time
        publish_events(bus, EVENTS_CONTRACT, records[start : start + 60], hmac_key=KEY)
        consumer.run(max_batches=1)

    keys = list(view.join_keys)
    batch = compute_view(view, read_raw(tmp_path).drop(columns="_batch_id"))
    expected = latest_per_key(batch.assign(**{CREATED_TIMESTAMP: 0}), keys)
    expected = expected.drop(columns=CREATED_TIMESTAMP).sort_values(keys, ignore_index=True)
    served = online_frame(online, view, expected[keys]).sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(served, expected, check_dtype=False, check_like=True)

    offline = OfflineStore(lake).read(view)
    order = [*keys, EVENT_TIMESTAMP]
    final = offline.sort_values(CREATED_TIMESTAMP).drop_duplicates(order, keep="last")
    final = final.drop(columns=CREATED_TIMESTAMP).sort_values(order, ignore_index=True)
    full = batch.sort_values(order, ignore_index=True)
    pd.testing.assert_frame_equal(final, full, check_dtype=False, check_like=True)


def test_push_writes_offline_then_online_with_one_created_time(
    online: OnlineFeatureClient, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path))
    day = datetime(2026, 9, 10, tzinfo=UTC)
    features = {f: [1.0, 2.0, 3.0] for f in user_stats.feature_names}
    rows = pd.DataFrame(
        {"user_id": [1, 1, 2], EVENT_TIMESTAMP: [day, day + timedelta(days=1), day], **features}
    )
    created = datetime(2026, 9, 11, 12, tzinfo=UTC)

    assert push(user_stats, rows, lake=lake, online=online, created_at=created) == 3
    late = rows.iloc[[0]].assign(user_views_7d=99.0)
    push(user_stats, late, lake=lake, online=online)  # older event: offline only wins nothing

    offline = OfflineStore(lake).read(user_stats)
    stamps = sorted(offline[CREATED_TIMESTAMP])
    assert len(stamps) == 4
    assert stamps[:3] == [pd.Timestamp(created)] * 3 and stamps[3] > pd.Timestamp(created)
    served = online_frame(online, user_stats, pd.DataFrame({"user_id": [1, 2]}))
    assert served["user_views_7d"].tolist() == [2.0, 3.0]
    assert served[EVENT_TIMESTAMP].tolist() == [day + timedelta(days=1), day]


def test_each_micro_batch_keeps_its_offline_rows_and_a_redelivery_rewrites_its_own(
    bus: QueueBus, online: OnlineFeatureClient, tmp_path: Path
) -> None:
    """Two micro-batches of one user on one day compute the same (user, day) row of a
    daily view: the first batch's value was served online, so the offline table keeps
    it beside the second's. The first batch, processed again as it was (a redelivery),
    rewrites its own file instead of adding one."""
    frame = events(n_users=4, days=3)
    user = int(frame["user_id"].iloc[-1])
    day = frame["event_timestamp"].max().floor("D")
    today = frame[(frame["user_id"] == user) & (frame["event_timestamp"] >= day)]
    assert len(today) >= 2
    lake = Lake(str(tmp_path))
    consumer = view_consumer(bus, lake, online, user_stats)
    publish_events(bus, EVENTS_CONTRACT, frame.drop(today.index).to_dict("records"), hmac_key=KEY)
    consumer.run(until_empty=True)
    end_of_day = day + pd.Timedelta(days=1)

    def rows() -> pd.DataFrame:
        offline = OfflineStore(lake).read(user_stats)
        mine = offline[(offline["user_id"] == user) & (offline[EVENT_TIMESTAMP] == end_of_day)]
        return mine.sort_values(CREATED_TIMESTAMP, ignore_index=True)

    before = len(rows())  # 1 when the user had events earlier that day, else 0
    publish_events(bus, EVENTS_CONTRACT, today.head(1).to_dict("records"), hmac_key=KEY)
    first = bus.read("events", "c", block_s=0)
    consumer.process(first)  # not acknowledged: it will come again
    served = online_frame(online, user_stats, pd.DataFrame({"user_id": [user]}))
    first_views = float(served["user_views_7d"].iloc[0])
    time.sleep(VISIBILITY_S + 0.1)
    again = bus.read("events", "c", block_s=0)
    assert [d.event.event_id for d in again] == [d.event.event_id for d in first]
    consumer.process(again)
    consumer.settle(again, consumer.process(again))
    assert len(rows()) == before + 1  # the redelivery rewrote its own file

    publish_events(bus, EVENTS_CONTRACT, today.iloc[1:].to_dict("records"), hmac_key=KEY)
    consumer.run(until_empty=True)
    kept = rows()
    assert len(kept) == before + 2
    views = kept["user_views_7d"].tolist()
    assert views[-2] == first_views  # what the first batch served is still offline
    assert views[-1] == first_views + int((today.iloc[1:]["event_type"] == "view").sum())
