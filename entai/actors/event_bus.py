"""The event bus: at-least-once delivery of validated events to stream consumers.

One protocol, :class:`EventBus`, two backends with the same semantics:

- :class:`RedisStreamBus` (production): one Redis stream per source, one consumer
  group. ``publish`` is ``XADD``; ``read`` first re-claims, with ``XAUTOCLAIM``, entries
  another consumer read but has not acknowledged for ``claim_idle_s`` (it died), then
  reads new ones with ``XREADGROUP``; ``ack`` is ``XACK`` + ``XDEL`` (the group is the
  stream's only reader).
- :class:`QueueBus` (embedded default): a named, detached :class:`EventQueue` actor. A
  read entry is invisible for ``visibility_timeout_s``; unacknowledged by then, it is
  delivered again.

Both keep a **ledger** per event id, bounded by a TTL: ``DONE`` once acknowledged (a
repeat of the id is then dropped by the consumer), or, while a consumer works on it,
the lake file it is writing the event to (a write-ahead record that lets a consumer
that re-claims the event find out whether the dead one's file made it to the lake).
Acknowledge only after the sink succeeded. The QueueBus actor keeps its queue in
memory: events published but not consumed are lost if that actor restarts.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import ray
from pydantic import ValidationError

from entai.actors.runtime import service_actor
from entai.shared.errors import InvalidInputError, ServiceUnavailableError
from entai.shared.events import Event
from entai.shared.settings import EntaiSettings, RedisOnlineStoreSettings

__all__ = [
    "DONE",
    "Delivery",
    "EventBus",
    "EventQueue",
    "EventQueueActor",
    "QueueBus",
    "RedisStreamBus",
    "bus_from_settings",
]

logger = logging.getLogger(__name__)

DONE = "done"
"""Ledger value of an event whose processing was acknowledged."""
_DAY_S = 86_400.0
_FIELD = "event"
# Set each key to ARGV[2] (TTL ARGV[3] s) unless it already holds ARGV[1] (DONE).
_RECORD_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    redis.call('SET', key, ARGV[2], 'EX', ARGV[3])
  end
end
return #KEYS
"""


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


def _decode(receipt: str, text: str, redelivered: bool) -> Delivery | None:
    try:
        return Delivery(receipt, Event.model_validate_json(text), redelivered)
    except ValidationError:
        logger.error("dropping an undecodable bus entry", extra={"receipt": receipt})
        return None


def _check_read(max_events: int, block_s: float) -> None:
    if max_events < 1 or block_s < 0:
        raise InvalidInputError(
            "read needs max_events >= 1 and block_s >= 0",
            details={"field": "max_events" if max_events < 1 else "block_s"},
        )


