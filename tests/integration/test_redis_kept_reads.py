"""A serving replica's kept Redis reads against the real server: a write, an erasure's
delete, a cut listener and a cut read connection never leave a stale copy answering."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from entai.actors.backends import RedisOnlineStore
from entai.shared.features import FeatureRow, FeatureStatus, ReadRequest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
READ = [ReadRequest("v", ["u1"], ["a"], None)]
DEADLINE_S = 2.0


def row(value: int, second: int) -> FeatureRow:
    return FeatureRow("v", "u1", {"a": value}, T0 + timedelta(seconds=second), T0)


async def value(store: RedisOnlineStore) -> object:
    (result,) = await store.read_many_async(READ, NOW)
    return result.values[0][0] if result.statuses[0][0] is FeatureStatus.PRESENT else None


async def until(store: RedisOnlineStore, wanted: object) -> list[object]:
    """Read until the answer is ``wanted`` (yielding to the loop between reads); every
    answer seen, or a failure after DEADLINE_S."""
    seen: list[object] = []
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        seen.append(await value(store))
        if seen[-1] == wanted:
            return seen
        await asyncio.sleep(0.001)
    pytest.fail(f"still {seen[-1]!r} after {DEADLINE_S} s, not {wanted!r}")


async def kept(store: RedisOnlineStore, wanted: object) -> None:
    """Wait for the listener, then read until a read is answered from memory."""
    started = time.monotonic()
    while store.row_cache is None or not store.row_cache.live:
        await value(store)
        await asyncio.sleep(0.01)
        assert time.monotonic() - started < DEADLINE_S, "the listener never subscribed"
    hits = store.row_cache.hits
    for _ in range(3):
        assert await value(store) == wanted
    assert store.row_cache.hits > hits


async def kept_row_and_pool(writer: RedisOnlineStore, reader: RedisOnlineStore) -> Any:
    """Row ``1`` written and kept by ``reader``; the reader's connection pool."""
    writer.write([row(1, 1)])
    await kept(reader, 1)
    return reader._async_client().redis.connection_pool


async def kept_then_fresh(writer: RedisOnlineStore, reader: RedisOnlineStore, n: int) -> None:
    """``n`` is kept again, and the next write replaces it."""
    await kept(reader, n)
    writer.write([row(n + 1, n + 1)])
    await until(reader, n + 1)


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the test's Redis, to cut connections with."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def stores(redis_url: str, redis_prefix: str) -> tuple[RedisOnlineStore, RedisOnlineStore]:
    """(a shard's writer, a replica's reader with kept reads) on one prefix."""
    return RedisOnlineStore(redis_url, redis_prefix), RedisOnlineStore(
        redis_url, redis_prefix, cache_rows=100
    )


def test_a_write_and_an_erasure_replace_the_kept_copy(
    stores: tuple[RedisOnlineStore, RedisOnlineStore],
) -> None:
    writer, reader = stores

    async def scenario() -> None:
        writer.write([row(1, 1)])
        await kept(reader, 1)
        writer.write([row(2, 2)])  # acknowledged before the next read
        assert (await until(reader, 2))[-1] == 2
        await kept(reader, 2)
        writer.delete("v", ["u1"])  # what the online erasure does
        await until(reader, None)
        for _ in range(3):
            assert await value(reader) is None

    asyncio.run(scenario())
    assert reader.row_cache is not None and reader.row_cache.invalidations >= 2


def test_a_row_with_a_list_value_is_read_from_redis_each_time_and_no_answer_is_shared(
    stores: tuple[RedisOnlineStore, RedisOnlineStore],
) -> None:
    # Kept rows are kept decoded; a list value would be one object for every reader.
    writer, reader = stores
    views = [ReadRequest("v", ["u2"], ["a", "views"], None)]

    async def scenario() -> None:
        writer.write([row(1, 1), FeatureRow("v", "u2", {"a": 2, "views": [3, 4]}, T0, T0)])
        await kept(reader, 1)
        assert reader.row_cache is not None
        hits, size = reader.row_cache.hits, len(reader.row_cache)
        for _ in range(3):
            (result,) = await reader.read_many_async(views, NOW)
            assert [column[0] for column in result.values] == [2, [3, 4]]
            result.values[1][0].append(99)  # the caller's answer is its own
        assert (reader.row_cache.hits, len(reader.row_cache)) == (hits, size)
        (first,) = await reader.read_many_async(READ, NOW)
        first.values[0][0] = -1  # a kept scalar row: changing an answer changes no copy
        assert await value(reader) == 1
        assert reader.row_cache.hits > hits

    asyncio.run(scenario())


