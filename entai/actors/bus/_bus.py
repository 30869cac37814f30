"""The event bus: at-least-once delivery of validated events to stream consumers.

One protocol, :class:`EventBus`, two backends with the same semantics:

- :class:`~entai.actors.bus._redis_streams.RedisStreamBus` (production): one Redis stream
  per source, one consumer group. ``publish`` is ``XADD``; ``read`` first re-claims,
  with ``XAUTOCLAIM``, entries another consumer read but has not acknowledged for
  ``claim_idle_s`` (it died), then reads new ones with ``XREADGROUP``; ``ack`` is
  ``XACK`` + ``XDEL`` (the group is the stream's only reader).
- :class:`~entai.actors.bus._queue.QueueBus` (embedded default): a named, detached
  :class:`~entai.actors.bus._queue.EventQueue` actor. A read entry is invisible for
  ``visibility_timeout_s``; unacknowledged by then, it is delivered again.

Both keep a **ledger** per event id, bounded by a TTL: ``DONE`` once acknowledged (a
repeat of the id is then dropped by the consumer), or, while a consumer works on it,
the lake file it is writing the event to (a write-ahead record that lets a consumer
that re-claims the event find out whether the dead one's file made it to the lake).
Acknowledge only after the sink succeeded. The QueueBus actor keeps its queue in
memory: events published but not consumed are lost if that actor restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from entai.shared.core import InvalidInputError
from entai.shared.data import Event

__all__ = [
    "DEFAULT_LEDGER_TTL_S",
    "DONE",
    "Delivery",
    "EventBus",
    "check_read",
    "decode_entry",
]

logger = logging.getLogger(__name__)

DONE = "done"
"""Ledger value of an event whose processing was acknowledged."""
DEFAULT_LEDGER_TTL_S = 7 * 86_400.0
"""How long a backend's ledger remembers an event id, unless told otherwise."""


@dataclass(frozen=True)
class Delivery:
    """One delivered event.

    Attributes:
        receipt: What acknowledges it (the stream entry id or the queue's sequence id).
        event: The event.
        redelivered: True when it was re-claimed from a consumer that did not ack it.
    """

    receipt: str
    event: Event
    redelivered: bool


@runtime_checkable
class EventBus(Protocol):
    """At-least-once event delivery with an event-id ledger (module docstring)."""

    def publish(self, events: Sequence[Event]) -> int:
        """Append events to their sources' streams; return how many were appended."""
        ...

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        """Up to ``max_events`` deliveries: re-claimed ones first, then new ones.

        Waits up to ``block_s`` seconds when there is nothing to deliver.
        """
        ...

    def ack(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """Mark the events DONE in the ledger and remove them; return how many."""
        ...

    def reject(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """Remove deliveries without marking them DONE (they went to the dead letters,
        and a replay must land them); return how many."""
        ...

    def ledger(self, source: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The ledger value of each known id (``DONE`` or a lake file)."""
        ...

    def record(self, source: str, event_ids: Sequence[str], value: str) -> None:
        """Set the ledger value of ids that are not ``DONE``."""
        ...

    def backlog(self, source: str) -> int:
        """Events published and not yet acknowledged (queued or in flight)."""
        ...

    def close(self) -> None:
        """Release connections (the events stay on the bus)."""
        ...


def decode_entry(receipt: str, text: str, redelivered: bool) -> Delivery | None:
    try:
        return Delivery(receipt, Event.model_validate_json(text), redelivered)
    except ValidationError:
        logger.error("dropping an undecodable bus entry", extra={"receipt": receipt})
        return None


def check_read(max_events: int, block_s: float) -> None:
    if max_events < 1 or block_s < 0:
        raise InvalidInputError(
            "read needs max_events >= 1 and block_s >= 0",
            details={"field": "max_events" if max_events < 1 else "block_s"},
        )
