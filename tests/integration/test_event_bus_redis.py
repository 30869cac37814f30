"""The Redis Streams event bus on the real Redis, and consumers killed before their ack."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis

from entai.actors.bus import DONE, RedisStreamBus, bus_from_settings
from entai.demo.contracts import EVENTS_CONTRACT
from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.pipelines.features import StreamConsumer, publish_events
from entai.shared.core import ServiceUnavailableError
from entai.shared.data import Lake
from entai.shared.settings import load_settings

KEY = b"redis-stream-key-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]
CLAIM_IDLE_S = 0.2

# A consumer process that reads one batch and dies (os._exit) before acknowledging it:
#   before-lake: right after the read; after-lake: after the lake write (and the views);
#   mid-lake: after the first of the batch's files (the batch spans two days).
CHILD = """
import os, sys
from entai.actors.bus import RedisStreamBus
from entai.demo.contracts import EVENTS_CONTRACT
from entai.pipelines.features import StreamConsumer
from entai.shared.data import Lake

url, prefix, root, mode, name, size = sys.argv[1:7]
bus = RedisStreamBus(url, prefix, claim_idle_s=0.2)
lake = Lake(root)
consumer = StreamConsumer(bus, EVENTS_CONTRACT, lake=lake, consumer=name)
deliveries = bus.read("events", name, max_events=int(size), block_s=0)
print(len(deliveries), flush=True)
if mode == "mid-lake":
    write = lake.write_bytes
    def write_once(*args, **kwargs):
        write(*args, **kwargs)
        os._exit(17)
    lake.write_bytes = write_once
if mode != "before-lake":
    consumer.process(deliveries)
