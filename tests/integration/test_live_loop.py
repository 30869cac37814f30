"""The live loop over HTTP, embedded and on Redis: a user's views change what they are offered.

One platform per configuration (the Serve app of :mod:`test_serve_http` with a gated
ranker, as :mod:`test_serve_recommend`, and the stream workers ``entai up`` starts):

* embedded: the in-cluster queue bus and the SQLite online store (the laptop defaults);
* redis: Redis Streams and the Redis online store, under a key prefix of this run.

A user views three products of a category they visited little through
``POST /v1/events`` (with a batch of other users' events): every event lands in the lake
exactly once, the user's ``user_recent_views`` online become those three products
(read back through ``/v1/features/online``), and the next ``/v1/recommend`` answer,
asked WITHOUT any context, changes to exactly what the champion ranks with those stored
views in place of its index's: the service reads the store itself (the app's
``ranker_recent_views``, and the answer says ``recent_views_source: "store"``). The
three products are chosen, with the champion called directly, among those whose views
change its answer. Given the same views as context too (``context.recent_views``, as a
front end may send them), the answer is the same: a view in both counts once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
from gated_ranker import WORLD, GatedRanker, train_gated_ranker
from test_serve_http import ModelTokens, Platform, deploy_platform, teardown_platform

from entai.demo.generator import EcommerceWorld

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

RANKER = "live_ranker"
CONTRACT = "entai.demo.contracts:EVENTS_CONTRACT"
PORTS = {"embedded": 8141, "redis": 8142}
USER = 3
RECENT = "user_recent_views:recent_product_ids"
trained: dict[str, Any] = {}


def _train_and_promote(settings: Any, registry: Any, tokens: ModelTokens) -> None:
    from entai.pipelines.features import start_stream_workers

    trained["ranker"] = train_gated_ranker(settings, RANKER, tokens)
    trained["workers"] = list(start_stream_workers(settings).values())


@pytest.fixture(scope="module", params=["embedded", "redis"])
def live(
    request: pytest.FixtureRequest,
    ray_cluster: Any,
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    run_id: str,
) -> Iterator[Platform]:
    prefix = f"entai-test:{run_id}:live:{uuid.uuid4().hex[:6]}"
    overrides: dict[str, Any] = {
        "streams": {
            "events": {
                "contract": CONTRACT,
                "definitions_module": "entai.demo.features",
                "batch_size": 100,
                "block_s": 0.2,
            }
        }
    }
    if request.param == "redis":
        overrides["online_store"] = {
            "type": "redis",
            "num_shards": 2,
            "url": redis_url,
            "key_prefix": prefix,
        }
    deployed = deploy_platform(
        tmp_path_factory.mktemp(f"live-{request.param}"),
        port=PORTS[request.param],
        ranker_model=RANKER,
        ranker_recent_views=RECENT,
        settings_overrides=overrides,
        before_serve=_train_and_promote,
    )
    deployed.actors.extend(trained.pop("workers"))
    yield deployed
    teardown_platform(deployed)
    if request.param == "redis":
        from redis_keys import delete_redis_keys

        delete_redis_keys(redis_url, f"{prefix}*")


def _wait(what: str, done: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def _lake_ids(platform: Platform) -> Counter[str]:
    files = sorted((Path(platform.settings.lake.root) / "raw" / "events").rglob("*.parquet"))
    return Counter(
        i for f in files for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()
    )


def _recent_views(platform: Platform, client: httpx.Client) -> list[int]:
    answer = client.post(
        "/v1/features/online",
        json={"features": [RECENT], "entities": {"user_id": [USER]}},
        headers=platform.headers(platform.analyst),
    )
    assert answer.status_code == 200, answer.text
    value = answer.json()["results"][0]["values"][0]
    return [] if value is None else [int(v) for v in value]


def _recommend(
    platform: Platform, client: httpx.Client, context: list[int] | None = None
) -> tuple[list[int], str]:
    """USER's items (asked with ``context`` as the session's views, or none) and where
    their older views came from (``store`` or ``index``)."""
    body: dict[str, Any] = {"user_id": USER, "k": 10}
    if context is not None:
        body["context"] = {"recent_views": context}
    answer = client.post(f"/v1/recommend/{RANKER}", json=body, headers=platform.headers())
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["version"] == trained["ranker"].version
    assert got["fallback"] is None, got
    return [i["item_id"] for i in got["items"]], got["recent_views_source"]


def _local(stored: list[int] | None) -> list[int]:
    """What the champion answers USER given ``stored`` as their views from the online
    store (None: the index's views)."""
    ranker: GatedRanker = trained["ranker"]
    return ranker.local(USER, history=stored).items


def _burst(world: EcommerceWorld) -> list[dict[str, Any]]:
    """Three views by USER, just now, of products of a category they visited little,
    chosen so that the champion's answer for them differs from its answer without."""
    events, products = world.events(), world.products()
    mine = events[events["user_id"] == USER]
    visits = mine["category"].value_counts()
    categories = sorted(products["category"].unique(), key=lambda c: (visits.get(c, 0), c))
    without = _local(None)
    chosen: list[int] = []
    category = ""
    for category in categories:
        items = products[products["category"] == category]["product_id"].tolist()
        triples = [items[i : i + 3] for i in range(0, len(items) - 2, 3)]
        chosen = next((t for t in triples if _local(t[::-1]) != without), [])
        if chosen:
            break
    assert chosen, "no three views of one category change the champion's answer"
    template = mine.iloc[0].to_dict()
    now = datetime.now(UTC).replace(microsecond=0)
    tag = uuid.uuid4().int % 10**9
    return [
        {
            **{k: v.item() if hasattr(v, "item") else v for k, v in template.items()},
            "event_id": f"ev-{tag}-{i}",
            "product_id": int(product),
            "category": category,
            "event_type": "view",
            "event_timestamp": (now - timedelta(seconds=3 - i)).isoformat(),
        }
        for i, product in enumerate(chosen)
    ]


def _others(world: EcommerceWorld, n: int) -> list[dict[str, Any]]:
    """``n`` recorded events of other users, as the front end would send them."""
    frame = world.events()
    frame = frame[frame["user_id"] != USER].head(n).copy()
    frame["event_timestamp"] = frame["event_timestamp"].map(pd.Timestamp.isoformat)
    return [
        {k: None if pd.isna(v) else v.item() if hasattr(v, "item") else v for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def test_posted_views_land_once_and_change_online_features_and_the_next_recommendations(
    live: Platform,
) -> None:
    world = EcommerceWorld(WORLD)
    burst, others = _burst(world), _others(world, 60)
    with httpx.Client(base_url=live.url, timeout=60.0) as client:
        assert _recent_views(live, client) == []
        before, before_source = _recommend(live, client)
        for batch in (others[:30], burst, others[30:]):
            posted = client.post(
                "/v1/events",
                json={"source": "events", "events": batch},
                headers=live.headers(live.admin),
            )
            assert posted.status_code == 202, posted.text
            assert (posted.json()["accepted"], posted.json()["rejected"]) == (len(batch), 0)

        sent = {e["event_id"] for e in [*burst, *others]}
        _wait("every posted event in the lake", lambda: sent <= set(_lake_ids(live)))
        views = [e["product_id"] for e in reversed(burst)]  # most recent first
        _wait("the burst in user_recent_views", lambda: _recent_views(live, client) == views)
        after, after_source = _recommend(live, client)  # no context: the store's views
        with_context, context_source = _recommend(live, client, views)
        time.sleep(1.0)  # a redelivery, were there one, would have landed by now
        counts = _lake_ids(live)

    assert {i: counts[i] for i in sent} == dict.fromkeys(sent, 1)
    assert (before, before_source) == (_local(None), "index")  # nothing stored yet
    assert after_source == context_source == "store"
    assert after == _local(views) != before
    assert with_context == after  # the context's views are the stored ones: counted once
