"""Platform events: ids from what they announce, partitions, the reserved sources, bounds."""

from __future__ import annotations

import pytest

from entai.actors.bus import EventQueue
from entai.shared.core import DefinitionError
from entai.shared.data import (
    PLATFORM_STREAM_MAXLEN,
    DataContract,
    PlatformEventKind,
    alias_moved,
    data_landed,
    is_platform_source,
    retrain_requested,
)

CONTRACT = """
source: {source}
purpose: tests
retention_days: 30
event_time: ts
columns:
  - {{name: ts, type: timestamp, nullable: false}}
"""


def test_data_landed_is_one_event_per_date_partition_with_its_files() -> None:
    files = [
        "raw/clicks/date=2026-01-02/part-b.parquet",
        "raw/clicks/date=2026-01-01/part-a.parquet",
        "raw/clicks/date=2026-01-02/part-c.parquet",
    ]
    first, second = data_landed("clicks", files, rows=9)
    assert first.source == second.source == PlatformEventKind.DATA_LANDED.value
    assert first.payload == {
        "source": "clicks",
        "partition": "date=2026-01-01",
        "files": ["raw/clicks/date=2026-01-01/part-a.parquet"],
        "rows": None,  # the total spans two partitions; per-file counts are not kept
    }
    assert second.payload["files"] == [
        "raw/clicks/date=2026-01-02/part-b.parquet",
        "raw/clicks/date=2026-01-02/part-c.parquet",
    ]
    (single,) = data_landed("clicks", files[1:2], rows=4)
    assert single.payload["rows"] == 4


def test_ids_come_from_what_is_announced_so_a_repeat_is_one_event() -> None:
    files = ["raw/clicks/date=2026-01-01/part-a.parquet"]
    assert (
        data_landed("clicks", files, 1)[0].event_id == data_landed("clicks", files, 1)[0].event_id
    )
    assert data_landed("clicks", files, 1)[0].event_id != data_landed("views", files, 1)[0].event_id
    moved = alias_moved("churn", "champion", 3, 2, revision=5, kind="promote")
    assert moved.payload["previous"] == 2 and moved.payload["kind"] == "promote"
    again = alias_moved("churn", "champion", 3, 2, revision=5, kind="promote")
    later = alias_moved("churn", "champion", 2, 3, revision=6, kind="rollback")
    assert moved.event_id == again.event_id != later.event_id
    assert retrain_requested("churn", 3, "r1", "drift").event_id != (
        retrain_requested("churn", 3, "r2", "drift").event_id
    )


def test_no_data_contract_may_take_a_platform_source() -> None:
    assert is_platform_source(PlatformEventKind.ALIAS_MOVED.value)
    assert not is_platform_source("clicks")
    with pytest.raises(DefinitionError, match="reserved"):
        DataContract.from_yaml(CONTRACT.format(source="entai-data-landed"))
    assert DataContract.from_yaml(CONTRACT.format(source="clicks-entai")).source == "clicks-entai"


def test_a_platform_stream_keeps_only_its_latest_entries() -> None:
    queue = EventQueue()
    source = PlatformEventKind.DATA_LANDED.value
    queue.publish(source, [f"m{i}" for i in range(PLATFORM_STREAM_MAXLEN + 5)])
    assert queue.backlog(source) == PLATFORM_STREAM_MAXLEN
    queue.publish("clicks", [f"m{i}" for i in range(PLATFORM_STREAM_MAXLEN + 5)])
    assert queue.backlog("clicks") == PLATFORM_STREAM_MAXLEN + 5  # data is never dropped
    oldest = queue.receive(source, 1)[0][1]
    assert oldest == "m5"
