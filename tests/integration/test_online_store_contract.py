"""One contract, every backend: the same tests run on the memory, SQLite and Redis stores."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis

from entai.actors.backends import RedisOnlineStore, SqliteOnlineStore
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.features import (
    FeatureRow,
    FeatureStatus,
    MemoryOnlineStore,
    OnlineBatch,
    OnlineStore,
    ReadRequest,
    ReadResult,
    micros,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P, N = FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND
NV, OLD = FeatureStatus.NULL_VALUE, FeatureStatus.OUTSIDE_MAX_AGE


def row(key: str, ev: float, cr: float = 0, view: str = "v", **values: object) -> FeatureRow:
    return FeatureRow(view, key, values, T0 + timedelta(seconds=ev), T0 + timedelta(seconds=cr))


@pytest.fixture(params=["memory", "sqlite", "sqlite-3-files", "redis", "redis-cluster-mode"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "memory":
        yield MemoryOnlineStore()
        return
    if request.param.startswith("sqlite"):
        ids = ["s0", "s1", "s2"] if request.param.endswith("files") else ["s0"]
        sqlite_store = SqliteOnlineStore(tmp_path / "online", ids)
        yield sqlite_store
        sqlite_store.close()
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    redis_store = RedisOnlineStore(url, prefix, cluster_mode=request.param.endswith("mode"))
    yield redis_store
    redis_store.close()


def test_values_keep_their_types(store: OnlineStore) -> None:
    values = {"i": 3, "f": 0.1, "big": 2**62, "s": 'héllo "q"', "t": True, "n": None, "z": 0.0}
    assert store.write([row("k", 1, **values)]) == 1
    res = store.read("v", ["k"], list(values), ttl=None, now=T0)
    got = [col[0] for col in res.values]
    assert got == list(values.values())
    assert [type(g) for g in got] == [type(v) for v in values.values()]
    assert [s[0] for s in res.statuses] == [P, P, P, P, P, NV, P]
    assert res.event_timestamps == [T0 + timedelta(seconds=1)]


def test_statuses_ttl_boundary_and_entity_order(store: OnlineStore) -> None:
    store.write([row("a", 0, x=1.5, y=None), row("b", -10, x=2.0, y="s")])
    now = T0 + timedelta(seconds=5)
    res = store.read("v", ["zz", "b", "a"], ["x", "y", "nope"], ttl=timedelta(seconds=5), now=now)
    assert res.statuses == [[N, OLD, P], [N, OLD, NV], [N, OLD, N]]
    assert res.values == [[None, None, 1.5], [None, None, None], [None, None, None]]
    assert res.event_timestamps == [None, T0 - timedelta(seconds=10), T0]
    later = now + timedelta(microseconds=1)
    assert store.read("v", ["a"], ["x"], ttl=timedelta(seconds=5), now=later).statuses == [[OLD]]
    assert store.read("w", ["a"], ["x"], ttl=None, now=now).statuses == [[N]]


def test_last_write_wins_whatever_the_order(store: OnlineStore) -> None:
    rows = [
        row(f"k{k}", ev, cr, x=ev * 10 + cr) for k in range(5) for ev in range(4) for cr in range(3)
    ]
    random.Random(7).shuffle(rows)
    applied = sum(store.write(rows[i : i + 7]) for i in range(0, len(rows), 7))
    assert 5 <= applied < len(rows)
    res = store.read("v", [f"k{k}" for k in range(5)], ["x"], ttl=None, now=T0)
    assert res.values == [[32] * 5]
    assert res.event_timestamps == [T0 + timedelta(seconds=3)] * 5


def test_equal_version_is_idempotent_and_microseconds_count(store: OnlineStore) -> None:
    assert store.write([row("k", 1, 1, x=1)]) == 1
    assert store.write([row("k", 1, 1, x=2)]) == 0
    assert store.write([row("k", 1, 0.999999, x=3)]) == 0
    assert store.write([row("k", 1, 1.000001, x=4)]) == 1
    assert store.write([row("k", 0.999999, 9, x=5)]) == 0
    assert store.read("v", ["k"], ["x"], ttl=None, now=T0).values == [[4]]


def test_list_values_come_back_exact_and_last_write_wins(store: OnlineStore) -> None:
    recent = {"ids": [3, 1, 2**62, -4], "tags": ["é", 'q"', ""], "empty": [], "none": None}
    assert store.write([row("k", 2, **recent)]) == 1
    assert store.write([row("k", 1, ids=[9], tags=["late"], empty=[1], none=[1])]) == 0
    numpy_row = row("n", 1, ids=np.array([5, 6]), tags=("a",), empty=[], none=None)
    assert store.write([numpy_row]) == 1
    res = store.read("v", ["k", "n", "zz"], list(recent), ttl=None, now=T0)
    assert res.values == [
        [[3, 1, 2**62, -4], [5, 6], None],
        [["é", 'q"', ""], ["a"], None],
        [[], [], None],
        [None, None, None],
    ]
    assert all(type(v) is list for v in (res.values[0][0], res.values[1][1], res.values[2][0]))
    assert [s[0] for s in res.statuses] == [P, P, P, NV]
    scanned = {r.entity_key: dict(r.values) for r in store.scan("v")}
    assert scanned["k"] == recent


def test_write_replaces_the_whole_row(store: OnlineStore) -> None:
    store.write([row("k", 1, x=1, y=2)])
    store.write([row("k", 2, x=3)])
    res = store.read("v", ["k"], ["x", "y"], ttl=None, now=T0)
    assert res.values == [[3], [None]] and res.statuses == [[P], [N]]


def test_concurrent_shuffled_writers(store: OnlineStore) -> None:
    rows = [
        row(f"k{k}", ev, cr, x=ev * 100 + cr)
        for k in range(20)
        for ev in range(10)
        for cr in range(3)
    ]

    def writer(seed: int) -> None:
        mine = rows[:]
        random.Random(seed).shuffle(mine)
        for i in range(0, len(mine), 5):
            store.write(mine[i : i + 5])

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res = store.read("v", [f"k{k}" for k in range(20)], ["x"], ttl=None, now=T0)
    assert res.values == [[902] * 20]


def test_delete_and_scan(store: OnlineStore) -> None:
    store.write([row("a", 1, x=1), row("b|c", 1, x=2), row("a", 1, view="w", z=None)])
    got = {(r.view, r.entity_key, tuple(r.values.items())) for r in store.scan()}
    assert got == {("v", "a", (("x", 1),)), ("v", "b|c", (("x", 2),)), ("w", "a", (("z", None),))}
    scanned = next(iter(store.scan("w")))
    assert scanned.event_ts == T0 + timedelta(seconds=1) and scanned.created_ts == T0
    assert store.delete(None, ["a"]) == 2
    assert store.delete("v", ["b|c", "b|c", "missing"]) == 1
    assert list(store.scan()) == []
    assert store.read("v", ["a"], ["x"], ttl=None, now=T0).statuses == [[N]]


def test_a_tombstone_drops_late_writes_of_erased_keys_until_it_expires(
    store: OnlineStore,
) -> None:
    erased_at = T0 + timedelta(seconds=10)
    week = timedelta(days=7) + (datetime.now(UTC) - T0)  # still in force today
    store.write([row("user_id=i:3", 5, x=1), row("user_id=i:4", 5, x=1)])
    assert store.tombstone(["user_id=i:3", "old=i:1"], erased_at, week) == 2
    assert store.delete(None, ["user_id=i:3"]) == 1
    late = [
        row("user_id=i:3", 10, x=2),  # dated at the erasure: dropped
        row('category=s:"b"|user_id=i:3', 3, x=3),  # a composite key of the subject
        row("user_id=i:3", 9, 99, view="w", y=4),  # any view
        row("user_id=i:33", 1, x=5),  # not the subject
        row("user_id=i:4", 6, x=6),  # not the subject
    ]
    assert store.write(late) == 2
    assert store.tombstoned_writes == 3  # type: ignore[attr-defined]
    keys = ["user_id=i:3", 'category=s:"b"|user_id=i:3', "user_id=i:33", "user_id=i:4"]
    assert store.read("v", keys, ["x"], ttl=None, now=T0).statuses == [[N, N, P, P]]
    assert store.read("w", ["user_id=i:3"], ["y"], ttl=None, now=T0).statuses == [[N]]
    assert {r.entity_key for r in store.scan()} == {"user_id=i:33", "user_id=i:4"}

    assert store.write([row("user_id=i:3", 11, x=7)]) == 1  # new activity after it
    assert store.read("v", ["user_id=i:3"], ["x"], ttl=None, now=T0).values == [[7]]

    # A tombstone whose retention is over drops nothing (and is not written at all).
    assert store.tombstone(["old=i:2"], T0, timedelta(days=1)) == 0
    assert store.write([row("old=i:2", 1, x=8)]) == 1


def test_empty_reads_and_writes(store: OnlineStore) -> None:
    assert store.write([]) == 0
    res = store.read("v", [], ["x", "y"], ttl=None, now=T0)
    assert res.values == [[], []] and res.event_timestamps == []
    store.write([row("k", 1, x=1)])
    no_features = store.read("v", ["k", "nope"], [], ttl=None, now=T0)
    assert no_features.values == [] and no_features.event_timestamps == [
        T0 + timedelta(seconds=1),
        None,
    ]


def _state(store: OnlineStore) -> dict[tuple[str, str], tuple[object, ...]]:
    return {
        (r.view, r.entity_key): (r.event_ts, r.created_ts, sorted(r.values.items(), key=str))
        for r in store.scan()
    }


def test_a_batch_write_is_the_rows_written_in_order(store: OnlineStore) -> None:
    # Keys repeat within a batch and across batches, in shuffled order, with every
    # kind of value; more rows than one Redis script call takes (500).
    rng = random.Random(11)
    keys = [f"user_id=i:{k}" for k in range(40)] + [
        f'category=s:"c{k}"|user_id=i:7' for k in range(4)
    ]
    values = [1, -(2**62), 0.5, 1e-300, 'é "q"\n', "", True, False, None, [1, 2], ["a", "b"], []]
    rows = [
        FeatureRow(
            "v",
            rng.choice(keys),
            {"x": rng.choice(values), "y": rng.choice(values)},
            T0 + timedelta(seconds=rng.randrange(5), microseconds=rng.randrange(2)),
            T0 + timedelta(seconds=rng.randrange(3)),
        )
        for _ in range(1_300)
    ]
    reference = MemoryOnlineStore()
    applied = reference.write(rows)
    written = sum(
        store.write_batch(OnlineBatch.of_rows("v", rows[i : i + 600]))
        for i in range(0, len(rows), 600)
    )
    assert written == applied  # rows that replaced the stored row, as one by one
    assert 44 <= applied < len(rows)
    assert _state(store) == _state(reference)
    res = store.read("v", keys, ["x", "y"], ttl=None, now=T0)
    want = reference.read("v", keys, ["x", "y"], ttl=None, now=T0)
    assert res == want
    # A batch replayed changes nothing; an older one neither.
    assert store.write_batch(OnlineBatch.of_rows("v", rows[:600])) == 0
    assert _state(store) == _state(reference)


def test_a_batch_write_keeps_tombstones_and_replaces_whole_rows(store: OnlineStore) -> None:
    erased_at = T0 + timedelta(seconds=10)
    week = timedelta(days=7) + (datetime.now(UTC) - T0)
    store.write([row("user_id=i:4", 1, x=1, y=1)])
    store.tombstone(["user_id=i:3"], erased_at, week)
    batch = OnlineBatch(
        "v",
        ["user_id=i:3", 'category=s:"b"|user_id=i:3', "user_id=i:4", "user_id=i:3"],
        ("x",),
        [[1, 2, 3, 4]],
        [micros(T0 + timedelta(seconds=s)) for s in (9, 10, 2, 11)],
        [0, 0, 0, 0],
    )
    assert store.write_batch(batch) == 2
    assert store.tombstoned_writes == 2  # type: ignore[attr-defined]
    res = store.read("v", ["user_id=i:3", "user_id=i:4"], ["x", "y"], ttl=None, now=T0)
    assert res.values == [[4, 3], [None, None]]
    assert res.statuses == [[P, P], [N, N]]  # the batch's row replaced y's row whole
    empty = OnlineBatch("v", [], ("x",), [[]], [], [])
    assert store.write_batch(empty) == 0


def test_redis_rejects_unsupported_values(redis_url: str, redis_prefix: str) -> None:
    redis_store = RedisOnlineStore(redis_url, redis_prefix)
    with pytest.raises(InvalidInputError, match="v:x"):
        redis_store.write([row("k", 1, x=object())])


def test_redis_unreachable_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailableError):
        RedisOnlineStore("redis://127.0.0.1:1/0", "p")


def test_redis_reloads_a_flushed_script(redis_url: str, redis_prefix: str) -> None:
    redis_store = RedisOnlineStore(redis_url, redis_prefix)
    redis_store._client.script_flush()
    assert redis_store.write([row("k", 1, x=1)]) == 1
    redis_store._client.script_flush()
    res = redis_store.read("v", ["k", "k2"], ["x"], ttl=None, now=T0)
    assert res.values == [[1, None]]


@pytest.mark.parametrize("cluster_mode", [False, True])
def test_redis_event_loop_read_of_many_views_equals_the_reads(
    redis_url: str, redis_prefix: str, cluster_mode: bool
) -> None:
    redis_store = RedisOnlineStore(redis_url, redis_prefix, cluster_mode=cluster_mode)
    redis_store.write([row(f"k{i}", -i, x=i, y=None) for i in range(4)])
    redis_store.write([row("k1", 0, view="w", z="s")])
    requests = [
        ReadRequest("v", ["k0", "nope", "k3", "k2"], ["x", "y", "absent"], timedelta(seconds=2)),
        ReadRequest("w", ["k1"], ["z"], None),  # one key: a plain HMGET in the pipeline
        ReadRequest("w", [], ["z"], None),
    ]
    want = [redis_store.read(r.view, r.keys, r.features, ttl=r.ttl, now=T0) for r in requests]
    assert want[0].statuses[0] == [P, N, OLD, P] and want[1].values == [["s"]]
    assert asyncio.run(redis_store.read_many_async(requests, T0)) == want
    redis_store._client.script_flush()  # the event-loop path reloads the scripts too
    assert asyncio.run(redis_store.read_many_async(requests, T0)) == want
    assert asyncio.run(redis_store.read_many_async(requests[1:2], T0)) == want[1:2]


def test_redis_event_loop_read_survives_a_connection_redis_closed(
    redis_url: str, redis_prefix: str
) -> None:
    """The pooled connection is killed server-side between two reads (as a Redis
    restart leaves it): the second read reconnects and answers, it does not fail."""
    redis_store = RedisOnlineStore(redis_url, redis_prefix)
    redis_store.write([row("k", 1, x=7)])
    requests = [ReadRequest("v", ["k"], ["x"], None), ReadRequest("v", ["k", "n"], ["x"], None)]
    want = [redis_store.read(r.view, r.keys, r.features, ttl=r.ttl, now=T0) for r in requests]

    async def read_kill_read() -> list[list[ReadResult]]:
        first = await redis_store.read_many_async(requests, T0)
        client = redis_store._async_client().redis
        pooled = await client.client_id()  # the one connection the read used and pooled
        assert redis_store._client.client_kill_filter(_id=pooled) == 1
        return [first, await redis_store.read_many_async(requests, T0)]

    assert asyncio.run(read_kill_read()) == [want, want]


def test_redis_reads_are_packed_as_redis_py_packs_them() -> None:
    from redis.asyncio.connection import Connection

    from entai.actors.backends._redis_store import _packed

    fields = ("@e", "x", "héllo", "y")
    key = "p:v:user_id=i:1|name=s:é"
    hmget = (key, *fields)
    script = ("ab12", 3, "k1", "k2", "k3", *fields)
    assert _packed((False, hmget)) == b"".join(Connection().pack_command("HMGET", *hmget))
    assert _packed((True, script)) == b"".join(Connection().pack_command("EVALSHA", *script))


def _process_writer(url: str, prefix: str, seed: int) -> None:
    rows = [
        row(f"k{k}", ev, cr, x=ev * 100 + cr)
        for k in range(30)
        for ev in range(10)
        for cr in range(3)
    ]
    random.Random(seed).shuffle(rows)
    store = RedisOnlineStore(url, prefix)
    for i in range(0, len(rows), 9):
        store.write(rows[i : i + 9])


def test_redis_last_write_wins_across_processes(redis_url: str, redis_prefix: str) -> None:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_process_writer, args=(redis_url, redis_prefix, s)) for s in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    res = RedisOnlineStore(redis_url, redis_prefix).read(
        "v", [f"k{k}" for k in range(30)], ["x"], ttl=None, now=T0
    )
    assert res.values == [[902] * 30]


def test_redis_batch_writes_see_a_tombstone_another_writer_made(
    redis_url: str, redis_prefix: str
) -> None:
    # A batch goes without its rows' tombstone keys while no tombstone is live; the
    # marker a tombstone raises (from any connection) makes the next call check them.
    writer, eraser = (
        RedisOnlineStore(redis_url, redis_prefix),
        RedisOnlineStore(redis_url, redis_prefix),
    )
    keys = ["user_id=i:1", 'category=s:"b"|user_id=i:1', "user_id=i:2"]

    def batch(second: int) -> OnlineBatch:
        stamp = micros(T0 + timedelta(seconds=second))
        return OnlineBatch("v", keys, ("x",), [[second] * 3], [stamp] * 3, [0] * 3)

    assert writer.write_batch(batch(1)) == 3
    forever = timedelta(days=3650)
    assert eraser.tombstone(["user_id=i:1"], T0 + timedelta(seconds=5), forever) == 1
    eraser.delete(None, ["user_id=i:1", 'category=s:"b"|user_id=i:1'])
    assert writer.write_batch(batch(4)) == 1  # the subject's two rows dropped
    assert writer.tombstoned_writes == 2
    got = writer.read("v", keys, ["x"], ttl=None, now=T0)
    assert got.values == [[None, None, 4]]
    # The marker lives as long as the longest-lived tombstone: a shorter one later
    # does not cut it short.
    marker = f"{redis_prefix}:@tombstone:live"
    client = redis.Redis.from_url(redis_url)
    long_ttl = client.pttl(marker)
    assert (
        long_ttl
        > (forever - (datetime.now(UTC) - T0) - timedelta(minutes=1)).total_seconds() * 1000
    )
    eraser.tombstone(["user_id=i:9"], datetime.now(UTC), timedelta(minutes=5))
    assert client.pttl(marker) >= long_ttl - 60_000
    assert {r.entity_key for r in writer.scan()} == {"user_id=i:2"}  # scans skip the marker
    writer.close()
    eraser.close()
    client.close()
