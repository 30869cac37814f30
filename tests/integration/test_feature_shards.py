"""FeatureShard actors: fan-out reads, resharding without loss, a shard killed mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from credentials import SERVICE, callers, service_of

from entai.actors.backends import RedisOnlineStore, SqliteOnlineStore
from entai.actors.features import (
    FeatureShard,
    FeatureShardActor,
    OnlineFeatureClient,
    shard_name,
    sqlite_directory,
    start_shards,
)
from entai.shared.core import InvalidInputError, PermissionDeniedError
from entai.shared.features import (
    FeatureRow,
    FeatureStatus,
    MemoryOnlineStore,
    OnlineBatch,
    OnlineStore,
    entity_key,
    rendezvous_shard,
)
from entai.shared.settings import (
    EntaiSettings,
    MemoryOnlineStoreSettings,
    RedisOnlineStoreSettings,
    SqliteOnlineStoreSettings,
    load_settings,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows_for(n: int, ev: int = 0, view: str = "user") -> list[FeatureRow]:
    return [
        FeatureRow(
            view, entity_key({"user_id": i}), {"a": i, "b": i * 0.5}, T0 + timedelta(seconds=ev), T0
        )
        for i in range(n)
    ]


@pytest.fixture
def namespace(ray_cluster: Any) -> Iterator[str]:
    """A fresh namespace per test; every detached shard in it is killed afterwards."""
    ns = f"entai-shards-{uuid.uuid4().hex[:8]}"
    yield ns
    for i in range(8):
        with contextlib.suppress(ValueError):
            ray_cluster.kill(ray_cluster.get_actor(shard_name(i), namespace=ns), no_restart=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The platform home of the started shards (their service secret is kept there)."""
    return tmp_path_factory.mktemp("shards-home")


def platform_credential(home: Path) -> str:
    """A service credential of the platform whose home is ``home``."""
    return service_of(load_settings(home=home))


def memory_settings(n: int, home: Path) -> EntaiSettings:
    return load_settings(home=home, online_store=MemoryOnlineStoreSettings(num_shards=n))


def test_shard_class_works_without_ray() -> None:
    shard = FeatureShard("s0", MemoryOnlineStore(), callers=callers())
    shard.write(rows_for(3), credential=SERVICE)
    assert shard.keys_for_reshard(["s0"], credential=SERVICE) == []
    assert len(shard.keys_for_reshard(["other"], credential=SERVICE)) == 3
    assert shard.describe()["shared_store"] is False


def test_sqlite_shards_keep_their_own_files_and_allow_direct_reads(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, online_store={"num_shards": 2}).resolved()
    a = FeatureShard("a", settings.online_store, callers=callers())
    b = FeatureShard("b", settings.online_store, callers=callers())
    a.write(rows_for(20), credential=SERVICE)
    assert b.scan(credential=SERVICE) == [] and len(
        a.keys_for_reshard(["a", "b"], credential=SERVICE)
    ) in range(1, 20)
    assert sorted(p.name for p in (tmp_path / "online").iterdir() if p.suffix == ".sqlite") == [
        "a.sqlite",
        "b.sqlite",
    ]
    info = a.describe()
    assert info["shared_store"] is False and info["direct_reads"] is True
    again = FeatureShard("a", settings.online_store, callers=callers())  # restarted: same file
    assert sorted(r.entity_key for r in again.scan(credential=SERVICE)) == sorted(
        r.entity_key for r in a.scan(credential=SERVICE)
    )


def test_redis_shards_share_the_store_so_reshard_moves_nothing(
    redis_url: str, redis_prefix: str
) -> None:
    a = FeatureShard("a", RedisOnlineStore(redis_url, redis_prefix), callers=callers())
    b = FeatureShard("b", RedisOnlineStore(redis_url, redis_prefix), callers=callers())
    a.write(rows_for(20), credential=SERVICE)
    assert len(b.scan(credential=SERVICE)) == 20
    assert (
        a.keys_for_reshard(["b"], credential=SERVICE) == [] and b.describe()["shared_store"] is True
    )


