"""Right to erasure end to end on Ray: a subject ingested, materialized, predicted and
monitored is erased everywhere; the lake, Redis, the SQLite shard files and the actors
keep no trace of it; other subjects are untouched; datasets and models that used it are
listed."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from credentials import service_of

from entai.actors.backends import configure_mlflow
from entai.actors.features import OnlineFeatureClient, start_shards
from entai.actors.governance import start_governance
from entai.actors.monitoring import start_drift_monitor
from entai.demo import features
from entai.demo.contracts import EVENTS_CONTRACT
from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.pipelines.erasure import erase
from entai.pipelines.features import get_historical_features, materialize
from entai.pipelines.ingest import ingest_file
from entai.shared.data import DataContract, Lake, pseudonym
from entai.shared.features import Definitions, FeatureRow, OfflineStore, entity_key
from entai.shared.governance import ErasureRequest, Subject, lake_traces
from entai.shared.monitoring import ReferenceProfile
from entai.shared.settings import EntaiSettings, load_settings

KEY = b"ray-erasure-key-0123456789abcdef"
DATASET = "ts-erasure"
PROFILES = DataContract.from_dict(
    {
        "source": "profiles",
        "purpose": "test",
        "retention_days": 30,
        "event_time": "ts",
        "columns": [
            {"name": "user_id", "type": "int64", "pii": "identifier", "masking": "hmac"},
            {"name": "city", "type": "string"},
            {"name": "ts", "type": "timestamp"},
        ],
    }
)


def _settings(tmp: Path, backend: str, redis_url: str, prefix: str) -> EntaiSettings:
    store: dict[str, Any] = {"type": backend, "num_shards": 2}
    if backend == "redis":
        store = {"type": "redis", "num_shards": 2, "url": redis_url, "key_prefix": prefix}
    return load_settings(
        home=tmp / "home",
        lake={"root": str(tmp / "lake")},
        online_store=store,
        ray={"namespace": f"erasure-{uuid.uuid4().hex[:8]}"},
        security={"hmac_key": KEY.decode()},
    ).resolved()


def _ingest(settings: EntaiSettings, tmp: Path, subject_id: int) -> pd.DataFrame:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    world = EcommerceWorld(
        WorldConfig(n_users=12, n_products=40, days=20, start=start - timedelta(days=20))
    )
    events = world.events()
    bad = events[events["user_id"].isin([subject_id, subject_id + 1])].head(4).copy()
    bad["category"] = "not-a-category"  # -> quarantine, for the subject and another user
    bad["event_id"] = [f"ev-9{i}-0" for i in range(len(bad))]
    pd.concat([events, bad]).to_parquet(tmp / "events.parquet", index=False)
    root = settings.lake.root
    ingest_file(
        EVENTS_CONTRACT, str(tmp / "events.parquet"), lake_root=root, hmac_key=KEY, progress=False
    )
    users = np.arange(12)
    pd.DataFrame({"user_id": users, "city": "Paris", "ts": pd.Timestamp(start).isoformat()}).to_csv(
        tmp / "profiles.csv", index=False
    )
    ingest_file(PROFILES, str(tmp / "profiles.csv"), lake_root=root, hmac_key=KEY, progress=False)
    return events


def _training_set_and_model(settings: EntaiSettings, events: pd.DataFrame) -> None:
    rows = events[["user_id", "category"]].drop_duplicates().head(30).copy()
    rows["event_timestamp"] = events["event_timestamp"].max()
    get_historical_features(
        rows,
        features.purchase_propensity,
        definitions=Definitions.from_module(features.__name__),
        offline=OfflineStore(Lake(settings.lake.root)),
        save=DATASET,
    )
    client = configure_mlflow(settings.mlflow)
    client.create_registered_model("erasure-model")
    client.create_model_version(
        "erasure-model", source=str(settings.home), tags={"entai.dataset_id": DATASET}
    )


def _monitor(settings: EntaiSettings, keys: dict[int, list[str]]) -> Any:
    import ray

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=500), "prediction": rng.random(500)})
    monitor = start_drift_monitor(settings)
    ray.get(
        monitor.register_model.remote(
            "erasure-model",
            1,
            ReferenceProfile.from_frame(reference).to_dict(),
            feature_columns=["x"],
            window={"count": 10_000, "sample_size": 1000},
            credential=service_of(settings),
        )
    )
    tags = [k for user_keys in keys.values() for k in user_keys]
    batch = {
        "request_id": [f"req-{i}" for i in range(len(tags))],
        "entity_key": tags,
        "x": rng.normal(size=len(tags)).tolist(),
        "prediction": rng.random(len(tags)).tolist(),
    }
    ray.get(monitor.record.remote("erasure-model", "b1", batch, credential=service_of(settings)))
    return monitor


def _prediction_log(settings: EntaiSettings, keys: dict[int, list[str]]) -> None:
    users = [u for u, ks in keys.items() for _ in ks]
    path = Path(settings.lake.root) / "predictions" / "erasure-model" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "request_id": [f"log-{i}" for i in range(len(users))],
                "user_id": pa.array(users, pa.int64()),
                "prediction": np.linspace(0, 1, len(users)),
            }
        ),
        path,
    )


def _online_keys(settings: EntaiSettings, shards: list[Any]) -> list[str]:
    import ray

    return sorted(
        {
            r.entity_key
            for h in shards
            for r in ray.get(h.scan.remote(None, credential=service_of(settings)))
        }
    )


def _redis_dump(redis_url: str, prefix: str) -> dict[bytes, dict[bytes, bytes]]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        names = client.scan_iter(match=f"{prefix}:*")
        return {n: client.hgetall(n) for n in names if b":@tombstone:" not in n}
    finally:
        client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def platform(
    request: pytest.FixtureRequest, ray_cluster: Any, tmp_path: Path, redis_url: str
) -> Iterator[tuple[EntaiSettings, list[Any], str]]:
    prefix = f"entai-test:erasure:{uuid.uuid4().hex[:8]}"
    settings = _settings(tmp_path, request.param, redis_url, prefix)
    shards = start_shards(settings)
    governance = start_governance(settings)
    ray_cluster.get([h.__ray_ready__.remote() for h in [*shards, governance]])
    try:
        yield settings, shards, prefix
    finally:
        from entai.actors.monitoring import ACTOR_NAME

        handles = [*shards, governance]
        with contextlib.suppress(ValueError):
            handles.append(ray_cluster.get_actor(ACTOR_NAME, namespace=settings.ray.namespace))
        for handle in handles:
            ray_cluster.kill(handle, no_restart=True)
        if request.param == "redis":
            import redis

            client = redis.Redis.from_url(redis_url)
            names = list(client.scan_iter(match=f"{prefix}*"))
            if names:
                client.delete(*names)
            client.close()


def test_a_subject_is_erased_everywhere_and_others_are_untouched(
    platform: tuple[EntaiSettings, list[Any], str], tmp_path: Path, redis_url: str
) -> None:
    settings, shards, prefix = platform
    subject_id = 3
    events = _ingest(settings, tmp_path, subject_id)
    lake = Lake(settings.lake.root)
    offline = OfflineStore(lake)
    materialize(
        [features.user_category_stats, features.user_stats],
        lake=lake,
        online=OnlineFeatureClient(shards, credential=service_of(settings)),
        num_blocks=2,
    )
    _training_set_and_model(settings, events)
    by_user = events.groupby("user_id")["category"].unique()
    keys = {u: [entity_key({"user_id": u, "category": c}) for c in by_user[u]] for u in (3, 4, 5)}
    _prediction_log(settings, keys)
    monitor = _monitor(settings, keys)

    subject = Subject.of({"user_id": subject_id}, KEY)
    before_traces = lake_traces(lake, subject)
    assert {p.split("/")[0] for p in before_traces} >= {
        "raw",
        "quarantine",
        "offline",
        "predictions",
        "datasets",
        "monitoring",
    }
    assert any(p.startswith("raw/profiles/") for p in before_traces)  # found by pseudonym
    online_before = _online_keys(settings, shards)
    others_offline = offline.read(features.user_stats).query("user_id != @subject_id")
    others_raw = events[events["user_id"] != subject_id]

    import ray

    admin = settings.security.token_file.read_text().strip()
    receipt = erase(
        settings,
        ErasureRequest({"user_id": subject_id}, "dpo@example.com", "ticket 1"),
        caller=admin,
    )

    statuses = {s.store: s.status for s in receipt.stores}
    assert statuses == {
        "online": "erased",
        "offline": "erased",
        "raw": "erased",
        "quarantine": "erased",
        "predictions": "erased",
        "drift_monitor": "erased",
    }
    assert receipt.complete, receipt.remaining
    assert set(receipt.remaining.values()) == {0}
    assert receipt.retrain_datasets.keys() == {DATASET}
    assert receipt.retrain_models == ("erasure-model/1",)

    # The lake, byte by byte: only the immutable dataset listed for retraining remains.
    tagged = subject.with_tags(keys[subject_id])
    traces = lake_traces(lake, tagged)
    assert {p.split("/")[0] for p in traces} == {"datasets"}
    assert all(p.startswith(f"datasets/{DATASET}/") for p in traces)
    assert pseudonym(subject_id, KEY) not in str(receipt.to_dict())

    # The actors' state: shards, the drift monitor.
    online_after = _online_keys(settings, shards)
    subject_keys = {k for k in online_before if "user_id=i:3" in k.split("|")}
    assert subject_keys and not subject_keys & set(online_after)
    assert sorted(set(online_before) - subject_keys) == online_after
    assert ray.get(monitor.erase.remote(tagged.entity_keys(), credential=service_of(settings))) == 0
    report = ray.get(monitor.report.remote("erasure-model"))
    assert "user_id=i:3" not in str(report)

    # Redis: a SCAN of the whole prefix finds neither the id nor the pseudonym.
    if settings.online_store.type == "redis":
        dump = _redis_dump(redis_url, prefix)
        assert dump, "the other subjects' rows must still be in Redis"
        parts = [n[len(prefix) + 1 :].partition(b":")[2].split(b"|") for n in dump]
        assert not [p for p in parts if b"user_id=i:3" in p]
        assert len(dump) == len(online_after)
        text = b"".join(n + b"".join(v.values()) for n, v in dump.items())
        assert pseudonym(subject_id, KEY).encode() not in text

    # SQLite: no byte of any shard file (or its log) names the subject.
    if settings.online_store.type == "sqlite":
        files = sorted(Path(settings.home, "online").iterdir())
        data = b"".join(p.read_bytes() for p in files)
        assert any(p.suffix == ".sqlite" for p in files) and b"user_id=i:4" in data
        assert not re.search(rb"user_id=i:3(?![0-9])", data)
        assert pseudonym(subject_id, KEY).encode() not in data

    # Other subjects: offline and raw rows intact.
    after = offline.read(features.user_stats)
    pd.testing.assert_frame_equal(
        after.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True),
        others_offline.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True),
    )
    raw = pa.concat_tables(
        pq.read_table(p)
        for p in sorted((Path(settings.lake.root) / "raw" / "events").rglob("*.parquet"))
    )
    assert sorted(raw.column("event_id").to_pylist()) == sorted(others_raw["event_id"])

    # A late write dated before the erasure (a replay) does not bring the subject back;
    # activity after the erasure lands.
    assert {s.store: s.tombstones for s in receipt.stores}["online"] >= 3
    online = OnlineFeatureClient(shards, credential=service_of(settings))
    view = features.user_stats.name
    wanted = {view: ["user_views_7d"]}
    late = datetime.fromisoformat(receipt.started_at) - timedelta(seconds=1)
    subject_key, other_key = entity_key({"user_id": subject_id}), entity_key({"user_id": 4})
    replay = [
        FeatureRow(view, subject_key, {"user_views_7d": 9.0}, late, late),
        FeatureRow(view, other_key, {"user_views_7d": 9.0}, late, late),
    ]
    online.write(replay)
    read = online.get_online_features(wanted, [{"user_id": subject_id}, {"user_id": 4}], {})
    assert read["results"][0]["statuses"] == ["NOT_FOUND", "PRESENT"]
    dropped = sum(d["tombstoned_writes"] for d in ray.get([h.describe.remote() for h in shards]))
    assert dropped == 1
    now = datetime.now(UTC)
    online.write([FeatureRow(view, subject_key, {"user_views_7d": 1.0}, now, now)])
    read = online.get_online_features(wanted, [{"user_id": subject_id}], {})
    assert read["results"][0]["statuses"] == ["PRESENT"]
