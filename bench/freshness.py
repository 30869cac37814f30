"""Event-to-feature freshness on the Redis configuration, next to a minimal Redis loop.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python bench/freshness.py [--seconds 60] [--rate 1000]

Both sides get the same stream, at the same steady rate, in the same batches: view
events of 10,000 users (random products), every ``--sample-every``-th of them a probe:
a view by a user id never used before, so the probe's feature value is missing until
the view of that one event is readable, and present after.

(a) reference: one Python thread on the same Redis doing each event's work by hand.
    Per batch due: a pipeline of ``XADD`` (the "202" is its reply); then, looping:
    ``XREADGROUP`` (up to ``--stream-batch`` entries), per event the user's last 10
    viewed products (kept in a dict) ``HSET`` as JSON, ``XACK``; every ``--poll-ms`` a
    pipeline of ``HGET`` of the outstanding probes' users.
(b) entai: the platform on the Redis configuration (Redis Streams bus, Redis online
    store, one stream worker actor per ``--consumers``, the Serve app): batches
    ``POST /v1/events`` (contract validation, PII masking, publish), the stream worker
    lands them in the lake exactly once and updates the demo's stream feature views;
    every ``--poll-ms`` one ``POST /v1/features/online`` reads ``user_recent_views`` of
    the outstanding probes' users.

A probe's freshness: from the publish reply of its batch (the 202 of its POST; the
``XADD`` pipeline's reply) to the first poll answer holding its product in the user's
recent views. Poll rounds start every ``--poll-ms`` (10 ms) on both sides, so each
figure is high by up to the poll interval plus one read. After the load, the lake's
raw events are counted against the accepted ids: lost and duplicated events.

Redis: ``--redis-url`` (127.0.0.1:6379/0), every key under a per-run prefix, deleted at
the end. The last line is JSON with both sides' p50/p99 and "ratio" = entai p99 /
reference p99 (lower is better); target entai p99 <= 1 s, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import redis

from entai.demo.generator import CATEGORIES

USERS = 10_000
PRODUCTS = 400
PROBE_USERS = 10_000_000
RECENT = 10
SOURCE = "events"
FEATURE = "user_recent_views:recent_product_ids"
POLL_MAX = 500  # probes read per poll round (the oldest outstanding)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration per side")
    parser.add_argument("--rate", type=int, default=1_000, help="events per second")
    parser.add_argument("--batch", type=int, default=50, help="events per POST / XADD pipeline")
    parser.add_argument("--sample-every", type=int, default=10, help="every n-th event a probe")
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--stream-batch", type=int, default=500, help="stream worker batch")
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--drain-s",
        type=float,
        default=240.0,
        help="after the load, wait this long for late probes",
    )
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--skip-reference", action="store_true")
    return parser.parse_args()


@dataclass
class Stream:
    """The events both sides send: batches, and which events are probes."""

    batches: list[list[dict[str, Any]]]
    probes: dict[str, tuple[int, int]]  # event id -> (user, product)

    @property
    def events(self) -> int:
        return sum(len(b) for b in self.batches)


def make_stream(args: argparse.Namespace, tag: int) -> Stream:
    """``rate * seconds`` view events in batches of ``batch``; every n-th a probe."""
    rng = random.Random(args.seed + tag)
    total = int(args.rate * args.seconds)
    events, probes = [], {}
    for i in range(total):
        product = rng.randrange(PRODUCTS)
        user = rng.randrange(USERS)
        event_id = f"ev-{tag}-{i}"
        if i % args.sample_every == 0:
            user = PROBE_USERS + tag * 1_000_000 + i
            probes[event_id] = (user, product)
        events.append(
            {
                "event_id": event_id,
                "user_id": user,
                "user_email": f"user{user}@example.com",
                "product_id": product,
                "category": CATEGORIES[product % len(CATEGORIES)],
                "price": float(5 + product % 50),
                "event_type": "view",
                "search_query": None,
            }
        )
    batches = [events[i : i + args.batch] for i in range(0, total, args.batch)]
    return Stream(batches, probes)


def stamp(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch with event times of now (sent as it happens)."""
    now = datetime.now(UTC).isoformat()
    return [{**e, "event_timestamp": now} for e in batch]