def test_direct_reads_refuse_memory_shards(namespace: str, home: Path) -> None:
    handles = start_shards(memory_settings(1, home), namespace)
    with pytest.raises(InvalidInputError, match="direct_store"):
        OnlineFeatureClient(
            handles, direct_store=MemoryOnlineStore(), credential=platform_credential(home)
        )


def test_shards_are_named_detached_and_found_again(
    namespace: str, ray_cluster: Any, home: Path
) -> None:
    handles = start_shards(memory_settings(2, home), namespace)
    again = start_shards(memory_settings(2, home), namespace)
    ids = ray_cluster.get([h.describe.remote() for h in again])
    assert [i["shard_id"] for i in ids] == ["entai-feature-shard-0", "entai-feature-shard-1"]
    ray_cluster.get(handles[0].write.remote(rows_for(1), credential=platform_credential(home)))
    assert len(ray_cluster.get(again[0].scan.remote(credential=platform_credential(home)))) == 1


def test_batch_writes_go_to_the_owning_shards_last_write_wins(
    namespace: str, ray_cluster: Any, home: Path
) -> None:
    handles = start_shards(memory_settings(3, home), namespace)
    client = OnlineFeatureClient(handles, credential=platform_credential(home))
    rng = random.Random(5)
    rows = [
        FeatureRow(
            "user",
            entity_key({"user_id": rng.randrange(60)}),
            {"a": i, "b": [i]},
            T0 + timedelta(seconds=rng.randrange(4)),
            T0 + timedelta(seconds=rng.randrange(3)),
        )
        for i in range(600)
    ]
    reference = MemoryOnlineStore()
    applied = reference.write(rows)
    # Shuffled batches, older rows often arriving after newer ones.
    written = sum(
        client.write_batch(OnlineBatch.of_rows("user", rows[i : i + 150]))
        for i in range(0, len(rows), 150)
    )
    assert written == applied
    per_shard = [
        ray_cluster.get(h.scan.remote(credential=platform_credential(home))) for h in handles
    ]
    assert all(per_shard) and sum(map(len, per_shard)) == 60  # each key once, on its owner
    for shard_id, held in zip(client.shard_ids, per_shard, strict=True):
        assert {rendezvous_shard(r.entity_key, client.shard_ids) for r in held} == {shard_id}
    assert sorted(map(repr, (r for s in per_shard for r in s))) == sorted(
        map(repr, reference.scan())
    )
    assert client.write_batch(OnlineBatch.of_rows("user", rows)) == 0  # a replay: no change


def test_batch_writes_to_redis_shards_go_whole_to_one_shard(
    namespace: str, ray_cluster: Any, redis_url: str, redis_prefix: str, home: Path
) -> None:
    settings = load_settings(
        home=home,
        online_store=RedisOnlineStoreSettings(url=redis_url, key_prefix=redis_prefix, num_shards=3),
    )
    client = OnlineFeatureClient(start_shards(settings, namespace), credential=service_of(settings))
    assert client.shared_store
    rows = rows_for(40)
    assert len(client._split_batch(OnlineBatch.of_rows("user", rows))) == 1
    assert client.write_batch(OnlineBatch.of_rows("user", rows)) == 40
    store = RedisOnlineStore(redis_url, redis_prefix)
    assert sorted(map(repr, store.scan())) == sorted(map(repr, rows))


