"""Materialization: raw lake -> offline table + latest value per key online."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from entai.actors.features import OnlineFeatureClient
from entai.demo.features import user_category_stats, user_category_transform, user_recent_views
from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.pipelines.features import materialize
from entai.shared.data import Lake
from entai.shared.features import MemoryOnlineStore, OfflineStore, compute_view, entity_key


def _land_raw(lake: Lake, events: pd.DataFrame) -> None:
    root = Path(lake.raw("events"))
    for day, part in events.groupby(events["event_timestamp"].dt.date):
        out = root / f"date={day}"
        out.mkdir(parents=True)
        part.to_parquet(out / "part-0.parquet", index=False)


def _recent_events(
    days: int, *, n_users: int, n_products: int, seed: int
) -> tuple[datetime, pd.DataFrame]:
    """A generated world's events over the ``days`` days up to today (UTC); its start too."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=days)
    world = EcommerceWorld(
        WorldConfig(n_users=n_users, n_products=n_products, days=days, start=start, seed=seed)
    )
    return start, world.events()


def _landed(
    tmp_path: Path, events: pd.DataFrame
) -> tuple[Lake, MemoryOnlineStore, OnlineFeatureClient]:
    """``events`` landed raw in a lake under ``tmp_path``; an empty memory store, its client."""
    lake = Lake(str(tmp_path / "lake"))
    _land_raw(lake, events)
    store = MemoryOnlineStore()
    return lake, store, OnlineFeatureClient(None, direct_store=store)


def test_offline_table_and_online_latest_match_the_transform(
    ray_cluster: Any, tmp_path: Path
) -> None:
    _, events = _recent_events(20, n_users=60, n_products=40, seed=11)
    lake, _, online = _landed(tmp_path, events)

    (report,) = materialize(
        [user_category_stats], lake=lake, online=online, num_blocks=3, rows_per_block=1_000
    )
    # a re-run over the same raw data (e.g. after a crash) replaces, never duplicates
    (rerun,) = materialize(
        [user_category_stats], lake=lake, online=online, num_blocks=3, rows_per_block=1_000
    )
    assert rerun.offline_rows == report.offline_rows

    expected = user_category_transform(events)
    keys = ["user_id", "category", "event_timestamp"]
    offline = OfflineStore(lake).read(user_category_stats).sort_values(keys).reset_index(drop=True)
    assert report.offline_rows == len(expected) == len(offline)
    expected = expected.sort_values(keys).reset_index(drop=True)
    for column in ("views_7d", "purchases_30d"):
        assert offline[column].astype(float).tolist() == expected[column].astype(float).tolist()

    latest = expected.sort_values("event_timestamp").drop_duplicates(
        ["user_id", "category"], keep="last"
    )
    assert report.online_keys == len(latest)
    assert report.watermark == latest["event_timestamp"].max().to_pydatetime()
    sample = latest.sample(10, random_state=0)
    response = online.get_online_features(
        {"user_category_stats": ["views_30d"]},
        sample[["user_id", "category"]].to_dict("records"),
        {"user_category_stats": None},
    )
    (result,) = response["results"]
    assert result["values"] == sample["views_30d"].astype(float).tolist()
    assert {str(s) for s in result["statuses"]} == {"PRESENT"}
    watermark = lake.read_json(lake.path("manifests", "materialize", "user_category_stats.json"))
    assert watermark["watermark"] == report.watermark.isoformat()


def test_incremental_run_adds_only_new_rows_and_matches_a_full_recompute(
    ray_cluster: Any, tmp_path: Path
) -> None:
    start, events = _recent_events(20, n_users=50, n_products=40, seed=5)
    cut = start + timedelta(days=14)
    lake, _, online = _landed(tmp_path, events[events["event_timestamp"] < cut])
    (first,) = materialize([user_category_stats], lake=lake, online=online)
    _land_raw(lake, events[events["event_timestamp"] >= cut])
    (second,) = materialize([user_category_stats], lake=lake, online=online, incremental=True)
    (third,) = materialize([user_category_stats], lake=lake, online=online, incremental=True)

    full = user_category_transform(events)
    keys = ["user_id", "category", "event_timestamp"]
    offline = OfflineStore(lake).read(user_category_stats)
    assert first.offline_rows + second.offline_rows == len(full) == len(offline)
    assert not offline.duplicated(keys).any()
    assert third.offline_rows == 0 and third.watermark == second.watermark
    merged = full.merge(offline, on=keys, suffixes=("", "_stored"))
    assert (merged["views_7d"].astype(float) == merged["views_7d_stored"].astype(float)).all()
    latest = full.sort_values("event_timestamp").drop_duplicates(
        ["user_id", "category"], keep="last"
    )
    response = online.get_online_features(
        {"user_category_stats": ["purchases_30d"]},
        latest[["user_id", "category"]].to_dict("records"),
        {"user_category_stats": None},
    )
    values = response["results"][0]["values"]
    assert values == latest["purchases_30d"].astype(float).tolist()


def test_check_skew_finds_a_corrupted_online_value(ray_cluster: Any, tmp_path: Path) -> None:
    from entai.pipelines.features import check_skew
    from entai.shared.features import FeatureRow, entity_key

    _, events = _recent_events(20, n_users=40, n_products=30, seed=2)
    lake, store, online = _landed(tmp_path, events)
    materialize([user_category_stats], lake=lake, online=online)

    clean = check_skew(user_category_stats, lake=lake, online=online, sample=25)
    assert clean.ok and clean.sampled == 25

    # a corrupted online value (same event time, later write) must be found
    victim = OfflineStore(lake).read(user_category_stats).iloc[-1]
    key = entity_key({"user_id": int(victim["user_id"]), "category": victim["category"]})
    stored = store.read("user_category_stats", [key], ["views_7d"], ttl=None, now=datetime.now(UTC))
    event_ts = stored.event_timestamps[0]
    assert event_ts is not None
    values = {f: 0.0 for f in user_category_stats.feature_names} | {"views_7d": 999.0}
    store.write([FeatureRow("user_category_stats", key, values, event_ts, datetime.now(UTC))])
    report = check_skew(user_category_stats, lake=lake, online=online, sample=10_000)
    assert report.mismatched == 1 and report.matching == report.sampled - 1
    (example,) = report.examples
    assert example["key"] == {
        "user_id": int(victim["user_id"]),
        "category": victim["category"],
    }
    assert example["online"]["views_7d"] == 999.0


def test_a_list_valued_view_materializes_exactly(ray_cluster: Any, tmp_path: Path) -> None:
    _, events = _recent_events(5, n_users=30, n_products=40, seed=12)
    lake, store, online = _landed(tmp_path, events)

    (report,) = materialize(
        [user_recent_views], lake=lake, online=online, num_blocks=2, rows_per_block=1_000
    )
    expected = compute_view(user_recent_views, events)
    assert report.offline_rows == len(expected)
    keys = ["user_id", "event_timestamp"]
    offline = OfflineStore(lake).read(user_recent_views).sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    assert offline["recent_product_ids"].tolist() == expected["recent_product_ids"].tolist()
    assert offline["recent_categories"].tolist() == expected["recent_categories"].tolist()

    latest = expected.drop_duplicates("user_id", keep="last")
    assert report.online_keys == len(latest)
    users = latest["user_id"].tolist()
    got = store.read(
        user_recent_views.name,
        [entity_key({"user_id": u}) for u in users],
        ["recent_product_ids", "recent_categories"],
        ttl=None,
        now=datetime.now(UTC),
    )
    assert got.values == [
        latest["recent_product_ids"].tolist(),
        latest["recent_categories"].tolist(),
    ]
