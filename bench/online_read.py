"""Online read latency: entai's online store next to a raw redis-py pipeline, one run.

Writes N entities x 5 float features through entai's FeatureShard actors (Redis
write-through, and separately the memory backend), then times, interleaved per
iteration so every case sees the same machine load:

* raw redis-py: a pipeline of HMGET for the same 100 keys (reference), and one HMGET;
* entai, Redis, direct read path (client reads Redis itself): 100 and 1 entities;
* entai, Redis, through the shard actors: 100 and 1 entities;
* entai, memory backend, through the shard actors: 100 and 1 entities;
* entai, SQLite backend (the embedded default): direct read of the shards' files from
  this process (a Serve replica's path), 100 and 1 entities;
* entai direct with a cached-decision ``authorize`` hook (a dict lookup) vs none.

Usage: ``.venv/bin/python bench/online_read.py [--small]``. The last line is JSON;
``ratio`` = entai p99 / raw p99 for the 100-entity read (lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import ray
import redis

from entai.actors.backends import RedisOnlineStore, SqliteOnlineStore
from entai.actors.features import OnlineFeatureClient, shard_name, sqlite_directory, start_shards
from entai.actors.services import platform_credential
from entai.shared.core import PermissionDeniedError
from entai.shared.features import FeatureRow, entity_key
from entai.shared.settings import (
    MemoryOnlineStoreSettings,
    RedisOnlineStoreSettings,
    SqliteOnlineStoreSettings,
    load_settings,
)

VIEW = "user"
FEATURES = [f"f{i}" for i in range(5)]
TTLS = {VIEW: timedelta(days=1)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick smoke run")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--shards", type=int, default=2)
    return parser.parse_args()


def make_rows(n: int, rng: random.Random) -> list[FeatureRow]:
    now = datetime.now(UTC)
    return [
        FeatureRow(VIEW, entity_key({"user_id": i}), {f: rng.random() for f in FEATURES}, now, now)
        for i in range(n)
    ]


def cached_authorize() -> Callable[[str, Sequence[str]], None]:
    """A cached decision, as a governance client would hold per (principal, request)."""
    allowed = {("features:read", tuple(f"{VIEW}:{f}" for f in FEATURES)): True}

    def authorize(permission: str, refs: Sequence[str]) -> None:
        if not allowed.get((permission, tuple(refs)), False):
            raise PermissionDeniedError("not allowed", details={"permission": permission})

    return authorize


def stats(samples_ns: list[int]) -> dict[str, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(p50), 4), "p99_ms": round(float(p99), 4)}


def main() -> None:
    args = parse_args()
    n_entities, iters, warmup = (1_000, 300, 50) if args.small else (10_000, 2_000, 200)
    rng = random.Random(args.seed)
    prefix = f"entai-bench:{uuid.uuid4().hex[:8]}"
    namespace = f"entai-bench-{uuid.uuid4().hex[:8]}"
    load_before = os.getloadavg()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace=namespace,
        log_to_driver=False,
    )
    raw = redis.Redis.from_url(args.redis_url)
    handles: list[Any] = []
    home = tempfile.TemporaryDirectory(prefix="entai-bench-online-")
    try:
        redis_settings = load_settings(
            online_store=RedisOnlineStoreSettings(
                num_shards=args.shards, url=args.redis_url, key_prefix=prefix
            )
        )
        mem_settings = load_settings(online_store=MemoryOnlineStoreSettings(num_shards=args.shards))
        redis_shards = start_shards(redis_settings, namespace)
        mem_shards = start_shards(mem_settings, namespace + "-mem")
        sqlite_settings = load_settings(
            home=home.name, online_store=SqliteOnlineStoreSettings(num_shards=args.shards)
        ).resolved()
        sqlite_shards = start_shards(sqlite_settings, namespace + "-sqlite")
        handles = redis_shards + mem_shards + sqlite_shards
        sqlite_section = sqlite_settings.online_store
        assert isinstance(sqlite_section, SqliteOnlineStoreSettings)
        sqlite_files = SqliteOnlineStore(
            sqlite_directory(sqlite_section), [shard_name(i) for i in range(args.shards)]
        )
        sqlite_credential = platform_credential(sqlite_settings, "bench")
        credential = platform_credential(redis_settings, "bench")  # the memory shards' too
        via_sqlite_shards = OnlineFeatureClient(sqlite_shards, credential=sqlite_credential)
        sqlite_direct = OnlineFeatureClient(
            sqlite_shards, direct_store=sqlite_files, credential=sqlite_credential
        )
        direct_store = RedisOnlineStore(args.redis_url, prefix)
        via_redis_shards = OnlineFeatureClient(redis_shards, credential=credential)
        via_mem_shards = OnlineFeatureClient(mem_shards, credential=credential)
        direct = OnlineFeatureClient(redis_shards, direct_store=direct_store, credential=credential)
        direct_auth = OnlineFeatureClient(
            redis_shards,
            direct_store=direct_store,
            authorize=cached_authorize(),
            credential=credential,
        )

        rows = make_rows(n_entities, rng)
        t0 = time.perf_counter()
        for i in range(0, n_entities, 1_000):
            via_redis_shards.write(rows[i : i + 1_000])
        write_redis_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, n_entities, 1_000):
            via_mem_shards.write(rows[i : i + 1_000])
        write_mem_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, n_entities, 1_000):
            via_sqlite_shards.write(rows[i : i + 1_000])
        write_sqlite_s = time.perf_counter() - t0

        def raw_read(names: list[str]) -> Any:
            with raw.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(name, FEATURES)
                return pipe.execute()

        def entai(client: OnlineFeatureClient) -> Callable[[list[dict[str, int]]], Any]:
            return lambda ents: client.get_online_features({VIEW: FEATURES}, ents, TTLS)

        cases: dict[str, tuple[int, Callable[[Any], Any], str]] = {
            "raw_redis_100": (100, raw_read, "names"),
            "entai_redis_direct_100": (100, entai(direct), "entities"),
            "entai_redis_direct_auth_100": (100, entai(direct_auth), "entities"),
            "entai_redis_actors_100": (100, entai(via_redis_shards), "entities"),
            "entai_memory_actors_100": (100, entai(via_mem_shards), "entities"),
            "entai_sqlite_direct_100": (100, entai(sqlite_direct), "entities"),
            "raw_redis_1": (1, lambda names: raw.hmget(names[0], FEATURES), "names"),
            "entai_redis_direct_1": (1, entai(direct), "entities"),
            "entai_redis_direct_auth_1": (1, entai(direct_auth), "entities"),
            "entai_redis_actors_1": (1, entai(via_redis_shards), "entities"),
            "entai_memory_actors_1": (1, entai(via_mem_shards), "entities"),
            "entai_sqlite_direct_1": (1, entai(sqlite_direct), "entities"),
        }
        samples: dict[str, list[int]] = {name: [] for name in cases}
        order = list(cases)
        for it in range(warmup + iters):
            ids = rng.sample(range(n_entities), 100)
            inputs = {
                "names": [f"{prefix}:{VIEW}:{entity_key({'user_id': i})}" for i in ids],
                "entities": [{"user_id": i} for i in ids],
            }
            rng.shuffle(order)
            for name in order:
                size, fn, kind = cases[name]
                arg = inputs[kind][:size]
                start = time.perf_counter_ns()
                result = fn(arg)
                elapsed = time.perf_counter_ns() - start
                if it >= warmup:
                    samples[name].append(elapsed)
                if it == 0 and kind == "entities":  # sanity: every key was found
                    assert all(s == "PRESENT" for s in result["results"][0]["statuses"]), name

        figures = {name: stats(s) for name, s in samples.items()}
        load_after = os.getloadavg()
        print(f"online read latency, {iters} iterations after {warmup} warm-up, ")
        print(f"{n_entities} entities x {len(FEATURES)} float features, {args.shards} shards")
        print(f"load average before {load_before}, after {load_after} (2 shared cores)")
        print(
            f"write {n_entities} rows: redis via shards {write_redis_s:.2f} s, "
            f"memory via shards {write_mem_s:.2f} s, sqlite via shards {write_sqlite_s:.2f} s"
        )
        print(f"{'case':32} {'p50 ms':>9} {'p99 ms':>9}")
        for name, fig in figures.items():
            print(f"{name:32} {fig['p50_ms']:9.3f} {fig['p99_ms']:9.3f}")

        def ratio(a: str, b: str, key: str) -> float:
            return round(figures[a][key] / figures[b][key], 3)

        auth_100 = ratio("entai_redis_direct_auth_100", "entai_redis_direct_100", "p50_ms") - 1
        auth_1 = ratio("entai_redis_direct_auth_1", "entai_redis_direct_1", "p50_ms") - 1
        p99_ratio = ratio("entai_redis_direct_100", "raw_redis_100", "p99_ms")
        print(
            f"entai/raw p99, 100 entities: {p99_ratio}"
            f" (target <= 1.5); 1 entity p99: {figures['entai_redis_direct_1']['p99_ms']} ms"
            " (target <= 1 ms)"
        )
        print(
            f"authorize overhead on p50: 100 entities {auth_100:+.1%}, 1 entity {auth_1:+.1%}"
            " (target <= 10%)"
        )
        summary = {
            "bench": "online_read",
            "small": args.small,
            "iterations": iters,
            "entities": n_entities,
            "load_before": load_before,
            "load_after": load_after,
            "write_s": {
                "redis_via_shards": round(write_redis_s, 3),
                "memory_via_shards": round(write_mem_s, 3),
                "sqlite_via_shards": round(write_sqlite_s, 3),
            },
            **figures,
            "ratio_p50": ratio("entai_redis_direct_100", "raw_redis_100", "p50_ms"),
            "ratio_1_entity_p99": ratio("entai_redis_direct_1", "raw_redis_1", "p99_ms"),
            "auth_overhead_p50": {"100": round(auth_100, 4), "1": round(auth_1, 4)},
            "ratio": p99_ratio,
        }
        print(json.dumps(summary))
    finally:
        for handle in handles:
            ray.kill(handle, no_restart=True)
        ray.shutdown()
        home.cleanup()
        stale = list(raw.scan_iter(match=f"{prefix}:*", count=1_000))
        for i in range(0, len(stale), 1_000):
            raw.delete(*stale[i : i + 1_000])
        raw.close()


if __name__ == "__main__":
    main()
