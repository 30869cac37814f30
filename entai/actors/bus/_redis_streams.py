"""The production event bus: Redis Streams, one stream per source, one consumer group.

The semantics are :class:`~entai.actors.bus._bus.EventBus`'s; see that module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from entai.actors.bus._bus import DEFAULT_LEDGER_TTL_S, DONE, Delivery, check_read, decode_entry
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.data import PLATFORM_STREAM_MAXLEN, Event, is_platform_source

__all__ = ["RedisStreamBus"]

logger = logging.getLogger(__name__)

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
        ledger_ttl_s: float = DEFAULT_LEDGER_TTL_S,
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
        """``XADD`` each event to its source's stream, in one ``MULTI``/``EXEC``.

        The transaction makes a publish visible whole: Redis serves a consumer waiting
        in ``XREADGROUP`` after each command, so without it the consumer would take the
        first event as a micro-batch of its own, and the stream views would serve a
        value computed on part of one ``POST /v1/events`` in between.

        Platform streams are trimmed to about :data:`PLATFORM_STREAM_MAXLEN` entries.
        """
        with self._guard("publish"):
            pipe = self._redis.pipeline(transaction=True)
            for event in events:
                # A platform stream may have no consumer: it keeps the latest entries only.
                maxlen = PLATFORM_STREAM_MAXLEN if is_platform_source(event.source) else None
                pipe.xadd(
                    self._stream(event.source),
                    {_FIELD: event.model_dump_json()},
                    maxlen=maxlen,
                    approximate=True,
                )
            pipe.execute()
        return len(events)

    def read(
        self, source: str, consumer: str, *, max_events: int = 500, block_s: float = 1.0
    ) -> list[Delivery]:
        """Re-claim idle entries (``XAUTOCLAIM``), else read new ones (``XREADGROUP``)."""
        check_read(max_events, block_s)
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
        decoded = [
            decode_entry(rid, fields.get(_FIELD, ""), redelivered) for rid, fields in entries
        ]
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

    def reject(self, source: str, deliveries: Sequence[Delivery]) -> int:
        """``XACK`` + ``XDEL`` the entries, leaving their ids' ledger as it is."""
        if not deliveries:
            return 0
        stream, ids = self._stream(source), [d.receipt for d in deliveries]
        with self._guard("reject"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(stream, self._group, *ids)
            pipe.xdel(stream, *ids)
            rejected = pipe.execute()[0]
        return int(rejected)

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