class RedisStreamBus:
    """Redis Streams backend: one stream per source, one consumer group.

    Args:
        url: Redis URL (may hold a password; never logged or shown).
        stream_prefix: Key prefix of streams (``<prefix>stream:<source>``) and the
            ledger (``<prefix>ledger:<source>:<event id>``).
        group: The consumer group.
        claim_idle_s: How long an entry stays with a consumer that has not
            acknowledged it before another consumer may re-claim it. Must exceed the
            time a consumer needs for one batch.
        ledger_ttl_s: How long the ledger remembers an event id.
    """

    def __init__(
        self,
        url: str,
        stream_prefix: str,
        group: str = "entai-stream",
        *,
        claim_idle_s: float = 60.0,
        ledger_ttl_s: float = 7 * _DAY_S,
    ) -> None:
        import redis
        from redis.exceptions import RedisError

        if claim_idle_s < 0 or ledger_ttl_s < 1:
            raise InvalidInputError(
                "claim_idle_s must be >= 0 and ledger_ttl_s >= 1",
                details={"field": "claim_idle_s" if claim_idle_s < 0 else "ledger_ttl_s"},
            )
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._errors = RedisError
        self._prefix = stream_prefix
        self._group = group
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._ttl_s = int(ledger_ttl_s)
        self._record = self._redis.register_script(_RECORD_LUA)
        self._groups: set[str] = set()
        self._cursors: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RedisStreamBus(stream_prefix={self._prefix!r}, group={self._group!r})"

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise ServiceUnavailableError(
                f"event bus: Redis unreachable during {operation}: {type(exc).__name__}",
                details={"backend": "redis", "operation": operation},
            ) from exc

    def _stream(self, source: str) -> str:
        return f"{self._prefix}stream:{source}"

    def _ledger_keys(self, source: str, event_ids: Sequence[str]) -> list[str]:
        return [f"{self._prefix}ledger:{source}:{i}" for i in event_ids]

    def _ensure_group(self, stream: str) -> None:
        import redis

        if stream in self._groups:
            return
        try:
            self._redis.xgroup_create(stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    def publish(self, events: Sequence[Event]) -> int:
        """``XADD`` each event to its source's stream (one pipelined round trip)."""
        with self._guard("publish"):
            pipe = self._redis.pipeline(transaction=False)
            for event in events:
                pipe.xadd(self._stream(event.source), {_FIELD: event.model_dump_json()})
            pipe.execute()
        return len(events)

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        """Re-claim idle entries (``XAUTOCLAIM``), else read new ones (``XREADGROUP``)."""
        _check_read(max_events, block_s)
        stream = self._stream(source)
        with self._guard("read"):
            self._ensure_group(stream)
            cursor, claimed, *_ = self._redis.xautoclaim(
                stream,
                self._group,
                consumer,
                self._claim_idle_ms,
                start_id=self._cursors.get(source, "0-0"),
                count=max_events,
            )
            self._cursors[source] = cursor
            entries, redelivered = claimed, True
            if not entries:
                block = int(block_s * 1000) or None  # 0 would block forever
                reply: Any = self._redis.xreadgroup(
                    self._group, consumer, {stream: ">"}, count=max_events, block=block
                )
                entries, redelivered = (reply[0][1] if reply else []), False
        return self._deliveries(source, entries, redelivered)

    def _deliveries(
        self, source: str, entries: list[tuple[str, dict[str, str]]], redelivered: bool
    ) -> list[Delivery]:
        decoded = [_decode(rid, fields.get(_FIELD, ""), redelivered) for rid, fields in entries]
        poison = [rid for (rid, _), d in zip(entries, decoded, strict=True) if d is None]
        if poison:
            with self._guard("ack"):
                self._redis.xack(self._stream(source), self._group, *poison)
                self._redis.xdel(self._stream(source), *poison)
        return [d for d in decoded if d is not None]

    def ack(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """Mark the events DONE and ``XACK`` + ``XDEL`` their entries, atomically."""
        if not deliveries:
            return 0
        stream, ids = self._stream(source), [d.receipt for d in deliveries]
        keys = self._ledger_keys(source, [d.event.event_id for d in deliveries])
        with self._guard("ack"):
            pipe = self._redis.pipeline(transaction=True)
            for key in keys:
                pipe.set(key, DONE, ex=self._ttl_s)
            pipe.xack(stream, self._group, *ids)
            pipe.xdel(stream, *ids)
            acked = pipe.execute()[len(keys)]
        return int(acked)

    def ledger(self, source: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The ledger values of the known ids (one ``MGET``)."""
        if not event_ids:
            return {}
        with self._guard("ledger"):
            values: Any = self._redis.mget(self._ledger_keys(source, event_ids))
        return {i: v for i, v in zip(event_ids, values, strict=True) if v is not None}

    def record(self, source: str, event_ids: Sequence[str], value: str) -> None:
        """Set the ids' ledger value, except where it is DONE (one Lua call)."""
        if event_ids:
            with self._guard("record"):
                self._record(
                    keys=self._ledger_keys(source, event_ids), args=[DONE, value, self._ttl_s]
                )

    def backlog(self, source: str) -> int:
        """Entries not yet acknowledged (acknowledged ones are deleted)."""
        with self._guard("backlog"):
            return int(self._redis.xlen(self._stream(source)))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


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
        ledger_ttl_s: float = 7 * _DAY_S,
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
        return len(messages)

    def receive(self, source: str, max_events: int) -> list[tuple[str, str, bool]]:
        """``(receipt, event json, redelivered)``: timed-out deliveries first, then new."""
        now = self._clock()
        in_flight = self._in_flight.setdefault(source, {})
        expired = [r for r, (_, deadline) in in_flight.items() if deadline <= now][:max_events]
        out = [(r, in_flight[r][0], True) for r in expired]
        queue = self._queued.get(source, OrderedDict())
        while queue and len(out) < max_events:
            receipt, text = queue.popitem(last=False)
            out.append((receipt, text, False))
        for receipt, text, _ in out:
            in_flight[receipt] = (text, now + self._timeout)
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
        visibility_timeout_s: See :class:`EventQueue` (used when the actor is created).
        ledger_ttl_s: See :class:`EventQueue` (used when the actor is created).
        poll_s: How often a blocking read asks the actor again.
    """

    def __init__(
        self,
        name: str = "entai-event-queue",
        *,
        namespace: str | None = None,
        visibility_timeout_s: float = 60.0,
        ledger_ttl_s: float = 7 * _DAY_S,
        poll_s: float = 0.1,
    ) -> None:
        self.name = name
        self._poll_s = poll_s
        self._actor = service_actor(
            EventQueueActor,
            name,
            namespace or ray.get_runtime_context().namespace,
            visibility_timeout_s=visibility_timeout_s,
            ledger_ttl_s=ledger_ttl_s,
        )

    def __repr__(self) -> str:
        return f"QueueBus(name={self.name!r})"

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayActorError as exc:
            raise ServiceUnavailableError(
                f"event queue actor {self.name!r} unavailable for {method}",
                details={"backend": "queue", "operation": method},
            ) from exc

    def publish(self, events: Sequence[Event]) -> int:
        """Append events to their sources' queues."""
        by_source: dict[str, list[str]] = {}
        for event in events:
            by_source.setdefault(event.source, []).append(event.model_dump_json())
        return sum(self._call("publish", s, texts) for s, texts in by_source.items())

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        """Timed-out deliveries first, then new events; polls up to ``block_s``."""
        _check_read(max_events, block_s)
        deadline = time.monotonic() + block_s
        while True:
            raw: list[tuple[str, str, bool]] = self._call("receive", source, max_events)
            if raw or time.monotonic() >= deadline:
                break
            time.sleep(self._poll_s)
        decoded = [_decode(r, text, again) for r, text, again in raw]
        poison = [r for (r, _, _), d in zip(raw, decoded, strict=True) if d is None]
        if poison:
            self._call("ack", source, poison, [])
        logger.debug("queue read", extra={"consumer": consumer, "events": len(raw)})
        return [d for d in decoded if d is not None]

    def ack(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """Remove the deliveries and mark their ids DONE."""
        receipts = [d.receipt for d in deliveries]
        return int(self._call("ack", source, receipts, [d.event.event_id for d in deliveries]))

    def ledger(self, source: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The ledger values of the known ids."""
        found: dict[str, str] = self._call("ledger", source, list(event_ids))
        return found

    def record(self, source: str, event_ids: Sequence[str], value: str) -> None:
        """Set the ids' ledger value, except where it is DONE."""
        self._call("record", source, list(event_ids), value)

    def backlog(self, source: str) -> int:
        """Events queued or in flight."""
        return int(self._call("backlog", source))

    def close(self) -> None:
        """Nothing to release: the actor (and its queue) outlives this client."""


def bus_from_settings(settings: EntaiSettings, *, namespace: str | None = None) -> EventBus:
    """The bus the settings choose: Redis Streams with a Redis online store, else the queue.

    The Redis bus uses the online store's URL and the key prefix ``<key_prefix>:events:``.
    """
    store = settings.online_store
    if isinstance(store, RedisOnlineStoreSettings):
        return RedisStreamBus(store.url.get_secret_value(), f"{store.key_prefix}:events:")
    return QueueBus(namespace=namespace or settings.ray.namespace)
