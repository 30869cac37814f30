"""The events path (`POST /v1/events` -> bus -> lake) never carries undeclared PII in the clear."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from planted_pii import clean, counts, leaked, planted

from entai.actors.bus import EventBus
from entai.pipelines.features import publish_events
from entai.shared.data import (
    DataContract,
    Event,
    EventsReceipt,
    UndeclaredPii,
    event_table,
    pseudonym,
    validate_events,
)

KEY = b"unit-test-key-0123456789abcdef"
CONTRACT = DataContract.from_yaml(
    """
source: chats
purpose: test
retention_days: 30
event_time: ts
key: [message_id]
columns:
  - {name: message_id, type: string, nullable: false}
  - {name: user_email, type: string, pii: identifier}
  - {name: body, type: string}
  - {name: score, type: float64}
  - {name: ts, type: timestamp, nullable: false}
"""
)


class RecordingBus:
    """What `publish_events` puts on the bus (the stream consumer lands exactly this)."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    def publish(self, events: Sequence[Event]) -> int:
        self.published.extend(events)
        return len(events)


def payload(i: int, body: str, **changes: Any) -> dict[str, Any]:
    return {
        "message_id": f"m{i}",
        "user_email": f"user{i}@example.com",
        "body": body,
        "score": 0.5,
        "ts": "2026-09-01T10:00:00Z",
        **changes,
    }


def publish(items: list[Any], policy: UndeclaredPii) -> tuple[EventsReceipt, RecordingBus]:
    bus = RecordingBus()
    receipt = publish_events(
        cast("EventBus", bus), CONTRACT, items, hmac_key=KEY, undeclared_pii=policy
    )
    return receipt, bus


def stored_text(bus: RecordingBus, receipt: EventsReceipt) -> str:
    """Everything that leaves the intake: the bus messages, the lake rows, the 202 body."""
    messages = [event.model_dump_json() for event in bus.published]
    lake_rows = event_table(bus.published, CONTRACT).to_pylist()
    return "\n".join([*messages, json.dumps(lake_rows, default=str), receipt.model_dump_json()])


def test_quarantine_rejects_events_with_undeclared_pii_and_reports_them() -> None:
    values = planted(2000)
    bodies = [text for _, _, text in values] + clean(1000)
    items = [payload(i, body) for i, body in enumerate(bodies)]

    receipt, bus = publish(items, UndeclaredPii.QUARANTINE)

    assert receipt.accepted + receipt.rejected == len(items) == 3000
    assert (receipt.accepted, receipt.rejected) == (1000, 2000)
    assert [e.payload["body"] for e in bus.published] == clean(1000)
    assert receipt.pii_findings == {"body": counts(values)}
    assert len(receipt.warnings) == 1
    assert "column 'body'" in receipt.warnings[0] and "declare it PII" in receipt.warnings[0]
    by_index = {error.index: error for error in receipt.errors}
    assert sorted(by_index) == list(range(2000))
    assert by_index[0].errors == ["pii(body): undeclared email found"]
    assert by_index[0].event_id == "m0"
    assert leaked(values, stored_text(bus, receipt)) == []


def test_redact_accepts_the_events_with_findings_masked() -> None:
    values = planted(2000)
    bodies = [text for _, _, text in values] + clean(500)
    items = [payload(i, body) for i, body in enumerate(bodies)]

    receipt, bus = publish(items, UndeclaredPii.REDACT)

    assert (receipt.accepted, receipt.rejected) == (2500, 0)
    assert receipt.pii_findings == {"body": counts(values)}
    assert "findings redacted" in receipt.warnings[0]
    assert bus.published[0].payload["body"] == "please contact [REDACTED:EMAIL] about the order"
    assert bus.published[0].payload["user_email"] == pseudonym("user0@example.com", KEY)
    assert bus.published[0].payload["score"] == 0.5  # non-string columns untouched
    assert leaked(values, stored_text(bus, receipt)) == []


def test_an_event_id_never_carries_pii() -> None:
    items: list[Any] = [
        payload(0, "fine", message_id="from ann@corp.example"),  # id derived from the key
        {"event_id": "ann@corp.example", "payload": payload(1, "fine")},  # a caller's id
        payload(2, "fine"),
    ]
    result = validate_events(items, CONTRACT, KEY, undeclared_pii=UndeclaredPii.REDACT)

    assert [e.event_id for e in result.accepted] == ["m2"]
    first, second = result.rejected
    assert first.event_id == pseudonym("from ann@corp.example", KEY)
    assert first.errors == ["pii(message_id): undeclared email found"]
    assert second.event_id is None
    assert second.errors == ["event_id: holds PII (email)"]
    assert "ann@corp.example" not in result.receipt().model_dump_json()


def test_clean_batches_have_an_empty_pii_report() -> None:
    receipt, bus = publish(
        [payload(i, body) for i, body in enumerate(clean(20))], UndeclaredPii.QUARANTINE
    )
    assert (receipt.accepted, receipt.pii_findings, receipt.warnings) == (20, {}, [])
    assert len(bus.published) == 20
