"""A serving replica's copy of the Redis rows it read, kept coherent by Redis itself.

The predict path reads one entity's rows (one ``HMGET`` per view) on every request, and
in the cluster configuration that read was the largest single cost of the ingress
replica's one busy thread (``docs/benchmarks.md``). :class:`TrackedRows` keeps the
replies of those single-key reads in the replica and answers repeats from memory, using
Redis's server-assisted client-side caching (``CLIENT TRACKING``) to learn when a kept
row changes:

- One listener connection (RESP2) takes its ``CLIENT ID``, turns on
  ``CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <key prefix>:`` and
  subscribes to ``__redis__:invalidate``: Redis then sends it the name of every key
  under the store's prefix that is written, deleted, expired or flushed, whoever read
  it, and the listener drops the copy. A write, an erasure's ``DEL`` and a ``FLUSHDB``
  all reach it the same way; a tombstone needs nothing (it only stops future writes).
  Broadcast mode, rather than Redis remembering the keys each read connection read,
  is chosen because Redis forgets what a connection read when that connection closes:
  the copies read through a pooled connection that was cut would then never be
  invalidated. Here the listener is the only connection whose loss matters, and it is
  watched. The price is a message per written key (Redis groups a turn's keys in one
  message) to every replica, read or not.
- **A read whose key is invalidated while it is in flight is not kept.** The reply and
  the invalidation come on different connections, so the invalidation of a write that
  landed just after the read may be seen before the reply; the in-flight count per key
  catches it. An invalidation seen after the reply is kept drops the copy.
- **Each listener (re)start is a new generation**: the copies are cleared, and a read
  begun under an earlier one keeps nothing.
- **While no listener runs, nothing is kept or answered from memory**: every read goes
  to Redis, as without the cache. The listener goes as soon as its connection fails or
  a ``PING`` it sends after ``ping_after_s`` of quiet is not answered within as long
  again; it is started again ``retry_s`` later.
- **Every copy is bounded in age** (``max_age_s``): should an invalidation be lost
  in a way Redis does not report (the listener's link silently cut before its ``PING``
  fails), a copy is still read again from Redis within that time. And the copies are
  bounded in number (``max_rows``, least recently used first out).

**No copy answers while an invalidation is waiting.** Before it answers from memory, a
read checks the listener's socket and buffer (a ``poll`` with no wait): with bytes
waiting there, it goes to Redis instead. Redis sends an invalidation in the same turn
of its event loop as the writer's acknowledgement, so once a write is acknowledged, a
request that reaches the replica after the invalidation reached the replica's host
never reads the row's previous value. The window left is a request that overtakes the
invalidation on its way (a client that learns of the write and reaches the replica
faster than Redis's own message does, about one network hop): it is not a
linearizable read. Feature TTLs are unaffected (a copy holds the row's event time, and
the read checks the TTL at the time of each request).

Only the running event loop of a replica uses the object (like its ``redis.asyncio``
client), so it takes no lock.
"""

from __future__ import annotations

import asyncio
import logging
import select
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = ["TrackedRows"]

log = logging.getLogger(__name__)

_CHANNEL = "__redis__:invalidate"
_MAX_RETRY_S = 30.0

Kept = Any
"""What the store keeps of one key's ``HMGET`` reply (the Redis store keeps it decoded)."""


