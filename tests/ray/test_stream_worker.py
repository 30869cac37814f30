"""The ingestion and feature services running by themselves: events given to the intake
land in the lake exactly once and change the online features, with no one calling the
consumer; a consumer killed mid-stream loses and duplicates nothing; a poison event ends
in the dead letters while the rest flow on; a lagging source is refused with 429's error.
Embedded (queue bus, memory shards) and Redis (Redis Streams, Redis online store)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from credentials import service_of

from entai.actors.bus import bus_from_settings
from entai.actors.features import OnlineFeatureClient, start_shards
from entai.demo.features import user_stats
from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.deployments.operations import EventIntake
from entai.pipelines.features import (
    DeadLetters,
    start_stream_workers,
    stream_worker_name,
    wait_for_backlog,
)
from entai.shared.core import OverloadedError
from entai.shared.data import Event, Lake, PlatformEventKind, pseudonym
from entai.shared.settings import EntaiSettings, load_settings

KEY = b"ray-stream-worker-key-0123456789"
CONTRACT = "entai.demo.contracts:EVENTS_CONTRACT"


def _settings(tmp: Path, backend: str, redis_url: str, prefix: str, **stream: Any) -> EntaiSettings:
    store: dict[str, Any] = {"type": "memory", "num_shards": 2}
    if backend == "redis":
        store = {"type": "redis", "num_shards": 2, "url": redis_url, "key_prefix": prefix}
    streams = {
        "events": {
            "contract": CONTRACT,
            "definitions_module": "entai.demo.features",
            "batch_size": 40,
            "block_s": 0.2,
            "max_attempts": 2,
            "redelivery_s": 3.0,
            **stream,
        }
    }
    return load_settings(
        home=tmp / "home",
        lake={"root": str(tmp / "lake")},
        online_store=store,
        ray={"namespace": f"stream-{uuid.uuid4().hex[:8]}"},
        security={"hmac_key": KEY.decode()},
        streams=streams,
    ).resolved()


def _events(n_users: int = 10, days: int = 6, seed: int = 5) -> pd.DataFrame:
    world = EcommerceWorld(WorldConfig(n_users=n_users, n_products=30, days=days, seed=seed))
    return world.events()


def _lake_ids(settings: EntaiSettings) -> Counter[str]:
    files = sorted((Path(settings.lake.root) / "raw" / "events").rglob("*.parquet"))
    return Counter(
        i for f in files for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()
    )


def _wait(what: str, done: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(params=["memory", "redis"])
def platform(
    request: pytest.FixtureRequest, ray_cluster: Any, tmp_path: Path, redis_url: str
) -> Iterator[Callable[..., EntaiSettings]]:
    """Starts shards and stream workers for settings built with the test's overrides."""
    prefix = f"entai-test:sw:{uuid.uuid4().hex[:8]}"
    started: list[tuple[EntaiSettings, list[Any]]] = []

    def start(**stream: Any) -> EntaiSettings:
        settings = _settings(tmp_path, request.param, redis_url, prefix, **stream)
        handles = [*start_shards(settings), *start_stream_workers(settings).values()]
        started.append((settings, handles))
        return settings

    yield start
    for _, handles in started:
        for handle in handles:
            ray_cluster.kill(handle)
    if request.param == "redis":
        from redis_keys import delete_redis_keys

        delete_redis_keys(redis_url, f"{prefix}*")


def _user_views(settings: EntaiSettings, user: int) -> float | None:
    """The user's online ``user_views_7d`` (None until it is there)."""
    client = OnlineFeatureClient(start_shards(settings), credential=service_of(settings))
    reply = client.get_online_features(
        {user_stats.name: ["user_views_7d"]}, [{"user_id": user}], {}
    )
    value = reply["results"][0]["values"][0]
    return None if value is None else float(value)


