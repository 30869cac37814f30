"""Training sets: local and Ray Data engines agree row for row; saved datasets are immutable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from entai.pipelines.features import get_historical_features
from entai.shared.core import ConflictError, PointInTimeJoinError
from entai.shared.data import Lake
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OfflineStore,
    OnDemandFeatureView,
    ValueType,
    point_in_time_join,
)

USER = Entity("user", ("user_id",))
PLACE = Entity("place", ("country", "city"), ValueType.STRING)
BASE = pd.Timestamp("2024-06-01", tz="UTC")
TS = "datetime64[ns, UTC]"

STATS = FeatureView(
    "user_stats",
    (USER,),
    (Field("score", ValueType.FLOAT64), Field("visits", ValueType.INT64)),
    source="events",
    ttl=timedelta(days=2),
)
WEATHER = FeatureView(
    "weather",
    (PLACE,),
    (
        Field("temp", ValueType.FLOAT64),
        Field("sunny", ValueType.BOOL),
        Field("note", ValueType.STRING),
    ),
    source="weather",
)
BOOST = OnDemandFeatureView(
    "boost",
    request_schema=(Field("factor", ValueType.FLOAT64),),
    sources=(STATS[["score"]],),
    schema=(Field("boosted", ValueType.FLOAT64),),
    transform=lambda df: pd.DataFrame({"boosted": df["score"] * df["factor"]}),
)
SERVICE = FeatureService("ranker", (STATS, WEATHER[["temp", "note"]], BOOST))
DEFS = Definitions(
    entities=[USER, PLACE], views=[STATS, WEATHER], on_demand_views=[BOOST], services=[SERVICE]
)


def hours(values: np.ndarray) -> pd.Series:
    return pd.Series(BASE + pd.to_timedelta(values, unit="h"), dtype=TS)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[OfflineStore, pd.DataFrame]:
    """Adversarial random data: ties, corrections, nulls, keys without history."""
    rng = np.random.default_rng(7)
    store = OfflineStore(Lake(str(tmp_path_factory.mktemp("lake"))))
    n = 3_000
    event = rng.integers(0, 24 * 6, n)
    for batch in np.array_split(np.arange(n), 3):  # three appends, like three runs
        score = np.where(rng.random(len(batch)) < 0.1, np.nan, rng.random(len(batch)))
        store.write(
            STATS,
            pd.DataFrame(
                {
                    "user_id": rng.integers(0, 200, len(batch)),
                    "event_timestamp": hours(event[batch]),
                    "created_timestamp": hours(event[batch] + rng.integers(0, 30, len(batch))),
                    "score": score,
                    "visits": pd.array(rng.integers(0, 9, len(batch)), dtype="Int64"),
                }
            ),
        )
    m = 400
    cities = np.array(["paris", "lyon", "oslo"])
    store.write(
        WEATHER,
        pd.DataFrame(
            {
                "country": rng.choice(["fr", "no"], m),
                "city": rng.choice(cities, m),
                "event_timestamp": hours(rng.integers(0, 24 * 6, m)),
                "created_timestamp": hours(rng.integers(0, 24 * 7, m)),
                "temp": rng.normal(15, 5, m),
                "sunny": rng.random(m) < 0.5,
                "note": rng.choice(["a", "b"], m),
            }
        ),
    )
    k = 1_500
    entity_df = pd.DataFrame(
        {
            "user_id": rng.integers(0, 260, k),  # some users have no history
            "country": rng.choice(["fr", "no", "de"], k),
            "city": rng.choice(cities, k),
            "event_timestamp": hours(rng.integers(-5, 24 * 7, k)).dt.tz_convert("Asia/Tokyo").array,
            "factor": rng.random(k),
            "label": rng.integers(0, 2, k),
        },
        index=rng.permutation(k) + 1000,
    )
    entity_df = pd.concat([entity_df, entity_df.iloc[:50]])  # duplicate rows
    return store, entity_df


@pytest.mark.parametrize(("as_served", "num_partitions"), [(False, 3), (True, 8)])
def test_ray_engine_matches_local_row_for_row(
    ray_cluster: Any, world: tuple[OfflineStore, pd.DataFrame], as_served: bool, num_partitions: int
) -> None:
    store, entity_df = world
    common: dict[str, Any] = {"definitions": DEFS, "offline": store, "as_served": as_served}
    local = get_historical_features(entity_df, SERVICE, **common).to_pandas()
    dist = get_historical_features(
        entity_df, SERVICE, engine="ray", num_partitions=num_partitions, **common
    ).to_pandas()
    pd.testing.assert_frame_equal(local, dist)
    assert local["score"].notna().sum() > 100 and local["temp"].notna().sum() > 100
    assert local["score"].isna().sum() > 100  # ttl, no history and null values all occur
    pd.testing.assert_frame_equal(local[entity_df.columns], entity_df)


def test_local_build_equals_the_join_over_the_whole_history(
    world: tuple[OfflineStore, pd.DataFrame],
) -> None:
    # partition pruning by the entity time range must not lose any winning row
    store, entity_df = world
    got = get_historical_features(
        entity_df,
        ["user_stats:score", "user_stats:visits"],
        definitions=DEFS,
        offline=store,
        full_feature_names=True,
    ).to_pandas()
    full = point_in_time_join(
        entity_df, [(STATS[["score", "visits"]], store.read(STATS))], full_feature_names=True
    )
    pd.testing.assert_frame_equal(got, full)
    assert list(got.columns)[-2:] == ["user_stats__score", "user_stats__visits"]


def test_on_demand_view_is_computed(world: tuple[OfflineStore, pd.DataFrame]) -> None:
    store, entity_df = world
    got = get_historical_features(entity_df, "ranker", definitions=DEFS, offline=store).to_pandas()
    expected = (got["score"] * got["factor"]).to_numpy()
    np.testing.assert_allclose(got["boosted"].to_numpy(), expected, equal_nan=True)


def test_save_writes_an_immutable_dataset_with_manifest(
    ray_cluster: Any, world: tuple[OfflineStore, pd.DataFrame]
) -> None:
    store, entity_df = world
    built = get_historical_features(
        entity_df, SERVICE, definitions=DEFS, offline=store, save="ranker-train-1"
    )
    root = Path(store.lake.datasets("ranker-train-1"))
    manifest = store.lake.read_json(f"{root}/manifest.json")
    assert manifest["dataset_id"] == "ranker-train-1"
    assert manifest["definitions_hash"] == DEFS.content_hash()
    assert manifest["row_counts"]["entity_rows"] == len(entity_df)
    assert manifest["row_counts"]["output_rows"] == len(entity_df)
    assert manifest["row_counts"]["matched_rows"]["user_stats"] == int(
        built.frame["score"].notna().sum()
    )
    assert set(manifest["inputs"]["views"]) == {"user_stats", "weather"}
    assert pq.read_table(root / "data.parquet").equals(built.to_arrow())
    assert built.to_ray_dataset().count() == len(entity_df)
    with pytest.raises(ConflictError, match="ranker-train-1"):
        get_historical_features(
            entity_df, SERVICE, definitions=DEFS, offline=store, save="ranker-train-1"
        )
    again = get_historical_features(entity_df, SERVICE, definitions=DEFS, offline=store)
    assert again.manifest["inputs"] == manifest["inputs"]  # same inputs, same hashes


def test_ray_engine_reports_bad_input_like_local(
    ray_cluster: Any, world: tuple[OfflineStore, pd.DataFrame]
) -> None:
    store, entity_df = world
    naive = entity_df.assign(event_timestamp=entity_df["event_timestamp"].dt.tz_localize(None))
    for engine in ("local", "ray"):
        with pytest.raises(PointInTimeJoinError, match="naive"):
            get_historical_features(
                naive,
                SERVICE,
                definitions=DEFS,
                offline=store,
                engine=engine,  # type: ignore[arg-type]
            )
        with pytest.raises(PointInTimeJoinError, match="user_id"):
            get_historical_features(
                entity_df.assign(user_id=entity_df["user_id"].astype(str)),
                SERVICE,
                definitions=DEFS,
                offline=store,
                engine=engine,  # type: ignore[arg-type]
            )


def test_nanosecond_entity_times_do_not_prune_rows(tmp_path: Path) -> None:
    store = OfflineStore(Lake(str(tmp_path / "lake")))
    t = pd.Timestamp("2024-06-01 10:00:00.123456789", tz="UTC")
    store.write(
        STATS,
        pd.DataFrame(
            {
                "user_id": [1],
                "event_timestamp": [t],
                "score": [1.0],
                "visits": pd.array([1], dtype="Int64"),
            }
        ),
    )
    entity_df = pd.DataFrame({"user_id": [1, 1], "event_timestamp": [t, t - pd.Timedelta(1, "ns")]})
    got = get_historical_features(
        entity_df, ["user_stats:score"], definitions=DEFS, offline=store
    ).to_pandas()
    assert got["score"].isna().tolist() == [False, True]