def test_a_value_that_does_not_decode_fails_its_read_and_is_neither_kept_nor_a_lost_socket(
    stores: tuple[RedisOnlineStore, RedisOnlineStore], admin: redis.Redis, redis_prefix: str
) -> None:
    writer, reader = stores

    async def scenario() -> None:
        pool = await kept_row_and_pool(writer, reader)
        assert reader.row_cache is not None
        seen = reader.row_cache.invalidations
        admin.hset(f"{redis_prefix}:v:u1", "a", b"{not json")
        started = time.monotonic()
        while reader.row_cache.invalidations == seen:
            assert time.monotonic() - started < DEADLINE_S, "no invalidation came"
            await asyncio.sleep(0.001)
        for _ in range(2):  # nothing kept: each read goes to Redis, and fails
            with pytest.raises(ValueError):
                await value(reader)
        assert [c.is_connected for c in pool._available_connections] == [True]
        writer.write([row(2, 2)])
        await kept(reader, 2)

    asyncio.run(scenario())


def test_an_acknowledged_write_is_never_answered_stale_once_its_invalidation_arrived(
    stores: tuple[RedisOnlineStore, RedisOnlineStore],
) -> None:
    # The probe of the listener's socket: a read in the same step of the loop as the
    # arrival of the invalidation goes to Redis instead of answering the old copy.
    writer, reader = stores

    async def scenario() -> None:
        writer.write([row(0, 0)])
        await kept(reader, 0)
        for i in range(1, 30):
            writer.write([row(i, i)])
            started = time.monotonic()
            while reader.row_cache is not None and reader.row_cache.answering():
                assert time.monotonic() - started < DEADLINE_S, "no invalidation came"
            assert await value(reader) == i  # no turn of the loop in between

    asyncio.run(scenario())


def test_a_cut_listener_stops_the_copies_until_it_is_back(
    admin: redis.Redis, stores: tuple[RedisOnlineStore, RedisOnlineStore]
) -> None:
    writer, reader = stores

    async def scenario() -> None:
        writer.write([row(1, 1)])
        await kept(reader, 1)
        rows = reader.row_cache
        assert rows is not None
        first = rows._listener_id
        admin.client_kill_filter(_id=str(first))
        started = time.monotonic()
        while rows.live and rows._listener_id == first:
            await asyncio.sleep(0.001)
            assert time.monotonic() - started < DEADLINE_S, "the cut was not noticed"
        writer.write([row(2, 2)])  # no listener of this reader hears of it
        assert await value(reader) == 2
        await kept_then_fresh(writer, reader, 2)  # under a new listener
        assert rows._listener_id != first

    asyncio.run(scenario())


def test_a_cut_read_connection_leaves_no_copy_unwatched(
    admin: redis.Redis, stores: tuple[RedisOnlineStore, RedisOnlineStore]
) -> None:
    writer, reader = stores

    async def scenario() -> None:
        pool = await kept_row_and_pool(writer, reader)
        connection = await pool.get_connection()
        await connection.send_command("CLIENT", "ID")
        cut = int(await connection.read_response())
        await pool.release(connection)
        admin.client_kill_filter(_id=str(cut))  # the connection the copy was read through
        writer.write([row(2, 2)])
        await until(reader, 2)  # its invalidation does not depend on that connection
        await kept_then_fresh(writer, reader, 2)  # through the reconnected connection

    asyncio.run(scenario())


def test_copies_answer_in_a_process_with_more_descriptors_than_select_takes(
    stores: tuple[RedisOnlineStore, RedisOnlineStore],
) -> None:
    # A replica with many client connections: the listener's descriptor is past 1024.
    writer, reader = stores
    read_end, write_end = os.pipe()
    held = [os.dup(read_end) for _ in range(1100)]
    try:

        async def scenario() -> None:
            writer.write([row(1, 1)])
            await kept(reader, 1)
            writer.write([row(2, 2)])
            await until(reader, 2)

        asyncio.run(scenario())
    finally:
        for fd in (*held, read_end, write_end):
            os.close(fd)


def test_without_cache_rows_nothing_is_tracked(
    stores: tuple[RedisOnlineStore, RedisOnlineStore], redis_url: str, redis_prefix: str
) -> None:
    writer, _ = stores
    plain = RedisOnlineStore(redis_url, redis_prefix)
    clustered = RedisOnlineStore(redis_url, redis_prefix, cluster_mode=True, cache_rows=100)
    writer.write([row(1, 1)])
    assert asyncio.run(value(plain)) == 1
    assert plain.row_cache is None
    assert clustered.cache_rows == 0  # one listener cannot hear every node of a cluster