@dataclass
class Tally:
    """What one side measured."""

    published_at: dict[str, float] = field(default_factory=dict)  # probe -> publish reply
    seen_after: dict[str, float] = field(default_factory=dict)  # probe -> seconds
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    errors: int = 0
    late_batches: int = 0
    load_s: float = 0.0
    lost: int = 0
    duplicated: int = 0
    backlog_after: int = 0
    lake_files: int = 0

    def figures(self, stream: Stream) -> dict[str, Any]:
        lat = np.asarray(list(self.seen_after.values())) * 1000
        sent = len(self.accepted)
        out: dict[str, Any] = {
            "events_offered": stream.events,
            "events_accepted": sent,
            "refused": self.refused,
            "errors": self.errors,
            "achieved_rate": round(sent / self.load_s, 1) if self.load_s else 0.0,
            "late_batches": self.late_batches,
            "probes": len(self.published_at),
            "probes_seen": len(self.seen_after),
            "lost": self.lost,
            "duplicated": self.duplicated,
        }
        if len(lat):
            p50, p90, p99 = np.percentile(lat, [50, 90, 99])
            out.update(p50_ms=round(float(p50), 1), p90_ms=round(float(p90), 1),
                       p99_ms=round(float(p99), 1), max_ms=round(float(lat.max()), 1))  # fmt: skip
            out["p99_ms_per_10s"] = self._p99_per_slice(10.0)
        return out

    def _p99_per_slice(self, slice_s: float) -> list[float]:
        """p99 of the probes published in each ``slice_s`` of the load, in order: a
        freshness that grows with the lake shows as a rising series."""
        first = min(self.published_at.values())
        slices: dict[int, list[float]] = {}
        for probe, seconds in self.seen_after.items():
            slices.setdefault(int((self.published_at[probe] - first) // slice_s), []).append(
                seconds * 1000
            )
        return [round(float(np.percentile(v, 99)), 1) for _, v in sorted(slices.items())]


def schedule(args: argparse.Namespace, n: int) -> Iterator[tuple[int, float]]:
    """(batch index, due time on perf_counter) for a steady rate from now."""
    interval = args.batch / args.rate
    start = time.perf_counter()
    for i in range(n):
        yield i, start + i * interval


# --- (a) the reference: one thread, XADD -> XREADGROUP -> HSET -> HGET -----------------


def run_reference(args: argparse.Namespace, stream: Stream, prefix: str) -> Tally:
    client = redis.Redis.from_url(args.redis_url)
    key, group = f"{prefix}:stream", "ref"
    client.xgroup_create(key, group, id="0", mkstream=True)
    tally = Tally()
    recent: dict[int, list[int]] = {}
    handled: Counter[str] = Counter()
    outstanding: dict[str, tuple[int, int]] = {}
    poll_s = args.poll_ms / 1000
    next_poll = 0.0
    pending = iter(schedule(args, len(stream.batches)))
    due = next(pending, None)
    started = time.perf_counter()
    while True:
        now = time.perf_counter()
        if due is not None and now >= due[1]:
            i, at = due
            tally.late_batches += now - at > 0.1
            batch = stamp(stream.batches[i])
            with client.pipeline(transaction=False) as pipe:
                for event in batch:
                    pipe.xadd(key, {"e": json.dumps(event)})
                pipe.execute()
            replied = time.perf_counter()
            for event in batch:
                tally.accepted.append(event["event_id"])
                if event["event_id"] in stream.probes:
                    tally.published_at[event["event_id"]] = replied
                    outstanding[event["event_id"]] = stream.probes[event["event_id"]]
            due = next(pending, None)
            if due is None:
                tally.load_s = replied - started
        # not BLOCK: Redis times blocked reads out on its cron (hz 10), up to 100 ms late
        read = client.xreadgroup(group, "c0", {key: ">"}, count=args.stream_batch)
        entries = read[0][1] if read else []
        if not entries and not outstanding:
            time.sleep(0.0005)
        if entries:
            with client.pipeline(transaction=False) as pipe:
                for _, fields in entries:
                    event = json.loads(fields[b"e"])
                    handled[event["event_id"]] += 1
                    views = recent.setdefault(event["user_id"], [])
                    views.insert(0, event["product_id"])
                    del views[RECENT:]
                    pipe.hset(f"{prefix}:u:{event['user_id']}", "recent", json.dumps(views))
                pipe.xack(key, group, *[entry_id for entry_id, _ in entries])
                pipe.execute()
        now = time.perf_counter()
        if outstanding and now >= next_poll:
            next_poll = now + poll_s
            ids = list(outstanding)[:POLL_MAX]  # the oldest first
            with client.pipeline(transaction=False) as pipe:
                for event_id in ids:
                    pipe.hget(f"{prefix}:u:{outstanding[event_id][0]}", "recent")
                values = pipe.execute()
            answered = time.perf_counter()
            for event_id, value in zip(ids, values, strict=True):
                if value is not None and outstanding[event_id][1] in json.loads(value):
                    tally.seen_after[event_id] = answered - tally.published_at[event_id]
                    del outstanding[event_id]
        if due is None and not outstanding:
            break
        if due is None and time.perf_counter() - started > args.seconds + args.drain_s:
            break
    client.close()
    tally.lost = len(set(tally.accepted) - set(handled))
    tally.duplicated = sum(n > 1 for n in handled.values())
    return tally


# --- (b) entai on the Redis configuration -----------------------------------------------


async def entai_load(args: argparse.Namespace, stream: Stream, url: str, token: str) -> Tally:
    import aiohttp

    tally = Tally()
    headers = {"Authorization": f"Bearer {token}"}
    outstanding: dict[str, tuple[int, int]] = {}
    done_sending = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=30.0)
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def post(batch: list[dict[str, Any]]) -> None:
            body = {"source": SOURCE, "events": batch}
            async with client.post(f"{url}/v1/events", json=body, headers=headers) as r:
                await r.read()
                replied = time.perf_counter()
            if r.status == 429:
                tally.refused += len(batch)
                return
            if r.status != 202:
                tally.errors += len(batch)
                return
            for event in batch:
                tally.accepted.append(event["event_id"])
                if event["event_id"] in stream.probes:
                    tally.published_at[event["event_id"]] = replied
                    outstanding[event["event_id"]] = stream.probes[event["event_id"]]

        async def send() -> None:
            started = time.perf_counter()
            posts = []
            for i, at in schedule(args, len(stream.batches)):
                wait = at - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                tally.late_batches += -wait > 0.1
                posts.append(asyncio.create_task(post(stamp(stream.batches[i]))))
            await asyncio.gather(*posts)
            tally.load_s = time.perf_counter() - started
            done_sending.set()

        async def poll() -> None:
            give_up = time.perf_counter() + args.seconds + args.drain_s
            while not (done_sending.is_set() and not outstanding):
                if time.perf_counter() > give_up:
                    return
                round_start = time.perf_counter()
                ids = list(outstanding)[:POLL_MAX]  # the oldest first
                if ids:
                    users = [outstanding[e][0] for e in ids]
                    body = {"features": [FEATURE], "entities": {"user_id": users}}
                    async with client.post(
                        f"{url}/v1/features/online", json=body, headers=headers
                    ) as r:
                        answer = await r.json()
                    answered = time.perf_counter()
                    if r.status != 200:
                        raise RuntimeError(f"feature read failed: {r.status} {answer}")
                    values = answer["results"][0]["values"]
                    for event_id, value in zip(ids, values, strict=True):
                        if value is not None and outstanding[event_id][1] in value:
                            tally.seen_after[event_id] = answered - tally.published_at[event_id]
                            del outstanding[event_id]
                rest = args.poll_ms / 1000 - (time.perf_counter() - round_start)
                await asyncio.sleep(max(rest, 0.0))

        await asyncio.gather(send(), poll())
    return tally


