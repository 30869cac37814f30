"""OnlineFeatureClient: routes writes to FeatureShard actors and serves Feast-shaped reads.

Paths:
    * **writes** go to the owning shards (rendezvous hashing over shard ids), one call
      per shard, all in parallel; ``write`` returns once every shard acknowledged. Without
      shards they go to ``direct_store`` (for Redis: the same atomic Lua compare-and-set
      the shards run, so both paths can be mixed safely). ``write_batch`` writes one
      view's columnar :class:`~entai.shared.features.OnlineBatch` the same way (one
      sub-batch per owning shard; shards sharing one backend, Redis, get the whole
      batch in one call to one of them), with no per-row objects on the way.
    * **reads** fan out to the shards in parallel (one ``read_batch`` call per shard),
      or, with ``direct_store``, read the shards' backend from this process: no actor
      hop. For Redis that is the shared key prefix; for SQLite, the shards' files, which
      only a process on the shards' node can open (elsewhere the client reads through
      the shards). The backend is the source of truth and a write is acknowledged once
      it is stored there, so both paths return the same data.
      :meth:`~OnlineFeatureClient.get_online_features_async` is the same read for an
      event loop (a Serve replica): it awaits the shard calls on the loop instead of
      blocking a thread in ``ray.get``, awaits a direct store that reads on the loop
      (:class:`AsyncReads`: Redis, every view in one round trip), and runs any other
      direct store read in a thread. :meth:`~OnlineFeatureClient.read_async` is that
      read without the Feast shaping, for the predict path.

Every read is counted in ``entai_online_lookups`` (values per view and status) and
timed in ``entai_online_lookup_latency_s``; every write raises its views'
``entai_feature_event_time_s`` (see :mod:`entai.actors.core._metrics`).
With tracing on, a read is the span ``entai.online.read`` and a write
``entai.online.write``; the shard calls under them carry the trace to the shards.

Credentials: a client with shards is given the caller's ``credential`` (the user's API
token, or a platform service's credential) and sends it on every write, delete and
reshard call to the shards, retries included; the shards check it
(:class:`~entai.actors.features.FeatureShard`). Reads send none: the shards serve
them to anyone who reaches them, and ``authorize`` (when given) decides in this process.

The shard calls (fan-out, merge, retries) are in :mod:`entai.actors.features._shard_calls`: a
shard that dies mid-call is retried until it is back (``max_restarts=-1``); retrying
is safe because writes are idempotent under last-write-wins.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import ray
from ray.exceptions import RayActorError

from entai.actors.core import Metrics, span, trace_carrier, tracing_enabled
from entai.actors.features._feature_shard import FeatureShard, ShardHandle
from entai.actors.features._shard_calls import (
    call_shards,
    call_shards_async,
    merge_parts,
    split_by_shard,
)
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.features import (
    FeatureRow,
    OnlineBatch,
    OnlineStore,
    ReadRequest,
    ReadResult,
    entity_key,
    rendezvous_shard,
)

__all__ = ["AsyncReads", "Authorize", "OnlineFeatureClient"]

logger = logging.getLogger(__name__)

Authorize = Callable[[str, Sequence[str]], None]
"""``authorize(permission, feature_refs)``: raise (e.g. PermissionDeniedError) to refuse."""


@runtime_checkable
class AsyncReads(Protocol):
    """A direct store that reads on the running event loop (the Redis store)."""

    async def read_many_async(
        self, requests: Sequence[ReadRequest], now: datetime
    ) -> list[ReadResult]:
        """One result per request, in order, as ``OnlineStore.read`` gives them."""
        ...


class OnlineFeatureClient:
    """Client of the online store.

    Args:
        shards: FeatureShard actor handles, or None to use ``direct_store`` only.
        direct_store: A store read (and, without shards, written) from this process.
        authorize: Called as ``authorize("features:read", refs)`` before every read and
            ``authorize("features:write", views)`` before every write.
        credential: What this client presents to the shards' guarded methods (writes,
            deletes, resharding): the caller's API token or a platform service's
            credential. Required with shards; a direct-store-only client needs none.
    """

    def __init__(
        self,
        shards: Sequence[ShardHandle] | None,
        *,
        direct_store: OnlineStore | None = None,
        authorize: Authorize | None = None,
        credential: str | None = None,
    ) -> None:
        if not shards and direct_store is None:
            raise InvalidInputError(
                "OnlineFeatureClient needs shards or a direct_store",
                details={"field": "shards"},
            )
        if shards and not credential:
            raise InvalidInputError(
                "OnlineFeatureClient with shards needs a credential (an API token or a "
                "service credential): the shards refuse writes without one",
                details={"field": "credential"},
            )
        self._credential = credential
        self._direct = direct_store
        store: object = direct_store  # AsyncReads is a capability beyond OnlineStore
        self._direct_async = store if isinstance(store, AsyncReads) else None
        self._authorize = authorize
        self._lock = threading.RLock()
        self._shards: dict[str, ShardHandle] = {}
        self.shared_store = False
        if shards:
            infos = _infos(shards)
            self._shards, self.shared_store = _index(shards, infos)
            if direct_store is not None and not all(i.get("direct_reads") for i in infos):
                raise InvalidInputError(
                    "direct_store needs shards whose backend other processes can read "
                    "(Redis, SQLite): memory shards hold rows the direct store cannot see",
                    details={"field": "direct_store"},
                )
            if direct_store is not None and not self.shared_store and not _same_node(infos):
                logger.warning(
                    "the online store's files are on another node than this process: "
                    "reading through the shard actors"
                )
                self._direct = self._direct_async = None

    def __repr__(self) -> str:
        return f"OnlineFeatureClient(shards={list(self._shards)}, direct_store={self._direct!r})"

    @property
    def shard_ids(self) -> list[str]:
        """Ids of the shards this client routes to."""
        return list(self._shards)

    def write(self, rows: Sequence[FeatureRow]) -> int:
        """Write rows (last-write-wins) and wait for every acknowledgement.

        Returns:
            How many rows replaced the stored row.
        """
        if self._authorize is not None:
            self._authorize("features:write", sorted({r.view for r in rows}))
        route = "shards" if self._shards else "direct"
        with span("entai.online.write", {"entai.route": route, "entai.rows": len(rows)}):
            if not self._shards:
                assert self._direct is not None
                written = self._direct.write(rows)
            else:
                with self._lock:
                    groups = self._group_rows(rows)
                    calls = {s: (g,) for s, g in groups.items()}
                    replies = call_shards(
                        self._shards,
                        FeatureShard.write,
                        calls,
                        trace_carrier(),
                        credential=self._credential,
                    )
                    written = sum(replies)
        if Metrics.enabled():
            newest: dict[str, float] = {}
            for row in rows:
                newest[row.view] = max(newest.get(row.view, -math.inf), row.event_ts.timestamp())
            Metrics.feature_event_times(newest)
        return written

    def write_batch(self, batch: OnlineBatch) -> int:
        """:meth:`write` of ``batch.rows()`` (last-write-wins, in the batch's order), sent
        as columns: one sub-batch per owning shard, or the whole batch to one shard when
        the shards share one backend (Redis, whose script orders the writes).

        Returns:
            How many rows replaced the stored row.
        """
        if self._authorize is not None:
            self._authorize("features:write", [batch.view])
        route = "shards" if self._shards else "direct"
        with span("entai.online.write", {"entai.route": route, "entai.rows": len(batch)}):
            if not len(batch):
                written = 0
            elif not self._shards:
                assert self._direct is not None
                written = self._direct.write_batch(batch)
            else:
                with self._lock:
                    calls = {s: (b,) for s, b in self._split_batch(batch).items()}
                    replies = call_shards(
                        self._shards,
                        FeatureShard.write_batch,
                        calls,
                        trace_carrier(),
                        credential=self._credential,
                    )
                    written = sum(replies)
        if Metrics.enabled() and len(batch):
            Metrics.feature_event_times({batch.view: max(batch.event_us) / 1e6})
        return written

    def _split_batch(self, batch: OnlineBatch) -> dict[str, OnlineBatch]:
        """The batch by owning shard (a shared backend: all of it to the view's shard)."""
        ids = list(self._shards)
        if self.shared_store or len(ids) == 1:
            return {rendezvous_shard(batch.view, ids): batch}
        positions: dict[str, list[int]] = {}
        for i, key in enumerate(batch.keys):
            positions.setdefault(rendezvous_shard(key, ids), []).append(i)
        return {sid: batch.take(p) for sid, p in positions.items()}

    def get_online_features(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        *,
        join_keys: Mapping[str, Sequence[str]] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Read features for entities, Feast-shaped.

        Args:
            view_features: View name to the feature names wanted from it.
            entity_rows: One mapping of join keys per entity.
            ttls: Each view's max age (missing or None: no limit).
            join_keys: Per view, which join keys of an entity row form its key
                (default: all of them).
            now: Read time (default: the current UTC time).

        Returns:
            ``{"metadata": {"feature_names": ["view:feature", ...]}, "results": [...]}``
            with one result per feature: ``values``, ``statuses``, ``event_timestamps``
            in entity order.
        """
        refs, requests = self._plan(view_features, entity_rows, ttls, join_keys)
        now = now or datetime.now(UTC)
        started = time.perf_counter()
        with span("entai.online.read", self._span_attributes(requests)):
            if self._direct is not None:
                results = self._read_direct(requests, now)
            else:
                parts, calls = split_by_shard(requests, list(self._shards), now)
                replies = call_shards(self._shards, FeatureShard.read_batch, calls, trace_carrier())
                results = merge_parts(requests, parts, replies)
        self._record(requests, results, started)
        return _feast(refs, results)

    async def get_online_features_async(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        *,
        join_keys: Mapping[str, Sequence[str]] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """:meth:`get_online_features` for an event loop; the same arguments and answer.

        Shard calls are awaited on the running loop (all shards at once); a direct
        store read is awaited on the loop when the store offers it (:class:`AsyncReads`),
        else it blocks a worker thread. Authorization (when configured) runs on the
        loop, so it must not block.
        """
        refs, requests = self._plan(view_features, entity_rows, ttls, join_keys)
        return _feast(refs, await self._read_async(requests, now or datetime.now(UTC)))

    async def read_async(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        *,
        join_keys: Mapping[str, Sequence[str]] | None = None,
        keys: Mapping[str, Sequence[str]] | None = None,
        now: datetime | None = None,
    ) -> list[ReadResult]:
        """:meth:`get_online_features_async` as one :class:`ReadResult` per view, in order.

        Args:
            keys: Canonical entity keys already worked out for some views (one per
                entity row, in order); the other views' keys are built from the rows.
        """
        _, requests = self._plan(view_features, entity_rows, ttls, join_keys, keys)
        return await self._read_async(requests, now or datetime.now(UTC))

    async def _read_async(self, requests: Sequence[ReadRequest], now: datetime) -> list[ReadResult]:
        started = time.perf_counter()
        with span("entai.online.read", self._span_attributes(requests)):
            if self._direct_async is not None:
                results = await self._direct_async.read_many_async(requests, now)
            elif self._direct is not None:
                results = await asyncio.to_thread(self._read_direct, requests, now)
            else:
                parts, calls = split_by_shard(requests, list(self._shards), now)
                replies = await call_shards_async(
                    self._shards, FeatureShard.read_batch, calls, trace_carrier()
                )
                results = merge_parts(requests, parts, replies)
        self._record(requests, results, started)
        return results

    def _span_attributes(self, requests: Sequence[ReadRequest]) -> dict[str, Any] | None:
        if not tracing_enabled():
            return None
        return {
            "entai.route": "direct" if self._direct is not None else "shards",
            "entai.views": [r.view for r in requests],
            "entai.entities": len(requests[0].keys) if requests else 0,
        }

    def _plan(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        join_keys: Mapping[str, Sequence[str]] | None,
        keys: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[list[str], list[ReadRequest]]:
        """Authorize a read and turn it into one request per view."""
        refs = [f"{v}:{f}" for v, feats in view_features.items() for f in feats]
        if self._authorize is not None:
            self._authorize("features:read", refs)
        known = keys or {}
        requests = [
            ReadRequest(
                view,
                known[view] if view in known else self._keys(view, entity_rows, join_keys),
                feats,
                ttls.get(view),
            )
            for view, feats in view_features.items()
        ]
        return refs, requests

    def _read_direct(self, requests: Sequence[ReadRequest], now: datetime) -> list[ReadResult]:
        assert self._direct is not None
        return [self._direct.read(r.view, r.keys, r.features, ttl=r.ttl, now=now) for r in requests]

    def _record(
        self, requests: Sequence[ReadRequest], results: Sequence[ReadResult], started: float
    ) -> None:
        """Record a read's metrics: values per view and status, and its latency."""
        Metrics.online_read(
            "direct" if self._direct is not None else "shards",
            time.perf_counter() - started,
            ((req.view, res.statuses) for req, res in zip(requests, results, strict=True)),
        )

    def delete(self, view: str | None, keys: Sequence[str]) -> int:
        """Delete the keys' rows in ``view`` (every view if None) on every shard."""
        if not self._shards:
            assert self._direct is not None
            return self._direct.delete(view, keys)
        with self._lock:
            calls = {s: (view, list(keys)) for s in self._shards}
            if self.shared_store:  # one shared backend: any shard deletes for all
                calls = dict([next(iter(calls.items()))])
            return sum(
                call_shards(self._shards, FeatureShard.delete, calls, credential=self._credential)
            )

    def reshard(
        self, old_handles: Sequence[ShardHandle], new_handles: Sequence[ShardHandle]
    ) -> int:
        """Move every row whose owner changes from the old shard set to the new one.

        Order: copy every moving row to its new owner and wait for the acks, switch this
        client's routing, then delete the copies' sources. Nothing is lost at any step,
        reads through this client find every row throughout, and last-write-wins makes a
        re-run safe. Writes through this client wait for it; pause other writers (whose
        writes to an old owner after the copy would be deleted) while it runs. A shared
        (Redis) backend moves nothing: only the routing changes.

        Returns:
            How many rows moved.
        """
        old, _ = _describe(old_handles)
        new, shared = _describe(new_handles)
        with self._lock:
            found = _get(
                [
                    h.keys_for_reshard.remote(list(new), credential=self._credential)
                    for h in old.values()
                ]
            )
            moving: dict[str, list[FeatureRow]] = dict(zip(old, found, strict=True))
            groups = self._group_rows([r for rows in moving.values() for r in rows], list(new))
            call_shards(
                new,
                FeatureShard.write,
                {s: (g,) for s, g in groups.items()},
                credential=self._credential,
            )
            self._shards, self.shared_store = new, shared
            deletes: list[Any] = []
            for shard_id, rows in moving.items():
                by_view: dict[str, list[str]] = {}
                for row in rows:
                    by_view.setdefault(row.view, []).append(row.entity_key)
                deletes += (
                    old[shard_id].delete.remote(v, k, credential=self._credential)
                    for v, k in by_view.items()
                )
                logger.info("reshard moved %d rows off %s", len(rows), shard_id)
            _get(deletes)
            return sum(map(len, moving.values()))

    def _keys(
        self,
        view: str,
        entity_rows: Sequence[Mapping[str, Any]],
        join_keys: Mapping[str, Sequence[str]] | None,
    ) -> list[str]:
        names = None if join_keys is None else join_keys.get(view)
        if names is None:
            return [entity_key(row) for row in entity_rows]
        try:
            return [entity_key({n: row[n] for n in names}) for row in entity_rows]
        except KeyError as exc:
            raise InvalidInputError(
                f"entity row lacks join key {exc.args[0]!r} of view {view!r}",
                details={"field": str(exc.args[0]), "view": view},
            ) from None

    def _group_rows(
        self, rows: Sequence[FeatureRow], ids: Sequence[str] | None = None
    ) -> dict[str, list[FeatureRow]]:
        ids = list(self._shards) if ids is None else ids
        groups: dict[str, list[FeatureRow]] = {}
        for row in rows:
            groups.setdefault(rendezvous_shard(row.entity_key, ids), []).append(row)
        return groups


def _feast(refs: list[str], results: Sequence[ReadResult]) -> dict[str, Any]:
    """The results shaped as Feast's online response: one result per feature ref."""
    out: list[dict[str, Any]] = []
    for result in results:
        out += (
            {"values": v, "statuses": s, "event_timestamps": list(result.event_timestamps)}
            for v, s in zip(result.values, result.statuses, strict=True)
        )
    return {"metadata": {"feature_names": refs}, "results": out}


def _infos(handles: Sequence[ShardHandle]) -> list[dict[str, Any]]:
    """Each shard's :meth:`~entai.actors.features.FeatureShard.describe`, in order."""
    infos: list[dict[str, Any]] = _get([h.describe.remote() for h in handles])
    return infos


def _index(
    handles: Sequence[ShardHandle], infos: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, ShardHandle], bool]:
    """Handles by shard id, and whether the shards share one backend."""
    return {i["shard_id"]: h for i, h in zip(infos, handles, strict=True)}, any(
        i["shared_store"] for i in infos
    )


def _describe(handles: Sequence[ShardHandle]) -> tuple[dict[str, ShardHandle], bool]:
    return _index(handles, _infos(handles))


def _same_node(infos: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every shard runs on this process's Ray node (or Ray is not running)."""
    here = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return all(i.get("node_id") in (None, here) for i in infos)


def _get(refs: Any) -> Any:
    try:
        return ray.get(refs)
    except RayActorError as exc:
        raise ServiceUnavailableError(
            f"feature shard unavailable: {exc}", details={"backend": "ray"}
        ) from exc
