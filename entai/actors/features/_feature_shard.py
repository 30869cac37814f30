"""FeatureShard: one shard of the online store, as a plain class and as a Ray actor.

Each shard owns the keys that :func:`~entai.shared.features._online.rendezvous_shard` routes to
its id. Backends:

* **sqlite** (embedded default): a shard writes its own SQLite file under the
  platform home and acknowledges a write once it is committed, so a restarted shard
  has lost nothing it acknowledged; processes on the shard's machine (the serving
  replicas) read the file in place (``direct_reads`` in :meth:`FeatureShard.describe`).
* **redis**: every shard writes through to the same key prefix; Redis is the source of
  truth and a restarted shard has lost nothing (it reads Redis, it keeps no cache).
* **memory**: a shard's rows live in its own process; a restarted shard starts empty
  until rows are re-materialized (tests, throwaway runs). Its erasure tombstones are
  also kept in the Ray cluster's key-value store and taken back by a restarted shard
  (:mod:`entai.actors.features._kept_tombstones`), so a restart does not let a late
  write bring an erased key back.

With tracing on, ``read_batch``, ``write`` and ``write_batch`` called with a ``trace``
carrier are spans of the caller's trace (``entai.shard.read_batch``,
``entai.shard.write``).

Callers: the methods that change rows (``write``, ``write_batch``, ``delete``,
``tombstone``) and the bulk dumps (``scan``, ``keys_for_reshard``) take the caller's
``credential`` and refuse it unless it is a platform service credential or an API token
whose principal holds the permission (:class:`~entai.actors.governance.CallerCheck`):

* ``write`` / ``write_batch``: ``features:write`` on ``view:<view>`` of every row;
* ``delete``: ``features:write`` on ``view:<view>``, or ``governance:erase`` on
  ``features`` when it deletes from every view;
* ``tombstone`` and ``scan``: ``governance:erase`` on ``features`` (what erasure does:
  a scan hands out every row of the shard);
* ``keys_for_reshard``: ``admin`` on ``features`` (resharding is an operator's act).

Reads (``read``, ``read_batch``) and ``describe`` take no credential: they are the
serving hot path, and the caller's route (a Serve replica, the SDK's client) has
authorized the reader before it calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import ray

from entai.actors.backends import RedisOnlineStore, SqliteOnlineStore
from entai.actors.core import TraceCarrier, configure_tracing, role_options, span
from entai.actors.features._kept_tombstones import KeptTombstones
from entai.actors.governance import CallerCheck
from entai.shared.core import ConfigError
from entai.shared.features import (
    FeatureRow,
    MemoryOnlineStore,
    OnlineBatch,
    OnlineStore,
    ReadRequest,
    ReadResult,
    rendezvous_shard,
)
from entai.shared.governance import Permission
from entai.shared.settings import (
    EntaiSettings,
    MemoryOnlineStoreSettings,
    ObservabilitySettings,
    RedisOnlineStoreSettings,
    SqliteOnlineStoreSettings,
)

__all__ = [
    "SHARD_SERVICE",
    "FeatureShard",
    "FeatureShardActor",
    "ShardHandle",
    "build_store",
    "shard_name",
    "sqlite_directory",
    "start_shards",
]

logger = logging.getLogger(__name__)

SHARD_SERVICE = "feature-shard"
"""The service name a shard presents to the governance service (for its token checks)."""
_ERASE_RESOURCE = "features"
"""The online store as a whole, in the policy's resource names."""

StoreSettings = MemoryOnlineStoreSettings | RedisOnlineStoreSettings | SqliteOnlineStoreSettings

ShardHandle: TypeAlias = Any
"""A FeatureShard actor handle. Ray types ``ActorHandle.__getattr__`` as ``Never``, so
calls on a typed ``ActorHandle[FeatureShard]`` would not type-check."""


def shard_name(index: int) -> str:
    """The actor name (and shard id) of shard ``index``."""
    return f"entai-feature-shard-{index}"


def build_store(settings: StoreSettings, shard_id: str) -> OnlineStore:
    """The backend a shard uses: its own SQLite file, the shared Redis prefix, or its
    own memory store.

    Raises:
        ConfigError: a SQLite section without a directory (resolve the settings first:
            ``EntaiSettings.resolved()`` puts it under the home).
    """
    if isinstance(settings, RedisOnlineStoreSettings):
        logger.info("shard %s writes through to Redis prefix %s", shard_id, settings.key_prefix)
        return RedisOnlineStore(settings.url.get_secret_value(), settings.key_prefix)
    if isinstance(settings, SqliteOnlineStoreSettings):
        store = SqliteOnlineStore(sqlite_directory(settings), [shard_id])
        logger.info("shard %s writes %s", shard_id, store.path(shard_id))
        return store
    logger.info("shard %s keeps its rows in memory", shard_id)
    return MemoryOnlineStore()