def _propensity() -> Any:
    """A small propensity model: the app's main model must have a champion to start."""
    import xgboost as xgb

    from entai.demo import features as demo

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(demo.MODEL_FEATURES)))
    data = xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int), feature_names=list(demo.MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 2}, data, 4)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def run_entai(args: argparse.Namespace, stream: Stream, prefix: str, work: Path) -> Tally:
    import pyarrow.parquet as pq
    import ray
    from _serving import champion, model_registry
    from ray import serve

    from entai.actors.bus import bus_from_settings
    from entai.actors.features import start_shards
    from entai.actors.governance import start_governance
    from entai.demo import features as demo
    from entai.deployments.app import AppArgs, build_app
    from entai.pipelines.features import start_stream_workers, wait_for_backlog
    from entai.shared.settings import load_settings

    port = _free_port()
    contract = "entai.demo.contracts:EVENTS_CONTRACT"
    settings = load_settings(
        home=work / "home",
        lake={"root": str(work / "lake")},
        online_store={
            "type": "redis",
            "num_shards": 2,
            "url": args.redis_url,
            "key_prefix": prefix,
        },
        serve={"port": port},
        ray={"namespace": f"bench-fresh-{uuid.uuid4().hex[:8]}"},
        security={"hmac_key": "bench-freshness-key-0123456789abcdef"},
        streams={
            SOURCE: {
                "contract": contract,
                "definitions_module": demo.__name__,
                "consumers": args.consumers,
                "batch_size": args.stream_batch,
                "block_s": 0.05,
                "max_backlog": 1_000_000,
            }
        },
    ).resolved()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace=settings.ray.namespace)  # fmt: skip
    try:
        ns = settings.ray.namespace
        governance = start_governance(settings, ns)
        ray.get(governance.__ray_ready__.remote(), timeout=120)
        admin = Path(settings.security.token_file).read_text().strip()
        start_shards(settings, ns)
        champion(model_registry(settings), "bench_model", _propensity())
        workers = start_stream_workers(settings, ns)
        ray.get([w.__ray_ready__.remote() for w in workers.values()], timeout=120)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = AppArgs(
            model_name="bench_model",
            feature_service=demo.purchase_propensity.name,
            definitions_module=demo.__name__,
            settings=settings,
            shadow=False,
            event_contracts={SOURCE: contract},
        )
        serve.run(build_app(app), name="entai", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/healthz")
        warm = make_stream(argparse.Namespace(**{**vars(args), "seconds": 2.0}), tag=99)
        asyncio.run(entai_load(args, warm, url, admin))  # warm-up: first files, views, routes
        tally = asyncio.run(entai_load(args, stream, url, admin))
        bus = bus_from_settings(settings)
        tally.backlog_after = wait_for_backlog(bus, SOURCE, timeout_s=args.drain_s)
        files = sorted((work / "lake" / "raw" / SOURCE).rglob("*.parquet"))
        landed = Counter(
            i for f in files for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()
        )
        ours = {e for b in stream.batches for e in (x["event_id"] for x in b)}
        mine = Counter({i: n for i, n in landed.items() if i in ours})
        tally.lost = len(set(tally.accepted) - set(mine))
        tally.duplicated = sum(n > 1 for n in mine.values())
        tally.lake_files = len(files)
        serve.shutdown()
        return tally
    finally:
        ray.shutdown()


def _cleanup(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1_000))
        for i in range(0, len(keys), 1_000):
            client.delete(*keys[i : i + 1_000])
        return len(keys)
    finally:
        client.close()


