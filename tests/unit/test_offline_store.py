"""Offline store and lake: date-partitioned append-only Parquet, typed reads, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from entai.shared.core import ConflictError, ContractViolationError, InvalidInputError
from entai.shared.data import Lake
from entai.shared.features import Entity, FeatureView, Field, OfflineStore, ValueType

USER = Entity("user", ("user_id",))
VIEW = FeatureView(
    "user_stats",
    (USER,),
    (
        Field("score", ValueType.FLOAT64),
        Field("visits", ValueType.INT64),
        Field("country", ValueType.STRING),
        Field("vip", ValueType.BOOL),
        Field("last_seen", ValueType.TIMESTAMP),
    ),
    source="events",
)


def rows(days: list[int], **extra: object) -> pd.DataFrame:
    n = len(days)
    frame = pd.DataFrame(
        {
            "user_id": list(range(n)),
            "event_timestamp": [
                pd.Timestamp("2024-05-01 12:00", tz="UTC") + pd.Timedelta(days=d) for d in days
            ],
            "score": [0.5] * n,
            "visits": pd.array([3] * (n - 1) + [None], dtype="Int64") if n else [],
            "country": ["fr"] * n,
            "vip": [True] * n,
            "last_seen": [pd.Timestamp("2024-04-01", tz="Europe/Paris")] * n,
            "ignored": ["x"] * n,
        }
    )
    return frame.assign(**extra)


@pytest.fixture
def store(tmp_path: Path) -> OfflineStore:
    return OfflineStore(Lake(str(tmp_path / "lake")))


def test_write_partitions_by_event_date_and_reads_back_typed(store: OfflineStore) -> None:
    assert store.write(VIEW, rows([0, 0, 2])) == 3
    root = Path(store.lake.offline("user_stats"))
    assert sorted(p.name for p in root.iterdir()) == ["date=2024-05-01", "date=2024-05-03"]
    got = store.read(VIEW).sort_values("user_id", ignore_index=True)
    assert list(got.columns) == [
        "user_id",
        "event_timestamp",
        "created_timestamp",
        "score",
        "visits",
        "country",
        "vip",
        "last_seen",
    ]
    assert got["user_id"].dtype == "int64" and got["visits"].dtype == "Int64"
    assert got["vip"].dtype == "boolean" and got["country"].dtype == "string"
    assert pd.isna(got["visits"].iloc[2])
    assert got["last_seen"].iloc[0] == pd.Timestamp("2024-03-31 22:00", tz="UTC")
    before = datetime.now(UTC)
    assert (got["created_timestamp"] <= pd.Timestamp(before)).all()


def test_writes_append_and_keep_created_timestamps(store: OfflineStore) -> None:
    first = rows([0])
    first["created_timestamp"] = pd.Timestamp("2024-05-01 13:00", tz="UTC")
    store.write(VIEW, first)
    correction = first.assign(score=0.9, created_timestamp=pd.Timestamp("2024-05-05", tz="UTC"))
    store.write(VIEW, correction)
    got = store.read(VIEW).sort_values("created_timestamp", ignore_index=True)
    assert got["score"].tolist() == [0.5, 0.9]
    files = list(Path(store.lake.offline("user_stats")).rglob("*.parquet"))
    assert len(files) == 2


def test_read_prunes_by_time_and_selects_columns(store: OfflineStore) -> None:
    store.write(VIEW, rows([0, 1, 2, 3]))
    start = datetime(2024, 5, 2, 12, tzinfo=UTC)  # exactly day 1's event: inclusive
    got = store.read(VIEW, start=start, end=start + timedelta(days=1), columns=["score"])
    assert sorted(got["user_id"]) == [1, 2]
    assert list(got.columns) == ["user_id", "event_timestamp", "created_timestamp", "score"]
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        store.read(VIEW, start=datetime(2024, 5, 2))
    with pytest.raises(InvalidInputError, match="nope"):
        store.read(VIEW, columns=["nope"])


def test_read_of_an_unwritten_view_is_empty_and_typed(store: OfflineStore) -> None:
    got = store.read(VIEW)
    assert got.empty and got["visits"].dtype == "Int64"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "event_timestamp"}, "'user_stats'.*lacks.*event_timestamp"),
        ({"score": ["high"] * 2}, "'score'.*float64"),
        ({"visits": [1.5, 2.0]}, "'visits'.*int64"),
        ({"user_id": [None, 1]}, "'user_id'"),
    ],
)
def test_invalid_frames_are_refused(
    store: OfflineStore, change: dict[str, object], message: str
) -> None:
    frame = rows([0, 1])
    if "drop" in change:
        frame = frame.drop(columns=[str(change.pop("drop"))])
    frame = frame.assign(**change)
    with pytest.raises(ContractViolationError, match=message):
        store.write(VIEW, frame)
    assert not store.lake.exists(store.lake.offline("user_stats"))


def test_naive_event_timestamps_are_refused(store: OfflineStore) -> None:
    frame = rows([0])
    frame["event_timestamp"] = frame["event_timestamp"].dt.tz_localize(None)
    with pytest.raises(ContractViolationError, match="naive"):
        store.write(VIEW, frame)


def test_lake_resolves_file_uris_and_writes_immutably(tmp_path: Path) -> None:
    lake = Lake(f"file://{tmp_path}/lake")
    assert lake.offline("v") == f"{tmp_path}/lake/offline/v"
    lake.write_json(lake.path("registry", "x.json"), {"a": 1})
    assert lake.read_json(lake.path("registry", "x.json")) == {"a": 1}
    lake.write_bytes(lake.path("datasets", "d", "f"), b"1", overwrite=False)
    with pytest.raises(ConflictError):
        lake.write_bytes(lake.path("datasets", "d", "f"), b"2", overwrite=False)
    assert lake.read_bytes(lake.path("datasets", "d", "f")) == b"1"
    assert not [
        p for p in (tmp_path / "lake" / "datasets" / "d").iterdir() if p.name.startswith(".tmp")
    ]
    with pytest.raises(InvalidInputError, match="path component"):
        lake.datasets("../escape")
