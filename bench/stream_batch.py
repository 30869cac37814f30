"""Per-micro-batch cost of one StreamConsumer: in-process, on Redis, no Ray.

The stream worker's own work with nothing else on the cores: the freshness bench's
events (view events of 10,000 users, published through ``publish_events`` with the
demo's contract) are consumed by one :class:`StreamConsumer` feeding the demo's five
stream views, offline only (no online store: the shards are Ray actors; with
``--online-memory`` the online rows go to an in-process memory store, with
``--online-redis`` to the Redis online store written from this process, as a shard
or a Redis direct write does). ``--warm``
batches first (they fill the lake, so history reads have something to read), then
``--batches`` timed ones of ``--size`` events each, wall and CPU time per batch.
``--profile N`` prints the N costliest functions (cProfile, cumulative) of the timed
batches. Redis keys under a per-run prefix, deleted at the end.

    PYTHONPATH=. .venv/bin/python bench/stream_batch.py --size 250 --batches 10
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import redis

from bench.freshness import make_stream, stamp
from entai.actors.backends import RedisOnlineStore
from entai.actors.bus import RedisStreamBus
from entai.actors.features import OnlineFeatureClient
from entai.demo import features as demo
from entai.demo.contracts import EVENTS_CONTRACT
from entai.pipelines.features import StreamConsumer, publish_events
from entai.shared.data import Lake
from entai.shared.features import Definitions, MemoryOnlineStore

KEY = b"bench-stream-batch-key-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=250, help="events per micro-batch")
    parser.add_argument("--warm", type=int, default=20, help="untimed batches first")
    parser.add_argument("--batches", type=int, default=10, help="timed batches")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest calls")
    parser.add_argument("--mirror-rows", type=int, default=2_000_000)
    parser.add_argument(
        "--online-memory", action="store_true", help="online writes to an in-process store"
    )
    parser.add_argument(
        "--online-redis",
        action="store_true",
        help="online writes to the Redis online store, from this process (as a shard does)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    total = args.size * (args.warm + args.batches)
    stream_args = argparse.Namespace(
        rate=total, seconds=1.0, seed=7, sample_every=10, batch=args.size
    )
    batches = make_stream(stream_args, 0).batches
    prefix = f"bench-sb-{uuid.uuid4().hex[:8]}:"
    bus = RedisStreamBus(args.redis_url, prefix)
    views = [v for v in Definitions.from_module(demo.__name__).views.values()]
    walls: list[float] = []
    cpus: list[float] = []
    profiler = cProfile.Profile()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            consumer = StreamConsumer(
                bus,
                EVENTS_CONTRACT,
                lake=Lake(str(Path(tmp) / "lake")),
                consumer="bench-0",
                views=views,
                batch_size=args.size,
                block_s=0.05,
                mirror_rows=args.mirror_rows,
                online=online_client(args, prefix),
            )
            for i, batch in enumerate(batches):
                publish_events(bus, EVENTS_CONTRACT, stamp(batch), hmac_key=KEY)
                timed = i >= args.warm
                wall, cpu = time.perf_counter(), time.process_time()
                if timed and args.profile:
                    profiler.enable()
                report = consumer.step()
                if timed and args.profile:
                    profiler.disable()
                if timed:
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                assert report is not None and report.events == len(batch), report
    finally:
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        bus.close()
    if args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
    print(
        json.dumps(
            {
                "bench": "stream_batch",
                "size": args.size,
                "warm": args.warm,
                "batches": args.batches,
                "mirror_rows": args.mirror_rows,
                "online": "memory"
                if args.online_memory
                else "redis"
                if args.online_redis
                else None,
                "wall_ms_median": round(float(np.median(walls)) * 1e3, 1),
                "cpu_ms_median": round(float(np.median(cpus)) * 1e3, 1),
                "events_per_s": round(args.size / float(np.median(walls)), 1),
            }
        )
    )


def online_client(args: argparse.Namespace, prefix: str) -> OnlineFeatureClient | None:
    """The online store the consumer writes to, if any: in-process memory, or Redis."""
    if args.online_memory:
        return OnlineFeatureClient(None, direct_store=MemoryOnlineStore())
    if args.online_redis:
        store = RedisOnlineStore(args.redis_url, f"{prefix}online")
        return OnlineFeatureClient(None, direct_store=store)
    return None


if __name__ == "__main__":
    main()
