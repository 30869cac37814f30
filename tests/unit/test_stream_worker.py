"""A stream worker's failure handling, on an in-process bus (no Ray): one bad event
cannot hold a batch back, and it reaches the dead letters after max_attempts, not DONE,
so a replay lands it once it is fixed."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from in_process_bus import InProcessBus

from entai.actors.bus import DONE
from entai.pipelines.features import DeadLetters, StreamWorker
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.data import Event, Lake, PlatformEventKind
from entai.shared.settings import EntaiSettings, load_settings

SOURCE = "clicks"
CONTRACT = {
    "source": SOURCE,
    "purpose": "test",
    "retention_days": 30,
    "event_time": "ts",
    "columns": [
        {"name": "user_id", "type": "int64", "nullable": False},
        {"name": "ts", "type": "timestamp", "nullable": False},
    ],
}


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    contract = tmp_path / "clicks.yaml"
    import yaml

    contract.write_text(yaml.safe_dump(CONTRACT))
    return load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        streams={SOURCE: {"contract": str(contract), "max_attempts": 3, "batch_size": 10}},
    ).resolved()


def _event(i: int, ts: str = "2026-11-30T10:00:00+00:00") -> Event:
    return Event(event_id=f"e{i}", source=SOURCE, payload={"user_id": i, "ts": ts})


def _landed(settings: EntaiSettings) -> list[str]:
    """The events in the raw zone, by their user id (event ``e<i>`` has user ``i``)."""
    files = sorted((Path(settings.lake.root) / "raw" / SOURCE).rglob("*.parquet"))
    return sorted(f"e{u}" for f in files for u in pq.read_table(f)["user_id"].to_pylist())


def test_a_bad_event_is_isolated_then_dead_lettered_not_done(settings: EntaiSettings) -> None:
    bus = InProcessBus(visibility_timeout_s=0.0)
    worker = StreamWorker(settings, SOURCE, bus=bus, run=False)
    bus.publish([_event(1), _event(2, ts="not a time"), _event(3)])

    assert worker.step() == 3  # the batch fails; its events are tried one by one
    assert _landed(settings) == ["e1", "e3"]
    assert bus.ledger(SOURCE, ["e1", "e2", "e3"]) == {"e1": DONE, "e3": DONE}
    assert bus.backlog(SOURCE) == 1 and worker.status()["retrying"] == 1
    # What landed was announced (two one-event landings), each file once.
    landed = bus.read(PlatformEventKind.DATA_LANDED.value, "test", block_s=0)
    files = [f for d in landed for f in d.event.payload["files"]]
    assert {d.event.payload["source"] for d in landed} == {SOURCE} and len(files) == 2
    assert all((Path(settings.lake.root) / f).is_file() for f in files)

    assert worker.step() == 1 and worker.step() == 1  # attempts 2 and 3
    letters = DeadLetters(Lake(settings.lake.root)).entries(SOURCE)
    assert [(d.event.event_id, d.attempts) for d in letters] == [("e2", 3)]
    assert "ts" in letters[0].error or "time" in letters[0].error.lower()
    assert bus.backlog(SOURCE) == 0
    assert "e2" not in bus.ledger(SOURCE, ["e2"])  # rejected, not DONE
    assert worker.status()["counts"] == {"landed": 2, "dead_letter": 1}


def test_a_replayed_dead_letter_lands_once_it_can(settings: EntaiSettings) -> None:
    bus = InProcessBus(visibility_timeout_s=0.0)
    lake = Lake(settings.lake.root)
    letters = DeadLetters(lake)
    worker = StreamWorker(settings, SOURCE, bus=bus, run=False)
    bus.publish([_event(7, ts="not a time")])
    for _ in range(3):
        worker.step()
    assert [d.event.event_id for d in letters.entries(SOURCE)] == ["e7"]

    with pytest.raises(NotFoundError):
        letters.replay(bus, SOURCE, ["e8"])
    # The producer's bug is fixed: the event is replaced by its corrected version.
    fixed = letters.entries(SOURCE)[0]
    letters.add(fixed.__class__(_event(7), fixed.error, fixed.attempts, fixed.at))
    assert letters.replay(bus, SOURCE) == 1
    assert letters.entries(SOURCE) == []
    assert worker.step() == 1
    assert _landed(settings) == ["e7"]


def test_an_unknown_stream_is_a_clear_error(settings: EntaiSettings) -> None:
    with pytest.raises(InvalidInputError, match="no stream 'orders'"):
        StreamWorker(settings, "orders", bus=InProcessBus(visibility_timeout_s=0.0), run=False)