def test_events_given_to_the_intake_land_once_and_update_online_features(
    platform: Callable[..., EntaiSettings],
) -> None:
    settings = platform()
    frame = _events()
    intake = EventIntake(settings, {})
    receipt = intake.publish("events", frame.to_dict("records"))
    assert (receipt.accepted, receipt.rejected) == (len(frame), 0)

    _wait("every event landed", lambda: sum(_lake_ids(settings).values()) >= len(frame))
    bus = bus_from_settings(settings)
    assert wait_for_backlog(bus, "events", timeout_s=60) == 0
    counts = _lake_ids(settings)
    assert set(counts) == set(frame["event_id"]) and set(counts.values()) == {1}
    # Each landing was announced: every raw file, in its date partition, once.
    landed = bus.read(PlatformEventKind.DATA_LANDED.value, "test", max_events=10_000, block_s=0)
    announced = [f for d in landed for f in d.event.payload["files"]]
    raw = Path(settings.lake.root) / "raw" / "events"
    on_disk = sorted(str(p.relative_to(settings.lake.root)) for p in raw.rglob("*.parquet"))
    assert sorted(announced) == on_disk
    for d in landed:
        assert all(f"/{d.event.payload['partition']}/" in f for f in d.event.payload["files"])
    bus.ack(PlatformEventKind.DATA_LANDED.value, landed)

    user = int(frame["user_id"].iloc[0])
    _wait("the user's online features", lambda: _user_views(settings, user) is not None)
    # Months after the generated history the user views five products: the feature
    # service updates the user's 7-day view count to exactly those five, by itself.
    later = frame[frame["user_id"] == user].head(5).copy()
    later["event_id"] = [f"ev-99{i}-{uuid.uuid4().int % 10**9}" for i in range(5)]
    later["event_type"] = "view"
    later["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("s")
    assert intake.publish("events", later.to_dict("records")).accepted == 5
    _wait("the five new views counted online", lambda: _user_views(settings, user) == 5.0)
    # The raw zone holds pseudonyms only, as for files.
    raw = pq.read_table(sorted((Path(settings.lake.root) / "raw" / "events").rglob("*.parquet"))[0])
    emails = set(raw.column("user_email").to_pylist())
    assert emails <= {pseudonym(e, KEY) for e in pd.concat([frame, later])["user_email"]}


@pytest.mark.chaos  # kills the consumer actor: `make test-chaos` (CI runs it)
def test_a_consumer_killed_mid_stream_loses_and_duplicates_nothing(
    platform: Callable[..., EntaiSettings], ray_cluster: Any
) -> None:
    settings = platform(batch_size=20)
    frame = _events(n_users=14, days=8, seed=9)
    intake = EventIntake(settings, {})
    records = frame.to_dict("records")
    half = len(records) // 2
    intake.publish("events", records[:half])
    _wait("the consumer started landing", lambda: sum(_lake_ids(settings).values()) > 0)
    worker = ray_cluster.get_actor(
        stream_worker_name("events", 0), namespace=settings.ray.namespace
    )
    ray_cluster.kill(worker, no_restart=False)  # Ray restarts it; its batch comes back
    intake.publish("events", records[half:])
    _wait(
        "every event landed after the restart",
        lambda: set(_lake_ids(settings)) == set(frame["event_id"]),
        150.0,
    )
    assert wait_for_backlog(bus_from_settings(settings), "events", timeout_s=60) == 0
    counts = _lake_ids(settings)
    assert set(counts.values()) == {1}, [i for i, n in counts.items() if n > 1][:5]


def test_a_poison_event_ends_in_the_dead_letters_and_the_rest_flow_on(
    platform: Callable[..., EntaiSettings],
) -> None:
    settings = platform()
    frame = _events(n_users=6, days=3, seed=11)
    good = frame.to_dict("records")
    # Past the intake (straight onto the bus) and unreadable by the contract: its
    # event time is not a time, so every attempt to land it fails.
    payload = {
        k: v.isoformat() if hasattr(v, "isoformat") else v.item() if hasattr(v, "item") else v
        for k, v in good[0].items()
    }
    poison = Event(
        event_id="poison-1",
        source="events",
        payload={**payload, "event_timestamp": "not a time"},
    )
    bus = bus_from_settings(settings)
    bus.publish([poison])
    EventIntake(settings, {}).publish("events", good)

    letters = DeadLetters(Lake(settings.lake.root))
    _wait("the poison event dead-lettered", lambda: len(letters.entries("events")) == 1, 120.0)
    _wait("the good events landed", lambda: set(_lake_ids(settings)) == set(frame["event_id"]))
    (letter,) = letters.entries("events")
    assert letter.event.event_id == "poison-1" and letter.attempts == 2
    assert "poison-1" not in _lake_ids(settings)
    assert wait_for_backlog(bus, "events", timeout_s=30) == 0

    assert letters.replay(bus, "events") == 1  # back on the bus; it fails and returns
    assert [e.event.event_id for e in letters.entries("events")] in ([], ["poison-1"])
    _wait(
        "the replayed poison dead-lettered again",
        lambda: len(letters.entries("events")) == 1,
        120.0,
    )


def test_a_source_lagging_past_its_limit_is_refused_with_retry_after(
    platform: Callable[..., EntaiSettings], ray_cluster: Any
) -> None:
    settings = platform(max_backlog=30)
    worker = ray_cluster.get_actor(
        stream_worker_name("events", 0), namespace=settings.ray.namespace
    )
    ray_cluster.kill(worker)  # no consumer: the backlog only grows
    intake = EventIntake(settings, {})
    frame = _events(n_users=8, days=4, seed=13)
    records = frame.to_dict("records")
    intake.publish("events", records[:30])
    with pytest.raises(OverloadedError) as refused:
        intake.publish("events", records[30:40])
    assert refused.value.details["backlog"] == 30
    assert refused.value.details["max_backlog"] == 30
    assert refused.value.details["retry_after_s"] > 0
    assert bus_from_settings(settings).backlog("events") == 30  # nothing half-accepted