def sqlite_directory(settings: SqliteOnlineStoreSettings) -> str:
    """The directory of a SQLite online store's shard files.

    Raises:
        ConfigError: the section has no directory yet (unresolved settings).
    """
    if settings.path is None or not settings.path.is_absolute():
        raise ConfigError(
            "online_store.path must be an absolute directory: pass settings.resolved()",
            details={"field": "online_store.path"},
        )
    return str(settings.path)


class FeatureShard:
    """One online-store shard.

    Args:
        shard_id: The shard's routing id (its actor name).
        store: A backend, or the settings to build one. Actors get settings, so a
            restart rebuilds the backend (and its Redis connection) from them; a memory
            backend built in a Ray process takes back its tombstones from the cluster's
            key-value store, and keeps every new one there.
        callers: Who may call the guarded methods: a :class:`CallerCheck`, or the
            platform settings to build one from in this process (what actors get).
        tracing: The platform's ``observability`` settings (resolved): this process
            traces when they turn tracing on.
    """

    def __init__(
        self,
        shard_id: str,
        store: OnlineStore | StoreSettings,
        *,
        callers: CallerCheck | EntaiSettings,
        tracing: ObservabilitySettings | None = None,
    ) -> None:
        if tracing is not None:
            configure_tracing(tracing, "feature-shard")
        self._callers = (
            callers if isinstance(callers, CallerCheck) else CallerCheck.of(callers, SHARD_SERVICE)
        )
        self.shard_id = shard_id
        self._kept: KeptTombstones | None = None
        if isinstance(
            store, MemoryOnlineStoreSettings | RedisOnlineStoreSettings | SqliteOnlineStoreSettings
        ):
            store = build_store(store, shard_id)
            if isinstance(store, MemoryOnlineStore) and KeptTombstones.available():
                context = ray.get_runtime_context()
                owner = context.get_actor_id() or shard_id
                self._kept = KeptTombstones(context.namespace, owner)
                restored = self._kept.restore(store)
                logger.info("shard %s took back %d tombstones", shard_id, restored)
        self._store: OnlineStore = store
        self.shared_store = isinstance(self._store, RedisOnlineStore)
        self.direct_reads = isinstance(self._store, RedisOnlineStore | SqliteOnlineStore)

    def __repr__(self) -> str:
        return f"FeatureShard({self.shard_id!r}, {self._store!r})"

    def describe(self) -> dict[str, Any]:
        """The shard's id, its process and node, and how others may read its rows.

        ``shared_store``: one backend holds every shard's rows (Redis).
        ``direct_reads``: another process may read this shard's rows from its backend
        (Redis anywhere; a SQLite file from the same node, ``node_id``).
        ``tombstoned_writes``: writes this shard dropped because an erasure's tombstone
        covered them.
        """
        return {
            "shard_id": self.shard_id,
            "shared_store": self.shared_store,
            "direct_reads": self.direct_reads,
            "node_id": _node_id(),
            "pid": os.getpid(),
            "tombstoned_writes": int(getattr(self._store, "tombstoned_writes", 0)),
        }

    def _may_write(self, credential: str, views: Sequence[str]) -> None:
        """``features:write`` on each view (on the store as a whole for no rows)."""
        resources = [f"view:{v}" for v in sorted(set(views))] or [_ERASE_RESOURCE]
        self._callers.require_all(credential, Permission.FEATURES_WRITE, resources)

    def write(
        self, rows: Sequence[FeatureRow], *, credential: str, trace: TraceCarrier | None = None
    ) -> int:
        """Apply rows with last-write-wins; return how many were applied.

        Raises:
            AuthenticationError / PermissionDeniedError: ``credential`` may not write
                every row's view (nothing is written).
        """
        self._may_write(credential, [r.view for r in rows])
        if trace is None:
            return self._store.write(rows)
        with span(
            "entai.shard.write",
            {"entai.shard": self.shard_id, "entai.rows": len(rows)},
            parent=trace,
        ):
            return self._store.write(rows)

    def write_batch(
        self, batch: OnlineBatch, *, credential: str, trace: TraceCarrier | None = None
    ) -> int:
        """:meth:`write` of one view's columnar batch; return how many were applied.

        Raises:
            AuthenticationError / PermissionDeniedError: as :meth:`write`.
        """
        self._may_write(credential, [batch.view])
        if trace is None:
            return self._store.write_batch(batch)
        with span(
            "entai.shard.write",
            {"entai.shard": self.shard_id, "entai.rows": len(batch), "entai.view": batch.view},
            parent=trace,
        ):
            return self._store.write_batch(batch)

    def read(
        self,
        view: str,
        keys: Sequence[str],
        features: Sequence[str],
        *,
        ttl: timedelta | None,
        now: datetime,
    ) -> ReadResult:
        """Read ``features`` of ``view`` for ``keys`` as of ``now``.

        Unguarded, like :meth:`read_batch`: the caller's route authorized the reader.
        """
        return self._store.read(view, keys, features, ttl=ttl, now=now)

    def read_batch(
        self, requests: Sequence[ReadRequest], now: datetime, *, trace: TraceCarrier | None = None
    ) -> list[ReadResult]:
        """Serve several views' reads in one call (one actor round trip per shard).

        Unguarded: this is the serving hot path, and the caller's route (a Serve
        replica, the SDK's client) authorized the reader before calling.
        """
        if trace is None:
            return self._read_batch(requests, now)
        attributes = {"entai.shard": self.shard_id, "entai.views": [r.view for r in requests]}
        with span("entai.shard.read_batch", attributes, parent=trace):
            return self._read_batch(requests, now)

    def _read_batch(self, requests: Sequence[ReadRequest], now: datetime) -> list[ReadResult]:
        return [self._store.read(r.view, r.keys, r.features, ttl=r.ttl, now=now) for r in requests]

    def delete(self, view: str | None, keys: Sequence[str], *, credential: str) -> int:
        """Delete the keys' rows in ``view`` (every view if None).

        Raises:
            AuthenticationError / PermissionDeniedError: without ``features:write`` on
                the view (``governance:erase`` on ``features`` for every view).
        """
        if view is None:
            self._callers.require(credential, Permission.GOVERNANCE_ERASE, _ERASE_RESOURCE)
        else:
            self._may_write(credential, [view])
        return self._store.delete(view, keys)

    def tombstone(
        self, keys: Sequence[str], erased_at: datetime, retention: timedelta, *, credential: str
    ) -> int:
        """Keep ``keys`` erased against writes dated up to ``erased_at``, for ``retention``
        (a memory shard first keeps them in the cluster's key-value store).

        Raises:
            AuthenticationError / PermissionDeniedError: without ``governance:erase``.
            ServiceUnavailableError: a memory shard could not keep them there.
        """
        self._callers.require(credential, Permission.GOVERNANCE_ERASE, _ERASE_RESOURCE)
        if self._kept is not None:
            self._kept.keep(keys, erased_at, retention)
        return self._store.tombstone(keys, erased_at, retention)

    def scan(self, view: str | None = None, *, credential: str) -> list[FeatureRow]:
        """Every row this shard's backend holds (of ``view`` if given).

        Raises:
            AuthenticationError / PermissionDeniedError: without ``governance:erase``.
        """
        self._callers.require(credential, Permission.GOVERNANCE_ERASE, _ERASE_RESOURCE)
        return list(self._store.scan(view))

    def keys_for_reshard(self, shard_ids: Sequence[str], *, credential: str) -> list[FeatureRow]:
        """Rows held here that ``shard_ids`` route to another shard.

        A shared (Redis) backend has nothing to move: every shard reads the same keys.

        Raises:
            AuthenticationError / PermissionDeniedError: without ``admin``.
        """
        self._callers.require(credential, Permission.ADMIN, _ERASE_RESOURCE)
        if self.shared_store:
            return []
        return [
            row
            for row in self._store.scan()
            if rendezvous_shard(row.entity_key, shard_ids) != self.shard_id
        ]


def _node_id() -> str | None:
    """The Ray node this process runs on, or None outside Ray."""
    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


FeatureShardActor = ray.remote(FeatureShard)


def start_shards(settings: EntaiSettings, namespace: str | None = None) -> list[ShardHandle]:
    """Create (or find) the ``num_shards`` named, detached FeatureShard actors.

    Args:
        settings: Platform settings; ``online_store`` picks backend and shard count,
            ``security`` how the shards check their callers.
        namespace: Ray namespace of the actors; defaults to ``settings.ray.namespace``.

    Returns:
        Handles in shard order (``entai-feature-shard-0`` first).
    """
    store = settings.online_store
    checked = settings.resolved()  # the shards read the service secret under its home
    if isinstance(store, SqliteOnlineStoreSettings) and store.path is None:
        store = checked.online_store
    return [
        FeatureShardActor.options(
            name=shard_name(i),
            namespace=namespace or settings.ray.namespace,
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=-1,
            num_cpus=0,
            get_if_exists=True,
            **role_options("shard"),
        ).remote(shard_name(i), store, callers=checked, tracing=settings.observability)
        for i in range(store.num_shards)
    ]
