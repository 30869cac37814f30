"""A stream worker's failure handling, on an in-process bus (no Ray): one bad event
cannot hold a batch back, and it reaches the dead letters after max_attempts, not DONE,
so a replay lands it once it is fixed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from in_process_bus import InProcessBus

from entai.actors.bus import DONE
from entai.actors.features import OnlineFeatureClient
from entai.demo.contracts import EVENTS_CONTRACT
from entai.demo.features import user_recent_views
from entai.pipelines.features import DeadLetters, StreamConsumer, StreamWorker
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.data import Event, Lake, PlatformEventKind
from entai.shared.features import MemoryOnlineStore, entity_key
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


def test_a_future_event_is_quarantined_with_its_reason_and_lands_on_replay(
    settings: EntaiSettings,
) -> None:
    bus = InProcessBus(visibility_timeout_s=0.0)
    worker = StreamWorker(settings, SOURCE, bus=bus, run=False)
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    bus.publish([_event(1), _event(2, ts=ahead), _event(3)])

    assert worker.step() == 3
    assert _landed(settings) == ["e1", "e3"]  # the future event did not land
    assert bus.backlog(SOURCE) == 0
    assert "e2" not in bus.ledger(SOURCE, ["e2"])  # left the bus, not DONE
    letters = DeadLetters(Lake(settings.lake.root)).entries(SOURCE)
    assert [d.event.event_id for d in letters] == ["e2"]
    assert letters[0].error.startswith("future event: ts ")
    assert "more than 300 s after the consumer's clock" in letters[0].error
    assert worker.status()["counts"] == {"landed": 2, "quarantined": 1}

    # A consumer allowing a larger skew (or one running once its time has come) lands it.
    lenient = settings.model_copy(
        update={
            "streams": {
                SOURCE: settings.streams[SOURCE].model_copy(update={"max_future_skew_s": 7200.0})
            }
        }
    )
    later = StreamWorker(lenient, SOURCE, bus=bus, run=False)
    assert DeadLetters(Lake(settings.lake.root)).replay(bus, SOURCE) == 1
    assert later.step() == 1
    assert _landed(settings) == ["e1", "e2", "e3"]


def test_events_a_little_ahead_of_the_clock_land(settings: EntaiSettings) -> None:
    bus = InProcessBus(visibility_timeout_s=0.0)
    worker = StreamWorker(settings, SOURCE, bus=bus, run=False)
    bus.publish([_event(4, ts=(datetime.now(UTC) + timedelta(seconds=60)).isoformat())])
    assert worker.step() == 1
    assert _landed(settings) == ["e4"]
    assert worker.status()["counts"] == {"landed": 1}


def _view(i: int, user: int, product: int, at: datetime) -> Event:
    payload = {
        "event_id": f"ev-1-{i}",
        "user_id": user,
        "user_email": "p_masked",
        "product_id": product,
        "category": "books",
        "price": 10.0,
        "event_type": "view",
        "event_timestamp": at.isoformat(),
        "search_query": None,
    }
    return Event(event_id=f"ev-1-{i}", source="events", payload=payload)


def test_a_late_view_corrects_recent_views_and_a_future_one_cannot_pin_them(
    tmp_path: Path,
) -> None:
    bus, store, held = InProcessBus(visibility_timeout_s=0.0), MemoryOnlineStore(), []
    consumer = StreamConsumer(
        bus,
        EVENTS_CONTRACT,
        lake=Lake(str(tmp_path / "lake")),
        consumer="c0",
        views=[user_recent_views],
        online=OnlineFeatureClient(None, direct_store=store),
        max_future_skew=timedelta(minutes=5),
        quarantine=held.extend,
    )
    now = datetime.now(UTC).replace(microsecond=0)
    key = entity_key({"user_id": 1})

    def recent() -> tuple[list[int] | None, datetime | None]:
        got = store.read("user_recent_views", [key], ["recent_product_ids"], ttl=None, now=now)
        return got.values[0][0], got.event_timestamps[0]

    bus.publish([_view(i, 1, 10 + i, now - timedelta(minutes=30 - i)) for i in range(3)])
    consumer.run(until_empty=True)
    assert recent() == ([12, 11, 10], now - timedelta(minutes=28))

    # Late: between the first two views. It lands, and the newest row is recomputed.
    bus.publish([_view(3, 1, 99, now - timedelta(minutes=29, seconds=30))])
    consumer.run(until_empty=True)
    assert recent() == ([12, 11, 99, 10], now - timedelta(minutes=28))

    # An hour ahead: quarantined, so the value is neither replaced nor pinned.
    bus.publish([_view(4, 1, 77, now + timedelta(hours=1))])
    report = consumer.run(until_empty=True)
    assert report.quarantined == 1 and report.written == 0
    assert [e.event_id for e, _ in held] == ["ev-1-4"]
    assert recent() == ([12, 11, 99, 10], now - timedelta(minutes=28))
    bus.publish([_view(5, 1, 13, now - timedelta(minutes=1))])
    consumer.run(until_empty=True)
    assert recent() == ([13, 12, 11, 99, 10], now - timedelta(minutes=1))


def test_events_on_the_bus_during_an_erasure_do_not_land_for_the_erased_subject(
    settings: EntaiSettings,
) -> None:
    from entai.actors.core import LocalService
    from entai.actors.governance import GovernanceChecker
    from entai.pipelines.erasure import erase
    from entai.shared.governance import ErasureRequest, Subject, lake_traces
    from entai.shared.settings import resolve_hmac_key

    bus = InProcessBus(visibility_timeout_s=0.0)
    worker = StreamWorker(settings, SOURCE, bus=bus, run=False)
    bus.publish([_event(3), _event(4), _event(33)])  # published, not consumed yet
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()
    receipt = erase(
        settings,
        ErasureRequest({"user_id": 3}, "dpo@example.com", "ticket 22"),
        caller=admin,
        governance=LocalService(governance),
    )
    assert receipt.complete

    assert worker.step() == 3
    assert _landed(settings) == ["e33", "e4"]
    assert bus.ledger(SOURCE, ["e3"]) == {"e3": DONE}  # dropped for good, not redelivered
    assert worker.status()["counts"] == {"landed": 2, "erased": 1}
    subject = Subject.of({"user_id": 3}, resolve_hmac_key(settings))
    assert lake_traces(Lake(settings.lake.root), subject) == {}  # the list names no value

    # The subject's activity after the erasure lands.
    bus.publish([Event(event_id="n3", source=SOURCE, payload={"user_id": 3, "ts": _TS})])
    assert worker.step() == 1
    assert _landed(settings) == ["e3", "e33", "e4"]


_TS = "2026-11-30T11:00:00+00:00"


def test_the_erased_subject_list_matches_pseudonyms_received_times_and_expires(
    tmp_path: Path,
) -> None:
    from entai.shared.data import pseudonym
    from entai.shared.governance import ErasedSubjects, Subject, record_erased_subject

    key = b"stream-erasure-key-0123456789abcdef"
    lake = Lake(str(tmp_path / "lake"))
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    subject = Subject.of({"user_id": 3, "shop": "s1"}, key)
    record_erased_subject(
        lake, subject.digest, subject.pseudonyms, key, erased_at=at, retention=timedelta(days=1)
    )
    listed = ErasedSubjects(lake, key)

    def event(received: datetime, **payload: object) -> Event:
        return Event(event_id="x", source=SOURCE, payload=payload, received_at=received)

    before, after = at - timedelta(seconds=1), at + timedelta(seconds=1)
    events = [
        event(before, user_id=3, shop="s1"),  # in the clear
        event(before, user_id=pseudonym(3, key), shop="s1"),  # a pseudonymised column
        event(before, user_id="3", shop="s1"),  # the same value as a string
        event(after, user_id=3, shop="s1"),  # received after the erasure
        event(before, user_id=3, shop="s2"),  # another subject (both keys must match)
        event(before, user_id=3),  # a key missing
    ]
    now = at + timedelta(hours=1)
    assert listed.erased(events, now) == [True, True, True, False, False, False]
    assert listed.erased(events, at + timedelta(days=2)) == [False] * 6  # expired
    # A later erasure of the same subject moves the erase time on.
    record_erased_subject(
        lake, subject.digest, subject.pseudonyms, key, erased_at=after, retention=timedelta(days=1)
    )
    assert listed.erased(events, now)[3] is True
