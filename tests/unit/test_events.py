"""Event envelopes, batch validation with per-event errors, and the queue state machine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from entai.actors.bus import DONE, EventQueue
from entai.demo.contracts import EVENTS_CONTRACT
from entai.shared.core import ContractViolationError, InvalidInputError
from entai.shared.data import Event, accepted_schema, event_table, pseudonym, validate_events

KEY = b"unit-test-key-0123456789abcdef"
WHEN = datetime(2026, 9, 1, 12, tzinfo=UTC)


def payload(i: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": f"ev-1-{i:04d}",
        "user_id": i % 3,
        "user_email": f"user{i % 3}@example.com",
        "product_id": 10 + i,
        "category": "books",
        "price": 12.5,
        "event_type": "view",
        "event_timestamp": "2026-09-01T10:00:00Z",
        "search_query": "call me at 415-555-0100",
    }
    row.update(changes)
    return row


def test_valid_events_are_accepted_masked_and_typed() -> None:
    result = validate_events([payload(1), payload(2)], EVENTS_CONTRACT, KEY, received_at=WHEN)

    assert [e.event_id for e in result.accepted] == ["ev-1-0001", "ev-1-0002"]
    assert result.rejected == []
    first = result.accepted[0]
    assert first.source == "events" and first.received_at == WHEN
    assert first.payload["user_email"] == pseudonym("user1@example.com", KEY)
    assert "415-555" not in first.payload["search_query"]
    assert first.payload["event_timestamp"] == datetime(2026, 9, 1, 10, tzinfo=UTC)
    assert result.table.schema == accepted_schema(EVENTS_CONTRACT)
    assert result.table.column("user_id").to_pylist() == [1, 2]


def test_each_rejected_event_gets_its_index_id_and_reasons() -> None:
    items: list[Any] = [
        payload(0),
        payload(1, price=-1.0, category="cars"),
        payload(2, user_id="not-a-number"),
        payload(3, colour="red"),
        payload(4, price={"amount": 1}),
        7,
        payload(0),
    ]
    result = validate_events(items, EVENTS_CONTRACT, KEY)

    assert [e.event_id for e in result.accepted] == ["ev-1-0000"]
    errors = {e.index: e for e in result.rejected}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6]
    assert errors[1].event_id == "ev-1-0001"
    assert errors[1].errors == [
        "category(category): not an allowed value",
        "range(price): outside [0.0, 100000.0]",
    ]
    assert errors[2].errors == ["type(user_id): not a valid int64"]
    assert "colour" in errors[3].errors[0]
    assert errors[4].errors == ["type(price): not a scalar"]
    assert errors[5].event_id is None
    assert errors[6].errors == ["event_id: repeats an earlier event of this batch"]
    assert len(result.accepted) + len(result.rejected) == len(items)


def test_envelopes_keep_their_id_and_receive_time_and_must_match_the_source() -> None:
    sent = datetime(2026, 9, 2, tzinfo=UTC)
    items = [
        {"event_id": "client-1", "payload": payload(1), "received_at": sent.isoformat()},
        {"event_id": "client-2", "payload": payload(2), "source": "orders"},
        {"payload": payload(3)},
    ]
    result = validate_events(items, EVENTS_CONTRACT, KEY)

    assert [(e.event_id, e.received_at) for e in result.accepted] == [("client-1", sent)]
    assert result.rejected[0].errors == ["source: not 'events'"]
    assert result.rejected[1].errors[0].startswith("event_id:")


def test_bare_payload_without_a_key_value_is_rejected() -> None:
    item = payload(1)
    del item["event_id"]
    result = validate_events([item], EVENTS_CONTRACT, KEY)

    assert result.accepted == []
    assert "event_id" in result.rejected[0].errors[0]


@pytest.mark.parametrize("count", [0, 10_001])
def test_batch_size_is_bounded(count: int) -> None:
    with pytest.raises(InvalidInputError, match="events"):
        validate_events([payload(1)] * count, EVENTS_CONTRACT, KEY)


def test_event_table_rebuilds_the_accepted_rows_after_a_json_round_trip() -> None:
    result = validate_events(
        [payload(1), payload(2, price=3.0000000001)], EVENTS_CONTRACT, KEY, batch_id="b1"
    )
    travelled = [Event.model_validate_json(e.model_dump_json()) for e in result.accepted]

    table = event_table(travelled, EVENTS_CONTRACT, batch_id="b1")

    assert table.equals(result.table)


def test_event_table_refuses_other_sources_and_unparseable_values() -> None:
    event = Event(event_id="x", source="orders", payload=payload(1))
    with pytest.raises(ContractViolationError, match="orders"):
        event_table([event], EVENTS_CONTRACT)
    broken = Event(event_id="y", source="events", payload=payload(1, price="cheap"))
    with pytest.raises(ContractViolationError, match="price"):
        event_table([broken], EVENTS_CONTRACT)


def test_events_need_aware_receive_times() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Event(event_id="x", source="events", payload={}, received_at=datetime(2026, 1, 1))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_queue_redelivers_unacknowledged_events_after_the_visibility_timeout() -> None:
    clock = Clock()
    queue = EventQueue(visibility_timeout_s=10.0, clock=clock)
    queue.publish("events", ["a", "b", "c"])

    first = queue.receive("events", 2)
    assert [(text, again) for _, text, again in first] == [("a", False), ("b", False)]
    clock.now = 9.0
    assert [text for _, text, _ in queue.receive("events", 5)] == ["c"]
    queue.ack("events", [first[0][0]], ["id-a"])
    clock.now = 10.0
    again = queue.receive("events", 5)
    assert [(text, redelivered) for _, text, redelivered in again] == [("b", True)]
    assert queue.backlog("events") == 2  # b and c in flight


def test_queue_ledger_keeps_done_and_forgets_after_its_ttl() -> None:
    clock = Clock()
    queue = EventQueue(ledger_ttl_s=100.0, max_ledger=3, clock=clock)
    queue.ack("events", [], ["a"])
    queue.record("events", ["a", "b"], "raw/events/f.parquet")
    assert queue.ledger("events", ["a", "b", "c"]) == {"a": DONE, "b": "raw/events/f.parquet"}
    assert queue.ledger("orders", ["a"]) == {}
    queue.record("events", ["c", "d"], "g")  # over max_ledger: the oldest goes
    assert set(queue.ledger("events", ["a", "b", "c", "d"])) == {"b", "c", "d"}
    clock.now = 100.0
    assert queue.ledger("events", ["b", "c", "d"]) == {}


def test_validated_table_keeps_row_count_invariant_on_large_batches() -> None:
    items = [payload(i, price=float(i % 5) - 1.0) for i in range(2_000)]
    result = validate_events(items, EVENTS_CONTRACT, KEY)
    bad = {i for i in range(2_000) if i % 5 == 0}

    assert {e.index for e in result.rejected} == bad
    assert result.table.num_rows == len(result.accepted) == 2_000 - len(bad)
    assert isinstance(result.table, pa.Table)