def test_fan_out_read_matches_a_single_store(namespace: str, ray_cluster: Any, home: Path) -> None:
    handles = start_shards(memory_settings(3, home), namespace)
    client = OnlineFeatureClient(handles, credential=platform_credential(home))
    rows = rows_for(200) + rows_for(50, view="item")
    assert client.write(rows) == 250
    per_shard = [
        ray_cluster.get(h.scan.remote(credential=platform_credential(home))) for h in handles
    ]
    assert all(len(s) > 30 for s in per_shard) and sum(map(len, per_shard)) == 250

    entities = [{"user_id": i} for i in random.Random(1).sample(range(300), 120)]
    ttls = {"user": None, "item": timedelta(days=1)}
    now = T0 + timedelta(hours=1)
    got = client.get_online_features({"user": ["b", "a"], "item": ["a"]}, entities, ttls, now=now)

    reference = MemoryOnlineStore()
    reference.write(rows)
    direct = OnlineFeatureClient(None, direct_store=reference)
    want = direct.get_online_features({"user": ["b", "a"], "item": ["a"]}, entities, ttls, now=now)
    assert got == want
    views = {"user": ["b", "a"], "item": ["a"]}
    awaited = client.get_online_features_async(views, entities, ttls, now=now)
    assert asyncio.run(awaited) == want  # the event-loop path: shard calls awaited
    one = [{"user_id": 7}]  # one entity: each view's request goes whole to its shard
    awaited = client.get_online_features_async(views, one, ttls, now=now)
    assert asyncio.run(awaited) == direct.get_online_features(views, one, ttls, now=now)
    assert got["metadata"]["feature_names"] == ["user:b", "user:a", "item:a"]
    user_a = got["results"][1]
    assert user_a["values"] == [e["user_id"] if e["user_id"] < 200 else None for e in entities]
    assert FeatureStatus.NOT_FOUND in user_a["statuses"]


def test_reshard_moves_only_changed_owners_without_loss(
    namespace: str, ray_cluster: Any, home: Path
) -> None:
    five = start_shards(memory_settings(5, home), namespace)
    three = five[:3]
    client = OnlineFeatureClient(three, credential=platform_credential(home))
    client.write(rows_for(300))
    before = {
        h: {
            r.entity_key
            for r in ray_cluster.get(h.scan.remote(credential=platform_credential(home)))
        }
        for h in three
    }

    moved = client.reshard(three, five)
    assert 60 < moved < 180
    after = [
        {r.entity_key for r in ray_cluster.get(h.scan.remote(credential=platform_credential(home)))}
        for h in five
    ]
    for i, h in enumerate(three):
        assert after[i] <= before[h]  # old shards only lose keys
    assert sum(map(len, after)) == 300 and len(set().union(*after)) == 300
    assert client.reshard(five, five) == 0

    assert client.reshard(five, five[3:]) == 300 - len(after[3]) - len(after[4])
    res = client.get_online_features(
        {"user": ["a"]}, [{"user_id": i} for i in range(300)], {"user": None}
    )
    assert res["results"][0]["values"] == list(range(300))
    assert all(
        ray_cluster.get(h.scan.remote(credential=platform_credential(home))) == [] for h in five[:3]
    )


def test_authorize_hook_is_called_and_can_refuse() -> None:
    calls: list[tuple[str, list[str]]] = []

    def authorize(permission: str, refs: Any) -> None:
        calls.append((permission, list(refs)))
        if "user:secret" in refs:
            raise PermissionDeniedError("no", details={"feature": "user:secret"})

    client = OnlineFeatureClient(None, direct_store=MemoryOnlineStore(), authorize=authorize)
    client.write(rows_for(1))
    client.get_online_features({"user": ["a"]}, [{"user_id": 0}], {})
    with pytest.raises(PermissionDeniedError):
        client.get_online_features({"user": ["a", "secret"]}, [{"user_id": 0}], {})
    assert calls[:2] == [("features:write", ["user"]), ("features:read", ["user:a"])]


def durable_settings(backend: str, tmp_path: Path, redis_url: str, prefix: str) -> EntaiSettings:
    """Two shards on a backend that keeps acknowledged writes: Redis or SQLite files."""
    if backend == "redis":
        store: Any = RedisOnlineStoreSettings(num_shards=2, url=redis_url, key_prefix=prefix)
        return load_settings(home=tmp_path, online_store=store)
    return load_settings(home=tmp_path, online_store={"num_shards": 2}).resolved()


