"""Stream feature views kept fresh by the running stream workers: view events given to
the intake become the user's ``user_recent_views`` list online, in order; a late view
lands and corrects the list; a view dated an hour ahead is quarantined and never pins
it. Embedded (queue bus, memory shards) and Redis (Redis Streams, Redis online store)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from credentials import service_of

from entai.actors.features import OnlineFeatureClient, start_shards
from entai.demo.features import user_recent_views
from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.deployments.operations import EventIntake
from entai.pipelines.features import DeadLetters, start_stream_workers
from entai.shared.data import Lake
from entai.shared.settings import EntaiSettings, load_settings

KEY = b"ray-stream-features-key-01234567"
USER = 3


def _settings(tmp: Path, backend: str, redis_url: str, prefix: str) -> EntaiSettings:
    store: dict[str, Any] = {"type": "memory", "num_shards": 2}
    if backend == "redis":
        store = {"type": "redis", "num_shards": 2, "url": redis_url, "key_prefix": prefix}
    return load_settings(
        home=tmp / "home",
        lake={"root": str(tmp / "lake")},
        online_store=store,
        ray={"namespace": f"stream-features-{uuid.uuid4().hex[:8]}"},
        security={"hmac_key": KEY.decode()},
        streams={
            "events": {
                "contract": "entai.demo.contracts:EVENTS_CONTRACT",
                "definitions_module": "entai.demo.features",
                "batch_size": 40,
                "block_s": 0.2,
                "max_future_skew_s": 300,
            }
        },
    ).resolved()


@pytest.fixture(params=["memory", "redis"])
def settings(
    request: pytest.FixtureRequest, ray_cluster: Any, tmp_path: Path, redis_url: str
) -> Iterator[EntaiSettings]:
    prefix = f"entai-test:sf:{uuid.uuid4().hex[:8]}"
    settings = _settings(tmp_path, request.param, redis_url, prefix)
    handles = [*start_shards(settings), *start_stream_workers(settings).values()]
    yield settings
    for handle in handles:
        ray_cluster.kill(handle)
    if request.param == "redis":
        from redis_keys import delete_redis_keys

        delete_redis_keys(redis_url, f"{prefix}*")


def _template() -> dict[str, Any]:
    """One valid raw demo event of user ``USER`` (its other columns are kept)."""
    frame = EcommerceWorld(WorldConfig(n_users=10, n_products=30, days=3, seed=5)).events()
    row: dict[str, Any] = frame[frame["user_id"] == USER].iloc[0].to_dict()
    return row


def _view(template: dict[str, Any], i: int, product: int, at: datetime) -> dict[str, Any]:
    return {
        **template,
        "event_id": f"ev-77-{i}",
        "product_id": product,
        "event_type": "view",
        "event_timestamp": at.isoformat(),
    }


def _recent(client: OnlineFeatureClient) -> list[int] | None:
    reply = client.get_online_features(
        {user_recent_views.name: ["recent_product_ids"]},
        [{"user_id": USER}],
        {user_recent_views.name: user_recent_views.ttl},
    )
    value: list[int] | None = reply["results"][0]["values"][0]
    return value


def _wait_for(client: OnlineFeatureClient, want: list[int], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := _recent(client)) != want:
        if time.monotonic() > deadline:
            pytest.fail(f"user_recent_views is {got}, not {want}, after {timeout_s} s")
        time.sleep(0.2)


def _lake_ids(settings: EntaiSettings) -> set[str]:
    files = sorted((Path(settings.lake.root) / "raw" / "events").rglob("*.parquet"))
    return {
        i for f in files for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()
    }


def test_recent_views_stream_in_order_with_a_late_and_a_future_view(
    settings: EntaiSettings,
) -> None:
    intake = EventIntake(settings, {})
    client = OnlineFeatureClient(start_shards(settings), credential=service_of(settings))
    template = _template()
    now = datetime.now(UTC).replace(microsecond=0)
    first = [_view(template, i, 11 + i, now - timedelta(minutes=30 - i)) for i in range(3)]
    assert intake.publish("events", first).accepted == 3
    _wait_for(client, [13, 12, 11])

    # Late: between the first two views; the newest row is recomputed with it.
    late = _view(template, 3, 99, now - timedelta(minutes=29, seconds=30))
    assert intake.publish("events", [late]).accepted == 1
    _wait_for(client, [13, 12, 99, 11])

    # An hour ahead of the clock, published with a current view: quarantined.
    future = _view(template, 4, 77, now + timedelta(hours=1))
    current = _view(template, 5, 14, now - timedelta(minutes=1))
    assert intake.publish("events", [future, current]).accepted == 2
    _wait_for(client, [14, 13, 12, 99, 11])
    dead = DeadLetters(Lake(settings.lake.root))
    deadline = time.monotonic() + 60  # the two may come in separate batches
    while not (letters := dead.entries("events")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [d.event.event_id for d in letters] == ["ev-77-4"]
    assert letters[0].error.startswith("future event: event_timestamp ")
    landed = _lake_ids(settings)
    assert {f"ev-77-{i}" for i in (0, 1, 2, 3, 5)} <= landed
    assert "ev-77-4" not in landed
    time.sleep(1.0)  # nothing still in flight replaces the value
    assert _recent(client) == [14, 13, 12, 99, 11]
