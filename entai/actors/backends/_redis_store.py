"""Redis online store: one hash per (view, entity), last-write-wins in a Lua script.

Layout: key ``<prefix>:<view>:<entity_key>`` holds ``@e`` and ``@c`` (event and created
time, integer microseconds since the epoch) and one field per feature whose value is
its JSON encoding (keeps int, float, str, bool, None and the lists of list-valued
features apart: :func:`_encode` writes, :func:`_result` reads). Every command touches
one key, so the layout also works on Redis Cluster.

Writes run a compare-and-set Lua script (loaded once, called with EVALSHA) in one
pipeline per batch: a row replaces the hash only if its ``(event_ts, created_ts)`` is
strictly greater, atomically in Redis, whatever process or order the writes come from.
A columnar :class:`~entai.shared.features.OnlineBatch` (:meth:`RedisOnlineStore.write_batch`)
runs the same check for up to ``_BATCH_ROWS`` rows per script call (standalone Redis:
every key on one server), row after row in the batch's order, its values encoded a
column at a time; in ``cluster_mode`` it is written row by row.
Reads take one round trip per batch (an ``HMGET``, or the read script for many keys).
:meth:`RedisOnlineStore.read_many_async` reads several views' keys in one round trip
on the running event loop (``redis.asyncio``), for the serving replicas' predict path;
with ``cache_rows`` it answers repeated single-key reads from the replica's memory while
Redis tells it of every change under the prefix (:mod:`entai.actors.backends._redis_row_cache`).
Retrying a batch is always safe: it is idempotent under last-write-wins.

Tombstones (:mod:`entai.shared.features._tombstones`) are string keys
``<prefix>:@tombstone:<id>`` holding the erase time, expiring with the tombstone
(``PXAT``); no view is named ``@...``, so scans skip them. The write script checks a
row's tombstones in the same atomic step as last-write-wins. In ``cluster_mode`` a row
and its tombstones live in different slots, so the batch reads the tombstones first
(one pipelined ``MGET`` per key): an erasure landing between that read and the write
is then undone by the erasure's own delete, not by the check.

Most writes happen while no tombstone is live, so the batch write does not look them
up at first: :meth:`RedisOnlineStore.tombstone` first raises the marker
``<prefix>:@tombstone:live`` (expiring with the latest tombstone), and a batch call sent
without its rows' tombstone keys writes only while the marker is absent; finding it,
the call writes nothing and is sent again with every row's tombstone keys. Both
checks run inside the script, so a tombstone written between two calls is never missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from entai.actors.backends._redis_row_cache import TrackedRows
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.features import (
    MISSING,
    FeatureRow,
    OnlineBatch,
    ReadRequest,
    ReadResult,
    assemble_result,
    tombstone_id,
    tombstone_ids,
)

__all__ = ["RedisOnlineStore"]

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EVENT, _CREATED = "@e", "@c"
_TOMBSTONES = "@tombstone"
_LIVE = "live"
"""The marker's id among the tombstones' (theirs are 32 hex digits)."""
_APPLIED, _DROPPED = 1, 2
_UNCHECKED = -1
"""A batch call sent without tombstone keys found the marker: nothing written."""
_SCAN_BATCH = 500
_BATCH_ROWS = 500
"""Rows per call of the batch write script (one call blocks Redis while it runs)."""
_T = TypeVar("_T")

_Reply = list[bytes | None]
"""One key's ``HMGET`` reply: its event time, then the requested features' values."""

_Command = tuple[bool, tuple[Any, ...]]
"""A read: ``(True, EVALSHA arguments)`` runs the read script, which replies one
:data:`_Reply` per key; ``(False, (key, *fields))`` is one key's ``HMGET``."""

_Row = tuple[datetime, list[Any]] | None
"""One key's row decoded, as :func:`assemble_result` takes it: its event time and the
requested features' values (:data:`MISSING` for one not stored); None: no row."""