os._exit(17)
"""


@pytest.fixture
def bus(redis_url: str, redis_prefix: str) -> Iterator[RedisStreamBus]:
    stream_bus = RedisStreamBus(redis_url, f"{redis_prefix}:events:", claim_idle_s=CLAIM_IDLE_S)
    yield stream_bus
    stream_bus.close()


def records(days: int = 3) -> list[dict[str, Any]]:
    world = EcommerceWorld(WorldConfig(n_users=8, n_products=30, days=days, seed=11))
    rows: list[dict[str, Any]] = world.events().to_dict("records")
    return rows


def lake_ids(root: Path) -> Counter[str]:
    files = sorted((root / "raw" / "events").rglob("*.parquet"))
    return Counter(i for f in files for i in pq.read_table(f)["event_id"].to_pylist())


def kill_a_consumer(bus_args: tuple[str, str], root: Path, mode: str, name: str, size: int) -> int:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *bus_args, str(root), mode, name, str(size)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 17, done.stderr[-2000:]
    return int(done.stdout.split()[0])


def test_publish_read_ack_and_ledger(redis_url: str, redis_prefix: str) -> None:
    idle_s = 2.0  # long enough that a loaded machine does not re-claim early
    bus = RedisStreamBus(redis_url, f"{redis_prefix}:events:", claim_idle_s=idle_s)
    rows = records()[:5]
    receipt = publish_events(bus, EVENTS_CONTRACT, [*rows, {"nope": 1}], hmac_key=KEY)
    assert (receipt.accepted, receipt.rejected) == (5, 1)
    assert receipt.errors[0].index == 5

    got = bus.read("events", "a", max_events=3, block_s=0)
    assert [d.event.event_id for d in got] == [r["event_id"] for r in rows[:3]]
    assert not any(d.redelivered for d in got)
    assert bus.ack("events", got[:1]) == 1
    rest = bus.read("events", "a", max_events=10, block_s=0)
    assert [d.event.event_id for d in rest] == [r["event_id"] for r in rows[3:]]
    time.sleep(idle_s + 0.1)

    claimed = bus.read("events", "b", max_events=10, block_s=0)  # a went silent
    assert {d.event.event_id for d in claimed} == {r["event_id"] for r in rows[1:]}
    assert all(d.redelivered for d in claimed)
    assert bus.ack("events", claimed) == 4
    assert bus.backlog("events") == 0
    ids = [r["event_id"] for r in rows]
    assert bus.ledger("events", ids) == dict.fromkeys(ids, DONE)
    bus.record("events", ids[:1], "raw/events/x.parquet")  # DONE is never overwritten
    assert bus.ledger("events", ids[:1]) == {ids[0]: DONE}
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl(f"{redis_prefix}:events:ledger:events:{ids[0]}") <= 7 * 86_400
    client.close()
    bus.close()


def test_a_blocked_reader_gets_one_publish_whole(bus: RedisStreamBus, redis_url: str) -> None:
    """One publish (one POST /v1/events) reaches a consumer waiting in XREADGROUP as one
    micro-batch: without the transaction Redis serves the waiting reader after the first
    XADD, and the stream views are computed on the first event alone, then on the rest."""
    rows = records()[:5]
    bus.read("events", "a", max_events=10, block_s=0)  # the consumer group exists
    got: list[list[str]] = []

    def waiting_reader() -> None:
        deliveries = bus.read("events", "a", max_events=100, block_s=10.0)
        got.append([d.event.event_id for d in deliveries])

    reader = threading.Thread(target=waiting_reader)
    reader.start()
    deadline = time.monotonic() + 10
    client = redis.Redis.from_url(redis_url)
    while time.monotonic() < deadline:  # until the reader is blocked on the stream
        if any(c.get("cmd") == "xreadgroup" for c in client.client_list()):
            break
        time.sleep(0.01)
    client.close()
    assert publish_events(bus, EVENTS_CONTRACT, rows, hmac_key=KEY).accepted == 5
    reader.join(timeout=15)
    assert got == [[r["event_id"] for r in rows]]


@pytest.mark.chaos  # kills the consumer process: `make test-chaos` (CI runs it)
@pytest.mark.parametrize("mode", ["before-lake", "after-lake", "mid-lake"])
def test_a_consumer_killed_before_its_ack_loses_and_duplicates_nothing(
    bus: RedisStreamBus, redis_url: str, redis_prefix: str, tmp_path: Path, mode: str
) -> None:
    rows = records(days=4)
    first, later = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    publish_events(bus, EVENTS_CONTRACT, first, hmac_key=KEY)
    args = (redis_url, f"{redis_prefix}:events:")
    read = kill_a_consumer(args, tmp_path, mode, "victim", size=len(first))
    assert read == len(first)
    if mode != "before-lake":
        assert sum(lake_ids(tmp_path).values()) > 0  # the dead consumer wrote before dying
    publish_events(bus, EVENTS_CONTRACT, later, hmac_key=KEY)
    time.sleep(CLAIM_IDLE_S + 0.1)

    survivor = StreamConsumer(
        bus, EVENTS_CONTRACT, lake=Lake(str(tmp_path)), consumer="survivor", batch_size=7
    )
    report = survivor.run(until_empty=True)

    counts = lake_ids(tmp_path)
    assert set(counts) == {r["event_id"] for r in rows}
    assert set(counts.values()) == {1}
    assert report.events == len(rows)
    assert bus.backlog("events") == 0
    client = redis.Redis.from_url(redis_url)
    assert client.xpending(f"{redis_prefix}:events:stream:events", "entai-stream")["pending"] == 0
    client.close()


def test_an_undecodable_entry_is_dropped_not_redelivered_forever(
    bus: RedisStreamBus, redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.xadd(f"{redis_prefix}:events:stream:events", {"event": "{not json"})
    client.close()
    publish_events(bus, EVENTS_CONTRACT, records()[:2], hmac_key=KEY)

    got = bus.read("events", "a", block_s=0)

    assert len(got) == 2
    assert bus.ack("events", got) == 2
    assert bus.backlog("events") == 0


def test_settings_pick_the_redis_bus_with_the_store_prefix(redis_url: str) -> None:
    settings = load_settings(online_store={"type": "redis", "url": redis_url, "key_prefix": "p"})
    chosen = bus_from_settings(settings)
    assert isinstance(chosen, RedisStreamBus)
    assert "p:events:" in repr(chosen) and "redis://" not in repr(chosen)
    chosen.close()


def test_an_unreachable_redis_is_a_service_error() -> None:
    down = RedisStreamBus("redis://127.0.0.1:1/0", "x:")
    with pytest.raises(ServiceUnavailableError, match="Redis unreachable"):
        down.backlog("events")
