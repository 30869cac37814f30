"""An event bus for tests without Ray: the queue bus's semantics, its EventQueue in process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from entai.actors.bus import Delivery, EventQueue, decode_entry
from entai.shared.data import Event


class InProcessBus:
    """The EventBus protocol over an EventQueue in this process.

    Args:
        visibility_timeout_s: How long a read, unacknowledged event stays invisible
            (0: it is delivered again on the next read).
    """

    def __init__(self, visibility_timeout_s: float = 60.0) -> None:
        self.queue = EventQueue(visibility_timeout_s=visibility_timeout_s)
        self.acked: list[str] = []

    def publish(self, events: Sequence[Event]) -> int:
        return sum(self.queue.publish(e.source, [e.model_dump_json()]) for e in events)

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        raw = self.queue.receive(source, max_events)
        if not raw and block_s:
            time.sleep(min(block_s, 0.05))
        return [d for r, text, again in raw if (d := decode_entry(r, text, again))]

    def ack(self, source: str, deliveries: Sequence[Delivery]) -> int:
        ids = [d.event.event_id for d in deliveries]
        self.acked += ids
        return self.queue.ack(source, [d.receipt for d in deliveries], ids)

    def reject(self, source: str, deliveries: Sequence[Delivery]) -> int:
        return self.queue.ack(source, [d.receipt for d in deliveries], [])

    def ledger(self, source: str, event_ids: Sequence[str]) -> dict[str, str]:
        return self.queue.ledger(source, event_ids)

    def record(self, source: str, event_ids: Sequence[str], value: str) -> None:
        self.queue.record(source, event_ids, value)

    def backlog(self, source: str) -> int:
        return self.queue.backlog(source)

    def close(self) -> None:
        return None