# KEYS[1] row hash, KEYS[2..] its tombstones; ARGV[1] event us, ARGV[2] created us,
# ARGV[3..] field/value pairs. Returns 1 applied, 0 older than the row, 2 tombstoned.
# Lua numbers are doubles: exact for microsecond timestamps until the year 2255.
_LWW_SCRIPT = """
for i = 2, #KEYS do
  local erased = redis.call('GET', KEYS[i])
  if erased and tonumber(ARGV[1]) <= tonumber(erased) then return 2 end
end
local cur = redis.call('HMGET', KEYS[1], '@e', '@c')
if cur[1] then
  local ce, cc = tonumber(cur[1]), tonumber(cur[2])
  local ne, nc = tonumber(ARGV[1]), tonumber(ARGV[2])
  if ne < ce or (ne == ce and nc <= cc) then return 0 end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], '@e', ARGV[1], '@c', ARGV[2], unpack(ARGV, 3))
return 1
"""

# The same check for many rows of one view, in order. KEYS[1] the live-tombstones
# marker; ARGV[1] "1" when the rows come with their tombstone keys, "0" when they come
# without (then, if the marker exists, nothing is written and the reply is {-1});
# ARGV[2] the feature count F, ARGV[3..F+2] their names, then per row: event us,
# created us, its tombstone count T and its F values; KEYS per row from KEYS[2]: its
# hash, then its T tombstones. One reply per row.
_LWW_BATCH_SCRIPT = """
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
local nf = tonumber(ARGV[2])
local out = {}
local k, a = 2, nf + 3
while a <= #ARGV do
  local key, ev, cr, nt = KEYS[k], ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local ne, nc = tonumber(ev), tonumber(cr)
  local status = 1
  for i = k + 1, k + nt do
    local erased = redis.call('GET', KEYS[i])
    if erased and ne <= tonumber(erased) then
      status = 2
      break
    end
  end
  if status == 1 then
    local cur = redis.call('HMGET', key, '@e', '@c')
    if cur[1] then
      local ce, cc = tonumber(cur[1]), tonumber(cur[2])
      if ne < ce or (ne == ce and nc <= cc) then
        status = 0
      else
        redis.call('DEL', key)
      end
    end
  end
  if status == 1 then
    local args = {'@e', ev, '@c', cr}
    for j = 1, nf do
      args[#args + 1] = ARGV[2 + j]
      args[#args + 1] = ARGV[a + 2 + j]
    end
    redis.call('HSET', key, unpack(args))
  end
  out[#out + 1] = status
  k = k + 1 + nt
  a = a + 3 + nf
end
return out
"""