def main() -> None:
    args = parse_args()
    prefix = f"entai-bench-fresh:{uuid.uuid4().hex[:8]}"
    load_before = os.getloadavg()
    print(f"load {load_before} on {os.cpu_count()} cores; {args.rate} events/s for "
          f"{args.seconds} s in batches of {args.batch}; every {args.sample_every}-th event "
          f"a probe; polls every {args.poll_ms} ms")  # fmt: skip
    results: dict[str, Any] = {}
    try:
        if not args.skip_reference:
            ref_stream = make_stream(args, tag=1)
            ref = run_reference(args, ref_stream, f"{prefix}:ref")
            results["reference"] = ref.figures(ref_stream)
            print(f"reference (XADD -> XREADGROUP -> HSET -> HGET): {results['reference']}")
        stream = make_stream(args, tag=2)
        with tempfile.TemporaryDirectory(prefix="entai-bench-fresh-") as tmp:
            tally = run_entai(args, stream, prefix, Path(tmp))
        results["entai"] = {
            **tally.figures(stream),
            "backlog_after": tally.backlog_after,
            "lake_files": tally.lake_files,
        }
        print(f"entai (POST /v1/events -> stream worker -> /v1/features/online): "
              f"{results['entai']}")  # fmt: skip
    finally:
        removed = _cleanup(args.redis_url, prefix)
        print(f"deleted {removed} Redis keys under {prefix}")
    summary: dict[str, Any] = {
        "bench": "freshness",
        "rate": args.rate,
        "seconds": args.seconds,
        "batch": args.batch,
        "sample_every": args.sample_every,
        "poll_ms": args.poll_ms,
        "consumers": args.consumers,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        **results,
    }
    entai_p99 = results["entai"].get("p99_ms")
    ref_p99 = results.get("reference", {}).get("p99_ms")
    if entai_p99 is not None:
        summary["p99_ms"] = entai_p99
        summary["target_met"] = (
            entai_p99 <= 1000
            and results["entai"]["lost"] == 0
            and results["entai"]["duplicated"] == 0
            and results["entai"]["probes_seen"] == results["entai"]["probes"]
        )
    if entai_p99 is not None and ref_p99:
        summary["ratio"] = round(entai_p99 / ref_p99, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
