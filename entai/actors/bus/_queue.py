"""The embedded event bus: an in-cluster queue actor and its client.

The semantics are :class:`~entai.actors.bus._bus.EventBus`'s; see that module.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

import ray

from entai.actors.bus._bus import DEFAULT_LEDGER_TTL_S, DONE, Delivery, check_read, decode_entry
from entai.actors.core import ActorService, service_actor
from entai.shared.core import ServiceUnavailableError
from entai.shared.data import PLATFORM_STREAM_MAXLEN, Event, is_platform_source

__all__ = ["EventQueue", "EventQueueActor", "QueueBus"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class EventQueue:
    """The in-cluster queue behind :class:`QueueBus` (plain class; an actor below).

    Args:
        visibility_timeout_s: How long a delivered, unacknowledged event stays
            invisible before it is delivered again.
        ledger_ttl_s: How long the ledger remembers an event id.
        max_ledger: The most ids the ledger holds (oldest forgotten first).
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        visibility_timeout_s: float = 60.0,
        ledger_ttl_s: float = DEFAULT_LEDGER_TTL_S,
        max_ledger: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = visibility_timeout_s
        self._ttl = ledger_ttl_s
        self._max_ledger = max_ledger
        self._clock = clock
        self._seq = itertools.count()
        self._queued: dict[str, OrderedDict[str, str]] = {}
        self._in_flight: dict[str, dict[str, tuple[str, float]]] = {}
        self._ledger: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"EventQueue(visibility_timeout_s={self._timeout})"

    def publish(self, source: str, messages: Sequence[str]) -> int:
        """Append serialised events; return how many."""
        queue = self._queued.setdefault(source, OrderedDict())
        for text in messages:
            queue[str(next(self._seq))] = text
        if is_platform_source(source):  # may have no consumer: keep the latest only
            while len(queue) > PLATFORM_STREAM_MAXLEN:
                queue.popitem(last=False)
        return len(messages)

    def receive(
        self, source: str, max_events: int, visibility_s: float | None = None
    ) -> list[tuple[str, str, bool]]:
        """``(receipt, event json, redelivered)``: timed-out deliveries first, then new.

        ``visibility_s`` (default: the queue's) is how long they stay invisible.
        """
        now = self._clock()
        timeout = self._timeout if visibility_s is None else visibility_s
        in_flight = self._in_flight.setdefault(source, {})
        expired = [r for r, (_, deadline) in in_flight.items() if deadline <= now][:max_events]
        out = [(r, in_flight[r][0], True) for r in expired]
        queue = self._queued.get(source, OrderedDict())
        while queue and len(out) < max_events:
            receipt, text = queue.popitem(last=False)
            out.append((receipt, text, False))
        for receipt, text, _ in out:
            in_flight[receipt] = (text, now + timeout)
        return out

    def ack(self, source: str, receipts: Sequence[str], event_ids: Sequence[str]) -> int:
        """Forget the deliveries and mark their ids DONE; return how many were in flight."""
        in_flight = self._in_flight.setdefault(source, {})
        acked = sum(in_flight.pop(r, None) is not None for r in receipts)
        self.record(source, event_ids, DONE)
        return acked

    def ledger(self, source: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The ledger values of the known, unexpired ids."""
        self._expire()
        found = ((i, self._ledger.get((source, i))) for i in event_ids)
        return {i: entry[0] for i, entry in found if entry is not None}

    def record(self, source: str, event_ids: Sequence[str], value: str) -> None:
        """Set the ids' ledger value, except where it is DONE."""
        expires = self._clock() + self._ttl
        for event_id in event_ids:
            key = (source, event_id)
            current = self._ledger.pop(key, None)
            kept = value if current is None or current[0] != DONE else DONE
            self._ledger[key] = (kept, expires)
        self._expire()

    def _expire(self) -> None:
        now = self._clock()
        while self._ledger:
            _, (_, expires) = next(iter(self._ledger.items()))
            if expires > now and len(self._ledger) <= self._max_ledger:
                return
            self._ledger.popitem(last=False)

    def backlog(self, source: str) -> int:
        """Events queued or in flight."""
        return len(self._queued.get(source, {})) + len(self._in_flight.get(source, {}))


EventQueueActor = ray.remote(EventQueue)


class QueueBus:
    """The embedded event bus: a client of a named, detached :class:`EventQueue` actor.

    Args:
        name: The actor's name; every QueueBus with the same name shares the queue.
        namespace: Its Ray namespace (default: the current one).
        visibility_timeout_s: How long events this client reads stay invisible to other
            readers before they are delivered again (its reads say so to the queue).
        ledger_ttl_s: See :class:`EventQueue` (used when the actor is created).
        poll_s: How often a blocking read asks the actor again.
    """

    def __init__(
        self,
        name: str = "entai-event-queue",
        *,
        namespace: str | None = None,
        visibility_timeout_s: float = 60.0,
        ledger_ttl_s: float = DEFAULT_LEDGER_TTL_S,
        poll_s: float = 0.1,
    ) -> None:
        self.name = name
        self._poll_s = poll_s
        self._visibility_s = visibility_timeout_s
        handle = service_actor(
            EventQueueActor,
            name,
            namespace or ray.get_runtime_context().namespace,
            visibility_timeout_s=visibility_timeout_s,
            ledger_ttl_s=ledger_ttl_s,
        )
        self._queue: ActorService[EventQueue] = ActorService(name, handle)

    def __repr__(self) -> str:
        return f"QueueBus(name={self.name!r})"

    def _call(
        self, method: Callable[Concatenate[EventQueue, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        try:
            return self._queue.call(method, *args, **kwargs)
        except ray.exceptions.RayActorError as exc:
            raise ServiceUnavailableError(
                f"event queue actor {self.name!r} unavailable for {method.__name__}",
                details={"backend": "queue", "operation": method.__name__},
            ) from exc

    def publish(self, events: Sequence[Event]) -> int:
        """Append events to their sources' queues."""
        by_source: dict[str, list[str]] = {}
        for event in events:
            by_source.setdefault(event.source, []).append(event.model_dump_json())
        return sum(self._call(EventQueue.publish, s, texts) for s, texts in by_source.items())

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        """Timed-out deliveries first, then new events; polls up to ``block_s``."""
        check_read(max_events, block_s)
        deadline = time.monotonic() + block_s
        while True:
            raw: list[tuple[str, str, bool]] = self._call(
                EventQueue.receive, source, max_events, self._visibility_s
            )
            if raw or time.monotonic() >= deadline:
                break
            time.sleep(self._poll_s)
        decoded = [decode_entry(r, text, again) for r, text, again in raw]
        poison = [r for (r, _, _), d in zip(raw, decoded, strict=True) if d is None]
        if poison:
            self._call(EventQueue.ack, source, poison, [])
        logger.debug("queue read", extra={"consumer": consumer, "events": len(raw)})
        return [d for d in decoded if d is not None]

    def ack(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """Remove the deliveries and mark their ids DONE."""
        receipts = [d.receipt for d in deliveries]
        return int(
            self._call(EventQueue.ack, source, receipts, [d.event.event_id for d in deliveries])
        )

    def reject(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """Remove the deliveries; their ids stay as they are in the ledger."""
        receipts = [d.receipt for d in deliveries]
        return int(self._call(EventQueue.ack, source, receipts, []))

    def ledger(self, source: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The ledger values of the known ids."""
        found: dict[str, str] = self._call(EventQueue.ledger, source, list(event_ids))
        return found

    def record(self, source: str, event_ids: Sequence[str], value: str) -> None:
        """Set the ids' ledger value, except where it is DONE."""
        self._call(EventQueue.record, source, list(event_ids), value)

    def backlog(self, source: str) -> int:
        """Events queued or in flight."""
        return int(self._call(EventQueue.backlog, source))

    def close(self) -> None:
        """Nothing to release: the actor (and its queue) outlives this client."""
