"""Capacity of one FeatureShard actor: online reads/s and written rows/s, with references.

For the sizing table of docs/operations.md (section 8). One shard actor per backend
(memory, Redis write-through), driven at saturation (``--in-flight`` calls outstanding,
as many Ingress replicas and writers would keep it), next to a reference doing the
same work in one process with no platform around it:

* reads: 100-entity batches (and 1-entity reads, the predict path) of 5 float features;
  the Redis reference is a raw redis-py pipeline of HGETALL for the same 100 keys, the
  memory reference a dict lookup of the same keys;
* writes: batches of ``--rows-per-write`` rows with newer timestamps each time (so
  last-write-wins applies every row); the Redis reference pipelines HSET of the same
  fields and values (no last-write-wins check), the memory reference assigns into a dict
  after the same timestamp comparison;
* Redis direct: the read path the Ingress uses with Redis (the client reads Redis from
  its own process, no actor hop), 100 entities, one caller.

Cases run interleaved in rounds (shuffled order each round) so they share the machine's
load; each figure is the median over rounds. Usage:
``.venv/bin/python bench/capacity.py [--small]``. The last line is JSON; ``ratio`` is
entai's cost over the reference's (reference rate / entai rate) for the 100-entity read
through a Redis-backed shard, and ``ratios`` gives it for every case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray
import redis
from online_read import FEATURES, TTLS, VIEW, make_rows

from entai.actors.backends import RedisOnlineStore
from entai.actors.features import OnlineFeatureClient, start_shards
from entai.actors.services import platform_credential
from entai.shared.features import FeatureRow
from entai.shared.settings import (
    MemoryOnlineStoreSettings,
    RedisOnlineStoreSettings,
    load_settings,
)

TTL = TTLS[VIEW]
Submit = Callable[[int], Any]  # call number -> ObjectRef of one actor call
Run = Callable[[int], None]  # call number -> one reference call, in this process


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick smoke run")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--in-flight", type=int, default=8, help="outstanding calls per shard")
    parser.add_argument("--rows-per-write", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def saturate(submit: Submit, calls: int, in_flight: int) -> float:
    """Calls/s of one actor kept ``in_flight`` calls busy until ``calls`` completed."""
    start = time.perf_counter()
    pending = [submit(i) for i in range(min(in_flight, calls))]
    sent = len(pending)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        ray.get(ready)  # surfaces a failed call
        if sent < calls:
            pending.append(submit(sent))
            sent += 1
    return calls / (time.perf_counter() - start)


def serial(run: Run, calls: int) -> float:
    """Calls/s of ``run`` called back to back in this process."""
    start = time.perf_counter()
    for i in range(calls):
        run(i)
    return calls / (time.perf_counter() - start)


def newer_batches(rows: list[FeatureRow], count: int, size: int) -> list[list[FeatureRow]]:
    """``count`` batches of ``size`` rows, each batch a microsecond newer than the last."""
    batches = []
    for b in range(count):
        step = timedelta(microseconds=b + 1)
        picked = rows[(b * size) % len(rows) :][:size] or rows[:size]
        batches.append(
            [
                dataclasses.replace(r, event_ts=r.event_ts + step, created_ts=r.created_ts + step)
                for r in picked
            ]
        )
    return batches


class DictStore:
    """The memory reference: latest row per key in a dict, last-write-wins by timestamps."""

    def __init__(self, rows: list[FeatureRow]) -> None:
        self.rows = {r.entity_key: r for r in rows}

    def write(self, batch: list[FeatureRow]) -> int:
        applied = 0
        for row in batch:
            old = self.rows.get(row.entity_key)
            if old is None or (row.event_ts, row.created_ts) > (old.event_ts, old.created_ts):
                self.rows[row.entity_key] = row
                applied += 1
        return applied

    def read(self, keys: list[str]) -> list[list[Any]]:
        return [[self.rows[k].values[f] for f in FEATURES] for k in keys]


def main() -> None:
    args = parse_args()
    small = args.small
    n_entities = 1_000 if small else 10_000
    read_calls, write_calls = (100, 20) if small else (600, 60)
    rounds = 2 if small else args.rounds
    rng = random.Random(args.seed)
    prefix = f"entai-bench:{uuid.uuid4().hex[:8]}"
    ref_prefix = prefix + "-ref"
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
    try:
        redis_settings = load_settings(
            online_store=RedisOnlineStoreSettings(
                num_shards=1, url=args.redis_url, key_prefix=prefix
            )
        )
        mem_settings = load_settings(online_store=MemoryOnlineStoreSettings(num_shards=1))
        (redis_shard,) = start_shards(redis_settings, namespace)
        (mem_shard,) = start_shards(mem_settings, namespace + "-mem")
        handles = [redis_shard, mem_shard]
        credential = platform_credential(redis_settings, "bench")  # both share one home
        direct = OnlineFeatureClient(
            [redis_shard],
            direct_store=RedisOnlineStore(args.redis_url, prefix),
            credential=credential,
        )

        rows = make_rows(n_entities, rng)
        for i in range(0, n_entities, 1_000):
            ray.get([s.write.remote(rows[i : i + 1_000], credential=credential) for s in handles])
        reference_dict = DictStore(rows)
        keys = [r.entity_key for r in rows]

        # Inputs drawn before timing: the same keys for entai and its reference
        # (make_rows gives row i the entity user_id=i).
        draws = read_calls * rounds
        ids_100 = [rng.sample(range(n_entities), 100) for _ in range(draws)]
        batches_100 = [[keys[i] for i in ids] for ids in ids_100]
        singles = [[rng.choice(keys)] for _ in range(draws)]
        names_100 = [[f"{prefix}:{VIEW}:{k}" for k in b] for b in batches_100]
        entities_100 = [[{"user_id": i} for i in ids] for ids in ids_100]
        writes = newer_batches(rows, write_calls * rounds * 2, args.rows_per_write)
        entai_writes, ref_writes = writes[0::2], writes[1::2]
        ref_payloads = [
            [(f"{ref_prefix}:{VIEW}:{r.entity_key}", _hash_fields(r)) for r in batch]
            for batch in ref_writes
        ]
        for shard in handles:  # every key the reads ask for is there
            first = ray.get(shard.read.remote(VIEW, batches_100[0], FEATURES, ttl=TTL, now=_now()))
            assert {str(s) for s in first.statuses[0]} == {"PRESENT"}, first.statuses[0][:3]
        got = direct.get_online_features({VIEW: FEATURES}, entities_100[0], TTLS)
        assert set(got["results"][0]["statuses"]) == {"PRESENT"}

        def shard_read(shard: Any, key_sets: list[list[str]], r: int) -> Submit:
            base = r * read_calls
            return lambda i: shard.read.remote(
                VIEW, key_sets[base + i], FEATURES, ttl=TTL, now=_now()
            )

        def shard_write(shard: Any, r: int) -> Submit:
            base = r * write_calls
            return lambda i: shard.write.remote(entai_writes[base + i], credential=credential)

        def raw_read(r: int) -> Run:
            def run(i: int) -> None:
                with raw.pipeline(transaction=False) as pipe:
                    for name in names_100[r * read_calls + i]:
                        pipe.hgetall(name)
                    pipe.execute()

            return run

        def raw_write(r: int) -> Run:
            def run(i: int) -> None:
                with raw.pipeline(transaction=False) as pipe:
                    for name, mapping in ref_payloads[r * write_calls + i]:
                        pipe.hset(name, mapping=mapping)
                    pipe.execute()

            return run

        flight = args.in_flight
        cases: dict[str, tuple[str, Callable[[int], float]]] = {
            "redis_shard_read_100": (
                "reads",
                lambda r: saturate(shard_read(redis_shard, batches_100, r), read_calls, flight),
            ),
            "redis_shard_read_1": (
                "reads",
                lambda r: saturate(shard_read(redis_shard, singles, r), read_calls, flight),
            ),
            "redis_direct_read_100": (
                "reads",
                lambda r: serial(
                    lambda i: direct.get_online_features(
                        {VIEW: FEATURES}, entities_100[r * read_calls + i], TTLS
                    ),
                    read_calls,
                ),
            ),
            "raw_redis_read_100": ("reads", lambda r: serial(raw_read(r), read_calls)),
            "memory_shard_read_100": (
                "reads",
                lambda r: saturate(shard_read(mem_shard, batches_100, r), read_calls, flight),
            ),
            "memory_shard_read_1": (
                "reads",
                lambda r: saturate(shard_read(mem_shard, singles, r), read_calls, flight),
            ),
            "dict_read_100": (
                "reads",
                lambda r: serial(
                    lambda i: reference_dict.read(batches_100[r * read_calls + i]), read_calls
                ),
            ),
            "redis_shard_write": (
                "rows",
                lambda r: (
                    saturate(shard_write(redis_shard, r), write_calls, flight) * args.rows_per_write
                ),
            ),
            "raw_redis_write": (
                "rows",
                lambda r: serial(raw_write(r), write_calls) * args.rows_per_write,
            ),
            "memory_shard_write": (
                "rows",
                lambda r: (
                    saturate(shard_write(mem_shard, r), write_calls, flight) * args.rows_per_write
                ),
            ),
            "dict_write": (
                "rows",
                lambda r: (
                    serial(
                        lambda i: reference_dict.write(ref_writes[r * write_calls + i]), write_calls
                    )
                    * args.rows_per_write
                ),
            ),
        }
        rates: dict[str, list[float]] = {name: [] for name in cases}
        order = list(cases)
        for r in range(rounds):
            rng.shuffle(order)
            for name in order:
                rates[name].append(cases[name][1](r))
        load_after = os.getloadavg()

        figures = {
            name: {
                "per_s": round(statistics.median(values), 1),
                "unit": cases[name][0],
                "rounds": [round(v, 1) for v in values],
            }
            for name, values in rates.items()
        }

        def cost_ratio(entai: str, reference: str) -> float:
            return round(figures[reference]["per_s"] / figures[entai]["per_s"], 2)

        ratios = {
            "redis_shard_read_100": cost_ratio("redis_shard_read_100", "raw_redis_read_100"),
            "redis_direct_read_100": cost_ratio("redis_direct_read_100", "raw_redis_read_100"),
            "memory_shard_read_100": cost_ratio("memory_shard_read_100", "dict_read_100"),
            "redis_shard_write": cost_ratio("redis_shard_write", "raw_redis_write"),
            "memory_shard_write": cost_ratio("memory_shard_write", "dict_write"),
        }
        print(f"capacity of one FeatureShard actor, {rounds} rounds (median), {flight} in flight")
        print(f"{n_entities} entities x {len(FEATURES)} float features; reads of 100 (and 1)")
        print(f"entities, writes of {args.rows_per_write} rows; {read_calls} reads and")
        print(f"{write_calls} writes per case and round")
        print(f"load average before {load_before}, after {load_after} (2 shared cores)")
        print(f"{'case':24} {'per second':>12}  unit")
        for name, fig in figures.items():
            print(f"{name:24} {fig['per_s']:12,.1f}  {fig['unit']}")
        print("cost over the reference (reference rate / entai rate):")
        for name, value in ratios.items():
            print(f"  {name:24} {value:6.2f}x")
        summary = {
            "bench": "capacity",
            "small": small,
            "rounds": rounds,
            "in_flight": flight,
            "entities": n_entities,
            "rows_per_write": args.rows_per_write,
            "load_before": load_before,
            "load_after": load_after,
            "figures": {
                name: {"per_s": f["per_s"], "unit": f["unit"]} for name, f in figures.items()
            },
            "ratios": ratios,
            "ratio": ratios["redis_shard_read_100"],
        }
        print(json.dumps(summary))
    finally:
        for handle in handles:
            ray.kill(handle, no_restart=True)
        ray.shutdown()
        for match in (f"{prefix}:*", f"{ref_prefix}:*"):
            stale = list(raw.scan_iter(match=match, count=1_000))
            for i in range(0, len(stale), 1_000):
                raw.delete(*stale[i : i + 1_000])
        raw.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _hash_fields(row: FeatureRow) -> dict[str, Any]:
    """What entai stores for a row (timestamps and JSON values), as plain HSET fields."""
    return {
        "@e": int(row.event_ts.timestamp() * 1e6),
        "@c": int(row.created_ts.timestamp() * 1e6),
        **{name: json.dumps(value) for name, value in row.values.items()},
    }


if __name__ == "__main__":
    main()