# KEYS[1] the live-tombstones marker, ARGV[1] a tombstone's expiry (epoch ms): the
# marker lives until the latest expiry it was given.
_MARK_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[1]) end
return 0
"""

# KEYS: row hashes; ARGV: fields. One reply per key, as HMGET's; one round trip.
_READ_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def _from_micros(raw: bytes) -> datetime:
    return _EPOCH + timedelta(microseconds=int(raw))


def _encode(row: FeatureRow, name: str, value: Any) -> str:
    try:
        return json.dumps(value, default=_numpy_scalar)
    except TypeError as exc:
        raise InvalidInputError(
            f"feature {row.view}:{name} has unsupported value type {type(value).__name__}",
            details={"field": f"{row.view}:{name}", "type": type(value).__name__},
        ) from exc


def _numpy_scalar(value: Any) -> Any:
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(type(value).__name__)
    return item()


_JSON = json.JSONEncoder(default=_numpy_scalar)
"""``json.dumps(value, default=_numpy_scalar)`` without building an encoder per call."""


def _encode_column(view: str, name: str, values: Sequence[Any]) -> list[str]:
    """A column's values as :func:`_encode` gives them, the common types without a
    JSON encoder call (``json.dumps`` writes them the same way)."""
    out: list[str] = []
    for value in values:
        kind = type(value)
        if kind is str:
            out.append(encode_basestring_ascii(value))
        elif kind is int:
            out.append(int.__repr__(value))
        elif kind is float and math.isfinite(value):
            out.append(float.__repr__(value))
        elif value is None:
            out.append("null")
        elif kind is bool:
            out.append("true" if value else "false")
        else:
            try:
                out.append(_JSON.encode(value))
            except TypeError as exc:
                raise InvalidInputError(
                    f"feature {view}:{name} has unsupported value type {kind.__name__}",
                    details={"field": f"{view}:{name}", "type": kind.__name__},
                ) from exc
    return out


def _rebuild(
    url: str, key_prefix: str, cluster_mode: bool, cache_rows: int = 0, cache_max_age_s: float = 30
) -> RedisOnlineStore:
    return RedisOnlineStore(
        url,
        key_prefix,
        cluster_mode=cluster_mode,
        cache_rows=cache_rows,
        cache_max_age_s=cache_max_age_s,
    )


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisOnlineStore:
    """Online store in Redis.

    Args:
        url: ``redis://`` or ``rediss://`` URL; never logged.
        key_prefix: Namespace of every key this store touches.
        cluster_mode: False (standalone, the default) reads a batch of keys with one
            EVALSHA, which needs all keys on one server; True reads with one pipelined
            HMGET per key, which Redis Cluster can route by slot.
        cache_rows: Keys whose single-key reads :meth:`read_many_async` keeps in memory
            while Redis reports every change under the prefix (:class:`TrackedRows`);
            0 (the default), and ``cluster_mode``, read Redis every time.
        cache_max_age_s: Longest a kept read answers before it is read again.
    """

    def __init__(
        self,
        url: str,
        key_prefix: str,
        *,
        cluster_mode: bool = False,
        cache_rows: int = 0,
        cache_max_age_s: float = 30.0,
    ) -> None:
        if not key_prefix:
            raise InvalidInputError("key_prefix must be non-empty", details={"field": "key_prefix"})
        self._url = url
        self.key_prefix = key_prefix
        self.cluster_mode = cluster_mode
        self.cache_rows = 0 if cluster_mode else cache_rows
        self.cache_max_age_s = cache_max_age_s
        self._client: redis.Redis = redis.Redis.from_url(url)
        self._async: _LoopClient | None = None
        self._lww_sha = self._lww_batch_sha = self._read_sha = self._mark_sha = ""
        self.tombstoned_writes = 0
        self._load_scripts()

    def __repr__(self) -> str:
        return (
            f"RedisOnlineStore(key_prefix={self.key_prefix!r}, cluster_mode={self.cluster_mode}, "
            f"cache_rows={self.cache_rows})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        options = (self.cluster_mode, self.cache_rows, self.cache_max_age_s)
        return (_rebuild, (self._url, self.key_prefix, *options))

    @property
    def row_cache(self) -> TrackedRows | None:
        """The running event loop's kept reads (None without ``cache_rows``, or before
        the loop's first read)."""
        return None if self._async is None else self._async.rows

    def close(self) -> None:
        """Release the connection pool (an event loop's client goes with its loop)."""
        self._client.close()
        self._async = None

    def _load_scripts(self) -> None:
        try:
            self._lww_sha = str(self._client.script_load(_LWW_SCRIPT))
            self._lww_batch_sha = str(self._client.script_load(_LWW_BATCH_SCRIPT))
            self._read_sha = str(self._client.script_load(_READ_SCRIPT))
            self._mark_sha = str(self._client.script_load(_MARK_SCRIPT))
        except RedisError as exc:
            raise self._unavailable("connect", exc) from exc

    def _unavailable(self, action: str, exc: RedisError, **details: Any) -> ServiceUnavailableError:
        # Redis's own text names the server (host:port): it goes to the log, not into the
        # error, which may end up in a response body.
        logger.warning(
            "Redis online store %s failed: %s: %s",
            action,
            type(exc).__name__,
            exc,
            extra={"action": action},
        )
        return ServiceUnavailableError(
            f"Redis online store {action} failed: {type(exc).__name__}",
            details={"backend": "redis", "key_prefix": self.key_prefix, **details},
        )

    def _call(self, action: str, fn: Callable[[], _T], **details: Any) -> _T:
        """Run ``fn``, reloading the scripts once if Redis lost them (restart, flush).

        Re-running is safe: writes are idempotent under last-write-wins.
        """
        try:
            try:
                return fn()
            except NoScriptError:
                logger.warning("Redis lost entai's Lua scripts; reloading and retrying")
                self._load_scripts()
                return fn()
        except RedisError as exc:
            raise self._unavailable(action, exc, **details) from exc

    async def _call_async(self, action: str, fn: Callable[[], Awaitable[_T]], **details: Any) -> _T:
        """:meth:`_call` for a coroutine; the rare script reload blocks the loop once."""
        try:
            try:
                return await fn()
            except NoScriptError:
                logger.warning("Redis lost entai's Lua scripts; reloading and retrying")
                self._load_scripts()
                return await fn()
        except RedisError as exc:
            raise self._unavailable(action, exc, **details) from exc

    def _async_client(self) -> _LoopClient:
        """The running loop's client (``redis.asyncio`` connections belong to one loop)
        and its kept reads, whose listener it starts."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async.loop is not loop:
            client = redis.asyncio.Redis.from_url(self._url)
            rows = None
            if self.cache_rows:
                rows = TrackedRows(self.key_prefix, self.cache_rows, self.cache_max_age_s)
                rows.start(lambda: _listener_connection(client))
            self._async = _LoopClient(loop, client, rows)
        return self._async

    def _key(self, view: str, key: str) -> str:
        return f"{self.key_prefix}:{view}:{key}"

    def _tombstone_key(self, tid: str) -> str:
        return f"{self.key_prefix}:{_TOMBSTONES}:{tid}"

    def write(self, rows: Sequence[FeatureRow]) -> int:
        """Apply rows with last-write-wins in one pipeline; return rows applied.

        Rows a live tombstone covers are dropped and counted in ``tombstoned_writes``.
        """
        if not rows:
            return 0
        if self.cluster_mode:
            rows = self._not_tombstoned(rows)
        commands = []
        for row in rows:
            args: list[Any] = [_micros(row.event_ts), _micros(row.created_ts)]
            for name, value in row.values.items():
                args += (name, _encode(row, name, value))
            keys = [self._key(row.view, row.entity_key)]
            if not self.cluster_mode:
                keys += [self._tombstone_key(t) for t in tombstone_ids(row.entity_key)]
            commands.append((keys, args))

        def run() -> list[Any]:
            with self._client.pipeline(transaction=False) as pipe:
                for keys, args in commands:
                    pipe.evalsha(self._lww_sha, len(keys), *keys, *args)
                return pipe.execute()

        replies = [int(r) for r in self._call("write", run, rows=len(rows))] if commands else []
        dropped = replies.count(_DROPPED)
        if dropped:
            self.tombstoned_writes += dropped
            logger.info("dropped %d writes of erased keys", dropped)
        return replies.count(_APPLIED)

    def write_batch(self, batch: OnlineBatch) -> int:
        """:meth:`write` of ``batch.rows()``: up to ``_BATCH_ROWS`` rows per script
        call, every call in one pipeline (cluster mode: row by row). The calls go
        without the rows' tombstone keys; one that finds a tombstone live is sent again
        with them."""
        if not len(batch):
            return 0
        if self.cluster_mode:
            return self.write(batch.rows())
        names = list(batch.features)
        values = [
            _encode_column(batch.view, n, c) for n, c in zip(names, batch.columns, strict=True)
        ]
        prefix = f"{self.key_prefix}:{batch.view}:"
        marker = self._tombstone_key(_LIVE)

        def call(start: int, checked: bool) -> tuple[list[str], list[Any]]:
            keys = [marker]
            args: list[Any] = ["1" if checked else "0", len(names), *names]
            for i in range(start, min(start + _BATCH_ROWS, len(batch))):
                key = batch.keys[i]
                tombstones = [self._tombstone_key(t) for t in tombstone_ids(key)] if checked else []
                keys += (prefix + key, *tombstones)
                args += (batch.event_us[i], batch.created_us[i], len(tombstones))
                args += (column[i] for column in values)
            return keys, args

        def run(calls: list[tuple[list[str], list[Any]]]) -> list[list[int]]:
            with self._client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(self._lww_batch_sha, len(keys), *keys, *args)
                return [[int(r) for r in reply] for reply in pipe.execute()]

        starts = list(range(0, len(batch), _BATCH_ROWS))
        replies = self._call(
            "write", lambda: run([call(s, False) for s in starts]), rows=len(batch)
        )
        again = [s for s, reply in zip(starts, replies, strict=True) if reply == [_UNCHECKED]]
        if again:
            checked = iter(self._call("write", lambda: run([call(s, True) for s in again])))
            replies = [next(checked) if r == [_UNCHECKED] else r for r in replies]
        statuses = [r for reply in replies for r in reply]
        dropped = statuses.count(_DROPPED)
        if dropped:
            self.tombstoned_writes += dropped
            logger.info("dropped %d writes of erased keys", dropped)
        return statuses.count(_APPLIED)

    def _not_tombstoned(self, rows: Sequence[FeatureRow]) -> list[FeatureRow]:
        """Cluster mode: the rows no live tombstone covers, read before the write."""
        ids = [tombstone_ids(row.entity_key) for row in rows]

        def run() -> list[Any]:
            with self._client.pipeline(transaction=False) as pipe:
                for group in ids:
                    for tid in group:
                        pipe.get(self._tombstone_key(tid))
                return pipe.execute()

        stamps = iter(self._call("tombstones", run))
        kept = []
        for row, group in zip(rows, ids, strict=True):
            erased = [int(v) for v in (next(stamps) for _ in group) if v is not None]
            if any(_micros(row.event_ts) <= at for at in erased):
                self.tombstoned_writes += 1
            else:
                kept.append(row)
        return kept

    def tombstone(self, keys: Sequence[str], erased_at: datetime, retention: timedelta) -> int:
        """Tombstone ``keys`` until ``erased_at + retention`` (Redis expires them); return
        the tombstones written."""
        expires = erased_at + retention
        if expires <= datetime.now(UTC):
            return 0
        erased_us, expires_ms = _micros(erased_at), _micros(expires) // 1000
        names = [self._tombstone_key(tombstone_id(k)) for k in sorted(set(keys))]

        def run() -> None:
            with self._client.pipeline(transaction=False) as pipe:
                if not self.cluster_mode:  # first: a batch write after any of them sees it
                    pipe.evalsha(self._mark_sha, 1, self._tombstone_key(_LIVE), expires_ms)
                for name in names:
                    pipe.set(name, erased_us, pxat=expires_ms)
                pipe.execute()

        self._call("tombstone", run, keys=len(names))
        return len(names)

    def read(
        self,
        view: str,
        keys: Sequence[str],
        features: Sequence[str],
        *,
        ttl: timedelta | None,
        now: datetime,
    ) -> ReadResult:
        """Read ``features`` of ``view`` for ``keys``: one round trip for the batch."""
        commands = self._read_commands(view, keys, features)
        if not commands:
            return _result([], features, ttl, now)

        def run() -> list[Any]:
            if len(commands) == 1:
                return [_issue(self._client, commands[0])]
            with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    _issue(pipe, command)
                return pipe.execute()

        replies = _per_key(commands, self._call("read", run, view=view))
        return _result(replies, features, ttl, now)

    async def read_many_async(
        self, requests: Sequence[ReadRequest], now: datetime
    ) -> list[ReadResult]:
        """:meth:`read` of several views at once, on the running event loop.

        Every view's commands go in one pipeline (one round trip); a read of one key of
        one view is a single ``HMGET``.
        """
        plans = [self._read_commands(r.view, r.keys, r.features) for r in requests]
        commands = [c for plan in plans for c in plan]
        views = [r.view for r in requests]
        answers = (
            await self._call_async("read", lambda: self._round_trip(commands), views=views)
            if commands
            else []
        )
        results: list[ReadResult] = []
        done = 0
        for request, plan in zip(requests, plans, strict=True):
            rows = _rows(plan, answers[done : done + len(plan)], len(request.features))
            done += len(plan)
            results.append(assemble_result(request.features, rows, ttl=request.ttl, now=now))
        return results

    async def _round_trip(self, commands: Sequence[_Command]) -> list[Any]:
        """The commands' answers, in order (:func:`_fetch`'s): the kept ones from memory
        (single-key reads, while the loop's :class:`TrackedRows` has a listener), the
        rest from Redis."""
        client = self._async_client()
        rows = client.rows
        if rows is None or not rows.answering():  # no listener, or an invalidation waits
            return await _fetch(client.redis, commands, rows)  # finish() keeps what is sure
        replies: list[Any] = [None] * len(commands)
        missing: list[int] = []
        for index, (script, args) in enumerate(commands):
            kept = None if script else rows.lookup(args[0], args[1:])
            if kept is None:
                missing.append(index)
            else:
                (replies[index],) = kept
        if missing:
            fetched = await _fetch(client.redis, [commands[i] for i in missing], rows)
            for index, reply in zip(missing, fetched, strict=True):
                replies[index] = reply
        return replies

    def _read_commands(
        self, view: str, keys: Sequence[str], features: Sequence[str]
    ) -> list[_Command]:
        """The commands reading one view's keys: one ``HMGET`` for one key, else the
        read script (standalone) or one ``HMGET`` per key (cluster mode, routed by slot)."""
        fields = (_EVENT, *features)
        prefix = f"{self.key_prefix}:{view}:"
        names = [prefix + k for k in keys]
        if len(names) == 1 or (names and self.cluster_mode):
            return [(False, (name, *fields)) for name in names]
        if names:
            return [(True, (self._read_sha, len(names), *names, *fields))]
        return []

    def delete(self, view: str | None, keys: Sequence[str]) -> int:
        """Delete the keys' rows in ``view``; with ``view=None`` scan every view."""
        names: list[str | bytes]
        if view is not None:
            names = [self._key(view, k) for k in set(keys)]
        else:
            wanted = set(keys)
            names = [name for name, _, key in self._scan_names(None) if key in wanted]
        if not names:
            return 0
        return self._call("delete", lambda: int(self._client.delete(*names)))

    def _scan_names(self, view: str | None) -> Iterator[tuple[bytes, str, str]]:
        start = f"{self.key_prefix}:" if view is None else f"{self.key_prefix}:{view}:"
        skip = len(self.key_prefix) + 1
        try:
            for name in self._client.scan_iter(match=_glob_escape(start) + "*", count=_SCAN_BATCH):
                row_view, _, key = name.decode()[skip:].partition(":")
                if row_view != _TOMBSTONES:
                    yield name, row_view, key
        except RedisError as exc:
            raise self._unavailable("scan", exc) from exc

    def scan(self, view: str | None = None) -> Iterator[FeatureRow]:
        """Every stored row (of ``view`` if given), fetched in pipelined batches."""
        batch: list[tuple[bytes, str, str]] = []
        for item in self._scan_names(view):
            batch.append(item)
            if len(batch) >= _SCAN_BATCH:
                yield from self._fetch_rows(batch)
                batch = []
        yield from self._fetch_rows(batch)

    def _fetch_rows(self, batch: Sequence[tuple[bytes, str, str]]) -> Iterator[FeatureRow]:
        def run() -> list[dict[bytes, bytes]]:
            with self._client.pipeline(transaction=False) as pipe:
                for name, _, _ in batch:
                    pipe.hgetall(name)
                return pipe.execute()

        hashes = self._call("scan", run)
        for (_, view, key), data in zip(batch, hashes, strict=True):
            event, created = data.pop(b"@e", None), data.pop(b"@c", None)
            if event is None or created is None:  # deleted between SCAN and HGETALL
                continue
            values = {f.decode(): json.loads(v) for f, v in data.items()}
            yield FeatureRow(view, key, values, _from_micros(event), _from_micros(created))


@dataclass(frozen=True)
class _LoopClient:
    """One event loop's ``redis.asyncio`` client and kept reads."""

    loop: asyncio.AbstractEventLoop
    redis: redis.asyncio.Redis
    rows: TrackedRows | None


async def _listener_connection(client: redis.asyncio.Redis) -> Any:
    """A new connection for :class:`TrackedRows`' listener: the client's server and
    credentials, RESP2 (invalidations as plain pub/sub messages)."""
    pool: Any = client.connection_pool  # redis-py leaves it untyped
    options = {**pool.connection_kwargs, "protocol": 2}
    connection = pool.connection_class(**options)
    await connection.connect()
    return connection


async def _fetch(
    client: redis.asyncio.Redis, commands: Sequence[_Command], rows: TrackedRows | None
) -> list[Any]:
    """The commands' answers: written at once on a pooled connection, read in order. A
    single-key read's answer is its decoded :data:`_Row`, a script's its raw replies.
    With ``rows``, the single-key rows are kept (decoded, so a kept read parses
    nothing) unless an invalidation doubts them; a row holding a list value is not
    kept, as the copy would be shared by every reader of the row.

    Below redis-py's pipeline, whose per-call work (a pipeline object, every argument
    packed through its encoder, its retry wrapper) was about a third of a predict
    request's read (``docs/benchmarks.md``). A connection that fails is closed. A
    connection error is tried once more on the same connection, reconnected: the pool
    may hold a socket Redis closed (a restart), and reads are idempotent; Redis still
    down fails the second try at once. A reply that does not decode fails the read and
    leaves the connection open (its replies were all read).
    """
    payload = b"".join(_packed(command) for command in commands)
    pool: Any = client.connection_pool  # redis-py leaves it untyped
    connection = await pool.get_connection()
    kept = [] if rows is None else [i for i, (script, _) in enumerate(commands) if not script]
    reads = [(commands[i][1][0], commands[i][1][1:]) for i in kept]
    generation = rows.begin([key for key, _ in reads]) if rows is not None else 0
    answers: list[Any] | None = None
    try:
        raw = await _exchange(connection, payload, len(commands))
        answers = [
            reply if script else _decoded([reply], len(reply) - 1)[0]
            for (script, _), reply in zip(commands, raw, strict=True)
        ]
        return answers
    finally:
        if rows is not None:
            replies = None if answers is None else [_keepable(answers[i]) for i in kept]
            rows.finish(reads, replies, generation)
        await pool.release(connection)


def _keepable(row: _Row) -> tuple[_Row] | None:
    """What :class:`TrackedRows` keeps of a decoded row (a 1-tuple, so that "no row" is
    kept too), or None for a row holding a list value (mutable, it is not shared)."""
    if row is not None and any(isinstance(value, (list, dict)) for value in row[1]):
        return None
    return (row,)


def _issue(target: Any, command: _Command) -> Any:
    """Send (or queue, on a pipeline) a read on a client or pipeline."""
    script, args = command
    if script:
        return target.evalsha(*args)
    return target.hmget(args[0], args[1:])


def _packed(command: _Command) -> bytes:
    """A read as the Redis protocol's array of bulk strings (``EVALSHA`` or ``HMGET``),
    its arguments encoded as redis-py encodes them (text as UTF-8, integers in decimal)."""
    script, args = command
    parts = [b"EVALSHA" if script else b"HMGET"]
    parts += [a if isinstance(a, bytes) else str(a).encode() for a in args]
    head = b"*%d\r\n" % len(parts)
    return head + b"".join(b"$%d\r\n%b\r\n" % (len(part), part) for part in parts)


async def _exchange(connection: Any, payload: bytes, replies: int) -> list[Any]:
    """Write ``payload`` on ``connection`` and read its ``replies`` replies, in order;
    a connection error is tried once more, reconnected; a connection that fails is
    closed (replies may be left unread on it)."""
    try:
        try:
            return await _send_and_read(connection, payload, replies)
        except (RedisConnectionError, RedisTimeoutError):
            await connection.disconnect()
            return await _send_and_read(connection, payload, replies)
    except BaseException:
        await connection.disconnect()
        raise


async def _send_and_read(connection: Any, payload: bytes, replies: int) -> list[Any]:
    await connection.send_packed_command(payload, check_health=False)
    return [await connection.read_response() for _ in range(replies)]


def _per_key(commands: Sequence[_Command], raw: Sequence[Any]) -> list[_Reply]:
    """Each key's ``HMGET`` reply, in key order, from the commands' raw replies."""
    replies: list[_Reply] = []
    for (per_key, _), reply in zip(commands, raw, strict=True):
        if per_key:
            replies.extend(reply)
        else:
            replies.append(reply)
    return replies


def _rows(commands: Sequence[_Command], answers: Sequence[Any], nf: int) -> list[_Row]:
    """Each key's decoded row, in key order, from :func:`_fetch`'s answers to
    ``commands`` (of ``nf`` features)."""
    rows: list[_Row] = []
    for (script, _), answer in zip(commands, answers, strict=True):
        if script:
            rows.extend(_decoded(answer, nf))
        else:
            rows.append(answer)
    return rows


def _result(
    replies: Sequence[_Reply], features: Sequence[str], ttl: timedelta | None, now: datetime
) -> ReadResult:
    """Decode the keys' replies (event time, then feature values) into a ReadResult."""
    return assemble_result(features, _decoded(replies, len(features)), ttl=ttl, now=now)


def _decoded(replies: Sequence[_Reply], nf: int) -> list[_Row]:
    """The keys' replies (event time, then ``nf`` feature values) as rows."""
    present = [r for r in replies if r[0] is not None]
    stamps = {raw: _from_micros(raw) for raw in {r[0] for r in present} if raw is not None}
    flat = [v for r in present for v in r[1:]]
    # One C-level JSON parse for every stored value instead of one call per cell.
    decoded = json.loads(b"[" + b",".join(v for v in flat if v is not None) + b"]")
    if len(decoded) < len(flat):  # some features absent from their rows
        it = iter(decoded)
        decoded = [MISSING if v is None else next(it) for v in flat]
    cells = iter(decoded[i * nf : (i + 1) * nf] for i in range(len(present)))
    return [None if r[0] is None else (stamps[r[0]], next(cells)) for r in replies]
