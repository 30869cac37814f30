"""Kept Redis reads: a replica's read of one entity, and how soon a write reaches it.

    .venv/bin/python bench/kept_reads.py [--reads 20000] [--writes 2000]

Needs Redis on 127.0.0.1:6379 (its keys under a prefix of their own, deleted after).
One entity's three views, as the predict path reads them, on one event loop:

(a) reference: the same three ``HMGET`` written at once on a ``redis.asyncio``
    connection and read back (what a replica without kept reads pays: one round trip);
(b) entai: ``RedisOnlineStore.read_many_async`` with ``cache_rows`` (the Ingress's
    store in the Redis configuration), warmed, so the reads are answered from memory.

Then the freshness the kept reads give, ``--writes`` times over a kept row: a writer
(another store, as a feature shard) writes a new value and returns (acknowledged), and
"invalidation_us" is how long after the acknowledgement the replica saw Redis's
invalidation waiting on its listener's socket (p50, p99, max; the reader's loop does
not turn meanwhile); then, the row kept again, the writer writes once more and the
reader reads at once, in the same step of its loop: "stale_reads" counts the answers
that were the previous value (the window the module ``_redis_row_cache`` describes).

The last line is JSON; "ratio" = entai's read latency p50 / the reference's (lower is
better).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import redis.asyncio

from entai.actors.backends import RedisOnlineStore
from entai.shared.features import FeatureRow, ReadRequest

URL = "redis://127.0.0.1:6379/0"
VIEWS = ("user_stats", "user_category", "category_stats")
FEATURES = ("a", "b", "c", "d")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(prefix_value: int, second: int) -> list[FeatureRow]:
    values = {f: prefix_value + i for i, f in enumerate(FEATURES)}
    return [FeatureRow(v, "u1", values, T0 + timedelta(seconds=second), T0) for v in VIEWS]


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[int(len(ordered) * 0.99)], 1),
        "max": round(ordered[-1], 1),
    }


async def _reference(prefix: str, reads: int) -> dict[str, float]:
    client = redis.asyncio.Redis.from_url(URL)
    names = [f"{prefix}:{v}:u1" for v in VIEWS]
    latencies = []
    for _ in range(reads):
        started = time.perf_counter()
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(name, ["@e", *FEATURES])
            await pipe.execute()
        latencies.append((time.perf_counter() - started) * 1e6)
    await client.aclose()
    return _quantiles(latencies)


async def _entai(reader: RedisOnlineStore, reads: int) -> dict[str, float]:
    requests = [ReadRequest(v, ["u1"], FEATURES, None) for v in VIEWS]
    now = T0 + timedelta(days=1)
    while reader.row_cache is None or not reader.row_cache.live:
        await reader.read_many_async(requests, now)
        await asyncio.sleep(0.01)
    await reader.read_many_async(requests, now)
    latencies = []
    for _ in range(reads):
        started = time.perf_counter()
        await reader.read_many_async(requests, now)
        latencies.append((time.perf_counter() - started) * 1e6)
    return _quantiles(latencies)


async def _freshness(
    writer: RedisOnlineStore, reader: RedisOnlineStore, writes: int
) -> dict[str, Any]:
    requests = [ReadRequest(VIEWS[0], ["u1"], FEATURES, None)]
    now = T0 + timedelta(days=1)
    rows = reader.row_cache
    assert rows is not None
    stale = 0
    delays = []
    for i in range(1, writes + 1):
        await reader.read_many_async(requests, now)  # kept
        await asyncio.sleep(0.001)
        seen = rows.invalidations
        writer.write(_rows(i * 10, 2 * i))  # returns once Redis acknowledged it
        acknowledged = time.perf_counter()
        # No turn of the loop: the invalidation can only be waiting on the socket.
        while rows.answering() and time.perf_counter() - acknowledged < 1.0:
            pass
        delays.append((time.perf_counter() - acknowledged) * 1e6)
        await asyncio.sleep(0.001)
        assert rows.invalidations > seen, "the copy was not dropped"
        await reader.read_many_async(requests, now)  # kept again
        await asyncio.sleep(0.001)
        writer.write(_rows(i * 10 + 5, 2 * i + 1))
        (result,) = await reader.read_many_async(requests, now)  # at once, same step
        stale += result.values[0][0] != i * 10 + 5
        await asyncio.sleep(0.001)
    return {"writes": writes, "stale_reads": stale, "invalidation_us": _quantiles(delays)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=2_000)
    opts = parser.parse_args()
    prefix = f"entai-bench-kept:{uuid.uuid4().hex[:8]}"
    writer = RedisOnlineStore(URL, prefix)
    reader = RedisOnlineStore(URL, prefix, cache_rows=1000)
    writer.write(_rows(0, 0))

    async def run() -> dict[str, Any]:
        reference = await _reference(prefix, opts.reads)
        entai = await _entai(reader, opts.reads)
        fresh = await _freshness(writer, reader, opts.writes)
        return {"reference_read_us": reference, "entai_read_us": entai, **fresh}

    try:
        figures = asyncio.run(run())
    finally:
        client = redis.Redis.from_url(URL)
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            client.delete(key)
        client.close()
    print(f"reference (one round trip of three HMGET): {figures['reference_read_us']} us")
    print(f"entai (kept reads): {figures['entai_read_us']} us")
    print(f"after a write: {figures['stale_reads']} stale of {figures['writes']} reads at once; "
          f"invalidation seen after {figures['invalidation_us']} us")  # fmt: skip
    figures["ratio"] = round(
        figures["entai_read_us"]["p50"] / figures["reference_read_us"]["p50"], 3
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