def direct_store(settings: EntaiSettings, redis_url: str, prefix: str) -> OnlineStore:
    """What a serving replica reads in place: the Redis prefix, or the shards' files."""
    store = settings.online_store
    if isinstance(store, SqliteOnlineStoreSettings):
        ids = [shard_name(i) for i in range(store.num_shards)]
        return SqliteOnlineStore(sqlite_directory(store), ids)
    return RedisOnlineStore(redis_url, prefix)


@pytest.mark.chaos  # kills a shard actor: `make test-chaos` (CI runs it)
@pytest.mark.parametrize("backend", ["redis", "sqlite"])
@pytest.mark.parametrize("task_retries", [-1, 0], ids=["ray-retries", "client-retries"])
def test_killing_a_shard_mid_stream_loses_no_acknowledged_write(
    task_retries: int,
    backend: str,
    namespace: str,
    ray_cluster: Any,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    settings = durable_settings(backend, tmp_path, redis_url, redis_prefix)
    if task_retries == -1:  # as deployed: Ray re-sends calls in flight to the restarted actor
        handles = start_shards(settings, namespace)
    else:  # without Ray's task retries, the client's own retry must cover the kill
        handles = [
            FeatureShardActor.options(
                name=shard_name(i), namespace=namespace, max_restarts=-1, num_cpus=0
            ).remote(shard_name(i), settings.online_store, callers=settings.resolved())
            for i in range(2)
        ]
    client = OnlineFeatureClient(handles, credential=service_of(settings))
    acked: list[int] = []
    errors: list[BaseException] = []
    kill_at, total = 40, 240

    def writer() -> None:
        try:
            for batch in range(total):
                rows = [
                    FeatureRow("user", entity_key({"user_id": batch * 4 + j}), {"a": batch}, T0, T0)
                    for j in range(4)
                ]
                client.write(rows)
                acked.append(batch)
        except BaseException as exc:  # noqa: BLE001 - recorded, asserted in the main thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    while len(acked) < kill_at and thread.is_alive():
        threading.Event().wait(0.005)
    victim_pid = ray_cluster.get(handles[0].describe.remote())["pid"]
    ray_cluster.kill(handles[0], no_restart=False)
    thread.join(timeout=300)
    assert not errors, errors
    assert len(acked) == total and acked[-1] > kill_at  # the stream went on past the kill

    keys = [{"user_id": i} for i in range(total * 4)]
    want = [i // 4 for i in range(total * 4)]
    via_shards = client.get_online_features({"user": ["a"]}, keys, {"user": None})
    assert via_shards["results"][0]["values"] == want
    # This process reads the backend in place (a serving replica's path): no actor hop.
    direct = OnlineFeatureClient(
        handles,
        direct_store=direct_store(settings, redis_url, redis_prefix),
        credential=service_of(settings),
    )
    assert direct.get_online_features({"user": ["a"]}, keys, {"user": None}) == via_shards
    awaited = direct.get_online_features_async({"user": ["a"]}, keys, {"user": None})
    assert asyncio.run(awaited) == via_shards  # the direct read, on the event loop
    assert ray_cluster.get(handles[0].describe.remote())["pid"] != victim_pid  # it restarted

    # Both shards killed once more with no write in flight: what they serve after the
    # restart is what they had acknowledged, read back from the backend.
    pids = [i["pid"] for i in ray_cluster.get([h.describe.remote() for h in handles])]
    for handle in handles:
        ray_cluster.kill(handle, no_restart=False)
    again = client.get_online_features({"user": ["a"]}, keys, {"user": None})
    assert again["results"][0]["values"] == want
    assert [i["pid"] for i in ray_cluster.get([h.describe.remote() for h in handles])] != pids