class TrackedRows:
    """Single-key ``HMGET`` replies (as the store keeps them) kept while Redis tells this
    replica of every change under ``prefix``.

    Args:
        prefix: The store's key prefix (the listener hears of the keys under
            ``<prefix>:``).
        max_rows: Keys kept at most (the least recently used goes first).
        max_age_s: Longest a copy answers before it is read from Redis again.
        ping_after_s: Quiet time on the listener after which it sends a ``PING``; an
            answer not back within as long again ends the listener.
        retry_s: Wait before a failed or ended listener is started again (doubled after
            each further failure in a row, up to 30 s; only the first is a warning).
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        prefix: str,
        max_rows: int,
        max_age_s: float,
        *,
        ping_after_s: float = 5.0,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rows < 1 or max_age_s <= 0:
            raise ValueError("max_rows must be >= 1 and max_age_s > 0")
        self._prefix = f"{prefix}:"
        self._max_rows = max_rows
        self._max_age_s = max_age_s
        self._ping_after_s = ping_after_s
        self._retry_s = retry_s
        self._clock = clock
        self._rows: OrderedDict[str, tuple[float, tuple[Any, ...], Kept]] = OrderedDict()
        self._in_flight: dict[str, list[int]] = {}  # key -> [reads, invalidated (0/1)]
        self._generation = 0
        self._listener_id: int | None = None
        self._waiting: Callable[[], bool] = _always
        self._task: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def live(self) -> bool:
        """Whether a listener is subscribed: only then are copies kept and answered."""
        return self._listener_id is not None

    # -- the listener -------------------------------------------------------------------

    def start(self, open_listener: Callable[[], Awaitable[Any]]) -> None:
        """Run the listener on the running event loop (once): ``open_listener`` returns
        a new, connected RESP2 ``redis.asyncio`` connection."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen(open_listener))

    async def _listen(self, open_listener: Callable[[], Awaitable[Any]]) -> None:
        failures = 0
        while True:
            connection: Any = None
            try:
                connection = await open_listener()
                await connection.send_command("CLIENT", "ID")
                listener_id = int(await connection.read_response())
                await connection.send_command(
                    "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", "PREFIX",
                    self._prefix,
                )  # fmt: skip
                await connection.read_response()
                await connection.send_command("SUBSCRIBE", _CHANNEL)
                await connection.read_response()
                self._go_live(listener_id, _waiting_probe(connection))
                failures = 0
                await self._follow(connection)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ValueError) as exc:
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "Redis row cache: the invalidation listener stopped (%s: %s); reading "
                    "Redis on every request until it is back",
                    type(exc).__name__,
                    exc,
                )
            finally:
                self._go_dark()
                if connection is not None:
                    await connection.disconnect()
            # Back off while it keeps failing (an ACL without the channel, Redis down).
            await asyncio.sleep(min(self._retry_s * 2 ** max(failures - 1, 0), _MAX_RETRY_S))

    async def _follow(self, connection: Any) -> None:
        """Apply the invalidations the listener receives until its connection fails."""
        awaiting_pong = False
        while True:
            message = await connection.read_response(timeout=self._ping_after_s)
            if message is None:  # quiet for ping_after_s
                if awaiting_pong:
                    raise RedisConnectionError("the listener's PING was not answered")
                await connection.send_command("PING")
                awaiting_pong = True
                continue
            kind = message[0]
            if kind == b"pong":
                awaiting_pong = False
            elif kind == b"message":
                self.invalidate(message[2])

    def _go_live(self, listener_id: int, waiting: Callable[[], bool]) -> None:
        self._generation += 1
        self._rows.clear()
        self._listener_id = listener_id
        self._waiting = waiting

    def _go_dark(self) -> None:
        if self._listener_id is not None:
            self._generation += 1
            self._listener_id = None
        self._waiting = _always
        self._rows.clear()

    def invalidate(self, keys: Sequence[bytes | str] | None) -> None:
        """Drop the copies of ``keys``; None (Redis's word for a flush) drops them all.
        A read of one of them in flight will not keep its reply."""
        if keys is None:
            self._rows.clear()
            for slot in self._in_flight.values():
                slot[1] = 1
            return
        for raw in keys:
            key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
            self.invalidations += self._rows.pop(key, None) is not None
            doubted = self._in_flight.get(key)
            if doubted is not None:
                doubted[1] = 1

    # -- reads ---------------------------------------------------------------------------

    def answering(self) -> bool:
        """Whether kept copies may answer now: a listener runs and no bytes wait on its
        connection (an invalidation not yet applied). Asked once per batch of reads."""
        return self._listener_id is not None and not self._waiting()

    def lookup(self, key: str, fields: tuple[Any, ...]) -> Kept | None:
        """The kept reply of ``HMGET key *fields``, or None (not kept, too old, other
        fields); only after :meth:`answering` said yes, in the same step of the loop."""
        entry = self._rows.get(key)
        if entry is None or entry[1] != fields:
            self.misses += 1
            return None
        if self._clock() - entry[0] > self._max_age_s:
            del self._rows[key]
            self.misses += 1
            return None
        self._rows.move_to_end(key)
        self.hits += 1
        return entry[2]

    def begin(self, keys: Sequence[str]) -> int:
        """Mark reads of ``keys`` in flight; the generation they started in."""
        for key in keys:
            slot = self._in_flight.setdefault(key, [0, 0])
            slot[0] += 1
        return self._generation

    def finish(
        self,
        reads: Sequence[tuple[str, tuple[Any, ...]]],
        replies: Sequence[Kept | None] | None,
        generation: int,
    ) -> None:
        """End the in-flight reads ``(key, fields)`` begun in ``generation``, keeping
        their ``replies`` when nothing made them doubtful (None: the read failed; a
        reply of None: nothing to keep for that key)."""
        keep = (
            replies is not None and self._listener_id is not None and generation == self._generation
        )
        now = self._clock()
        for index, (key, fields) in enumerate(reads):
            slot = self._in_flight[key]
            if keep and not slot[1]:
                assert replies is not None
                if (reply := replies[index]) is not None:
                    self._rows[key] = (now, fields, reply)
                    self._rows.move_to_end(key)
            slot[0] -= 1
            if slot[0] == 0:
                del self._in_flight[key]
        while len(self._rows) > self._max_rows:
            self._rows.popitem(last=False)


def _always() -> bool:
    return True


def _waiting_probe(connection: Any) -> Callable[[], bool]:
    """Whether bytes wait for the listener: in its stream's buffer (read from the
    socket, not yet parsed) or in its socket. Reaches into ``redis.asyncio``'s
    connection (its ``_reader``, an :class:`asyncio.StreamReader`, and that reader's
    ``_buffer``): a version that moves them makes every read go to Redis (the probe
    then always answers True), never a stale one."""
    reader = getattr(connection, "_reader", None)
    writer = getattr(connection, "_writer", None)
    buffer = getattr(reader, "_buffer", None)
    sock = None if writer is None else writer.get_extra_info("socket")
    if not isinstance(buffer, bytearray) or sock is None:
        log.warning("Redis row cache: cannot watch the listener's socket; not caching")
        return _always
    poller = select.poll()  # not select(): a replica's descriptors may pass FD_SETSIZE
    poller.register(sock.fileno(), select.POLLIN)

    def waiting() -> bool:
        return bool(buffer) or bool(poller.poll(0))

    return waiting
