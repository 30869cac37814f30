"""An event bus for tests without Ray: the queue bus's semantics, its EventQueue in process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from entai.actors.bus import Delivery, EventQueue, decode_entry
from entai.shared.data import Event


class InProcessBus:
    """The queue bus's semantics without its actor: an EventQueue called in process."""

    def __init__(self) -> None:
        self.queue = EventQueue(visibility_timeout_s=60.0)
        self.acked: list[str] = []

    def publish(self, events: Sequence[Event]) -> int:
        return sum(self.queue.publish(e.source, [e.model_dump_json()]) for e in events)

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        raw = self.queue.receive(source, max_events)
        if not raw:
            time.sleep(min(block_s, 0.05))
        return [d for r, text, again in raw if (d := decode_entry(r, text, again))]

    def ack(self, source: str, deliveries: Sequence[Delivery]) -> int:
        self.acked += [d.event.event_id for d in deliveries]
        return self.queue.ack(
            source, [d.receipt for d in deliveries], self.acked[-len(deliveries) :]
        )

    def backlog(self, source: str) -> int:
        return self.queue.backlog(source)
