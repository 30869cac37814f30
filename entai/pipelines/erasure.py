"""Right to erasure: the coordinator and the platform's built-in erasure stores.

:func:`erase` authorises the caller (``governance:erase``) through the governance
service, finds the subject's entity keys and request ids (discovery), runs every
registered store, lists the immutable training datasets and model versions that used
the subject (to be retrained; they are never rewritten), runs the verification scan
(:func:`verify_erased`) and audits the receipt. Each store is erased under its erasure
lock (:mod:`entai.pipelines.erasure_locks`), so two erasures never rewrite the same
store at once. The audit entry and the receipt name the subject by its digest only.
Before the stores, the subject goes on the erased-subject list
(:mod:`entai.shared.governance._erased_subjects`): the stream landing drops its events
received up to the erasure that are still on the bus. One erasure writes one
``governance:erase`` audit entry, when it ends (``allow``, or
``incomplete`` when a store failed, traces remain or it raised); a refused request
writes the governance service's denial instead.

:func:`start_erasure` runs an erasure as a Ray task (the HTTP route): its receipt in
the lake says ``running`` while the task renews a lease in it (a heartbeat), and
:func:`erasure_status` reports a ``running`` receipt whose lease ran out as ``failed``
(the task died; ask again).

Built-in stores, in order: ``online`` (the SQLite shard files, the Redis prefix, or
the feature shards' memory),
``offline`` (feature tables), ``raw``, ``quarantine``, ``predictions`` (the lake's
prediction log) and ``drift_monitor`` (the DriftMonitor actor's stored samples). Other
modules add theirs with :func:`register_store`, a factory ``settings -> Store``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ray

from entai.actors.backends import RedisOnlineStore, SqliteOnlineStore
from entai.actors.core import Service
from entai.actors.features import shard_name, sqlite_directory
from entai.actors.governance import GovernanceChecker
from entai.actors.models import ModelRegistry
from entai.actors.monitoring import DriftMonitor
from entai.actors.services import (
    Services,
    governance_here,
    platform_credential,
    registry_here,
)
from entai.pipelines.erasure_locks import erasure_lock, lock_kind
from entai.shared.core import EntaiError, InvalidInputError, NotFoundError
from entai.shared.data import Lake
from entai.shared.governance import (
    ErasureReceipt,
    ErasureRequest,
    LakeZoneStore,
    Permission,
    Store,
    StoreReceipt,
    Subject,
    datasets_with_subject,
    now_iso,
    record_erased_subject,
)
from entai.shared.settings import (
    EntaiSettings,
    RedisOnlineStoreSettings,
    SqliteOnlineStoreSettings,
    resolve_hmac_key,
)

__all__ = [
    "ERASE_ACTION",
    "ERASURES_DIRECTORY",
    "ERASURE_LEASE_S",
    "ERASURE_SERVICE",
    "DriftMonitorStore",
    "OnlineStoreEraser",
    "StoreFactory",
    "erase",
    "erasure_status",
    "model_versions_using",
    "register_store",
    "registered_stores",
    "start_erasure",
    "subject_for",
    "verify_erased",
]

logger = logging.getLogger(__name__)

ERASE_ACTION = "governance:erase"
ERASURE_SERVICE = "erasure"
"""The service name the erasure stores present to the feature shards and the drift
monitor (the caller was authorized for ``governance:erase`` before they run)."""
_REQUEST_ID = "request_id"
_SCAN_BATCH = 1000

StoreFactory = Callable[[EntaiSettings], Store]
"""Builds a store from settings; a Store class taking settings is one."""

_REGISTRY: dict[str, StoreFactory] = {}
_Found = tuple[Any, str, str]


def register_store(factory: StoreFactory, *, name: str | None = None) -> StoreFactory:
    """Add an erasure store (usable as a class decorator); a name registered again is replaced.

    Args:
        factory: ``settings -> Store``.
        name: Registry name; the factory's ``__name__`` by default.
    """
    _REGISTRY[name or str(getattr(factory, "__name__", repr(factory)))] = factory
    return factory


def registered_stores(settings: EntaiSettings) -> list[Store]:
    """Every registered store, built for ``settings``, in registration order."""
    return [factory(settings) for factory in _REGISTRY.values()]


class OnlineStoreEraser:
    """The online store: the SQLite shard files, Redis keys under the prefix, or the
    memory shards' rows.

    Before deleting, it tombstones the subject's entity keys (its own spellings, then
    every key found) in the backend, for the store's ``tombstone_retention_s``: a late
    write dated up to the erasure is dropped by every writer (shard, replica, eraser)
    instead of bringing the subject back. SQLite keeps them in every shard file (those
    on disk and those of ``num_shards``), Redis under ``<prefix>:@tombstone:``, the
    memory backend in every running shard.

    With SQLite every shard file in the store's directory is scanned and its matching
    rows deleted in place (running shards or not: SQLite serialises this with the
    shards' writes), then each touched file is purged (rebuilt, its write-ahead log
    truncated) so no page keeps a deleted row; without files there is nothing to erase.
    With Redis the key names are scanned (``SCAN``) and deleted directly; shards keep no
    cache of Redis rows. With the memory backend every shard actor is scanned and asked
    to delete its matching rows; without running shards there is nothing to erase.
    Shard calls present the erasure service's credential.
    """

    name = "online"

    def __init__(self, settings: EntaiSettings) -> None:
        self._settings = settings
        self._credential = platform_credential(settings, ERASURE_SERVICE)

    def _redis(self) -> Any:
        import redis

        store = self._settings.online_store
        assert isinstance(store, RedisOnlineStoreSettings)
        return redis.Redis.from_url(store.url.get_secret_value())

    def _redis_found(self, subject: Subject) -> list[_Found]:
        store = self._settings.online_store
        assert isinstance(store, RedisOnlineStoreSettings)
        skip = len(store.key_prefix) + 1
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in store.key_prefix) + ":*"
        client = self._redis()
        try:
            names = list(client.scan_iter(match=pattern, count=_SCAN_BATCH))
        finally:
            client.close()
        parts = [n.decode()[skip:].partition(":") for n in names]
        hits = _key_hits(subject, [key for _, _, key in parts])
        return [
            (name, view, key)
            for name, (view, _, key), hit in zip(names, parts, hits, strict=True)
            if hit
        ]

    def _sqlite(self) -> SqliteOnlineStoreSettings:
        store = self._settings.online_store
        if isinstance(store, SqliteOnlineStoreSettings) and store.path is None:
            store = self._settings.resolved().online_store
        assert isinstance(store, SqliteOnlineStoreSettings)
        return store

    def _sqlite_files(self) -> list[SqliteOnlineStore]:
        """One store per shard file on disk (whatever the shard count is now)."""
        directory = sqlite_directory(self._sqlite())
        return [
            SqliteOnlineStore(directory, [shard_id])
            for shard_id in SqliteOnlineStore.shards_on_disk(directory)
        ]

    def _sqlite_found(self, subject: Subject) -> list[_Found] | None:
        files = self._sqlite_files()
        if not files:
            return None
        found: list[_Found] = []
        for store in files:
            try:
                rows = [(r.view, r.entity_key) for r in store.scan()]
            finally:
                store.close()
            hits = _key_hits(subject, [key for _, key in rows])
            found += [
                (store.shard_ids[0], view, key)
                for (view, key), hit in zip(rows, hits, strict=True)
                if hit
            ]
        return found

    def _sqlite_erase(self, found: Sequence[_Found]) -> None:
        directory = sqlite_directory(self._sqlite())
        groups: dict[str, dict[str, list[str]]] = {}
        for shard_id, view, key in found:
            groups.setdefault(shard_id, {}).setdefault(view, []).append(key)
        for shard_id, by_view in groups.items():
            store = SqliteOnlineStore(directory, [shard_id])
            try:
                for view, keys in by_view.items():
                    store.delete(view, keys)
                store.purge()
            finally:
                store.close()

    def _shards(self) -> list[Any]:
        return list(Services.of(self._settings).running_shards())

    def _tombstone(self, keys: Sequence[str], erased_at: datetime) -> int:
        """Tombstone ``keys`` in the backend; return how many keys were tombstoned."""
        retention = timedelta(seconds=self._settings.online_store.tombstone_retention_s)
        store = self._settings.online_store
        if isinstance(store, RedisOnlineStoreSettings):
            redis_store = RedisOnlineStore(store.url.get_secret_value(), store.key_prefix)
            try:
                return redis_store.tombstone(keys, erased_at, retention)
            finally:
                redis_store.close()
        if isinstance(store, SqliteOnlineStoreSettings):
            directory = sqlite_directory(self._sqlite())
            ids = {shard_name(i) for i in range(store.num_shards)}
            ids |= set(SqliteOnlineStore.shards_on_disk(directory))
            files = SqliteOnlineStore(directory, sorted(ids))
            try:
                return files.tombstone(keys, erased_at, retention)
            finally:
                files.close()
        shards = self._shards()
        written = ray.get(
            [
                h.tombstone.remote(keys, erased_at, retention, credential=self._credential)
                for h in shards
            ]
        )
        return max(written, default=0)

    def _found(self, subject: Subject) -> list[_Found] | None:
        """(Redis key name, shard file id or shard handle; view; entity key) of each
        subject row."""
        if isinstance(self._settings.online_store, RedisOnlineStoreSettings):
            return self._redis_found(subject)
        if isinstance(self._settings.online_store, SqliteOnlineStoreSettings):
            return self._sqlite_found(subject)
        shards = self._shards()
        if not shards:
            return None
        found: list[_Found] = []
        for handle, rows in zip(
            shards,
            ray.get([h.scan.remote(None, credential=self._credential) for h in shards]),
            strict=True,
        ):
            hits = _key_hits(subject, [r.entity_key for r in rows])
            found += [
                (handle, r.view, r.entity_key) for r, hit in zip(rows, hits, strict=True) if hit
            ]
        return found

    def discover(self, subject: Subject) -> set[str]:
        """The subject's full entity keys in the online store (composite keys included)."""
        return {key for _, _, key in self._found(subject) or []}

    def erase(self, subject: Subject) -> StoreReceipt:
        """Tombstone the subject's keys, then delete every online row whose entity key
        contains the subject."""
        start = time.perf_counter()
        store = self._settings.online_store
        held = isinstance(store, RedisOnlineStoreSettings) or (
            bool(SqliteOnlineStore.shards_on_disk(sqlite_directory(self._sqlite())))
            if isinstance(store, SqliteOnlineStoreSettings)
            else bool(self._shards())
        )
        erased_at = datetime.now(UTC)
        own = subject.own_keys()
        tombstones = self._tombstone(own, erased_at)
        found = self._found(subject) if held else None
        more = sorted({key for _, _, key in found or []} - set(own))
        if more:
            tombstones += self._tombstone(more, erased_at)
        if found is None:
            note = (
                "no online store files: the SQLite backend holds nothing"
                if isinstance(self._settings.online_store, SqliteOnlineStoreSettings)
                else "no feature shard actors are running: the memory backend holds nothing"
            )
            return StoreReceipt(self.name, "absent", note=note, tombstones=tombstones)
        if isinstance(self._settings.online_store, SqliteOnlineStoreSettings):
            self._sqlite_erase(found)
        elif isinstance(self._settings.online_store, RedisOnlineStoreSettings):
            client = self._redis()
            try:
                for i in range(0, len(found), _SCAN_BATCH):
                    client.delete(*(name for name, _, _ in found[i : i + _SCAN_BATCH]))
            finally:
                client.close()
        else:
            import ray

            handles = {id(h): h for h, _, _ in found}
            groups: dict[tuple[int, str], list[str]] = {}
            for handle, view, key in found:
                groups.setdefault((id(handle), view), []).append(key)
            ray.get(
                [
                    handles[h].delete.remote(v, keys, credential=self._credential)
                    for (h, v), keys in groups.items()
                ]
            )
        per_view = Counter(view for _, view, _ in found)
        return StoreReceipt(
            self.name,
            "erased" if found else "clean",
            rows_removed=len(found),
            touched=tuple(f"{v}:{n}" for v, n in sorted(per_view.items())),
            seconds=round(time.perf_counter() - start, 4),
            tombstones=tombstones,
        )

    def scan(self, subject: Subject) -> int:
        """Online rows of the subject left."""
        return len(self._found(subject) or [])


def _key_hits(subject: Subject, keys: Sequence[str]) -> list[bool]:
    import pyarrow as pa

    mask = subject.key_mask(pa.array(list(keys), pa.string()))
    return [bool(v) for v in mask.to_numpy(zero_copy_only=False)]


class DriftMonitorStore:
    """The DriftMonitor actor's prediction log and sampled values, tagged by entity key.

    Erasing calls the actor's ``erase`` with the subject's entity keys and request ids.
    Its checkpoints (``<lake>/monitoring/``) mirror its state after every change, so the
    scan reads them. Without the actor the receipt says so.
    """

    name = "drift_monitor"

    def __init__(self, settings: EntaiSettings) -> None:
        self._settings = settings
        self._lake = Lake(settings.lake.root)

    def erase(self, subject: Subject) -> StoreReceipt:
        """Ask the running DriftMonitor to drop the subject's rows and samples."""
        start = time.perf_counter()
        monitor = Services.of(self._settings).drift_monitor_if_running()
        if monitor is None:
            note = "the drift monitor is not running; its checkpoints are only scanned"
            return StoreReceipt(self.name, "absent", seconds=0.0, note=note)
        credential = platform_credential(self._settings, ERASURE_SERVICE)
        ref = monitor.submit(DriftMonitor.erase, subject.entity_keys(), credential=credential)
        dropped = int(ray.get(ref, timeout=120))
        return StoreReceipt(
            self.name,
            "erased" if dropped else "clean",
            rows_removed=dropped,
            touched=("monitoring",) if dropped else (),
            seconds=round(time.perf_counter() - start, 4),
        )

    def scan(self, subject: Subject) -> int:
        """Traces of the subject in the monitor's checkpoints."""
        import re

        import pyarrow.fs as pafs

        pattern = re.compile(subject.trace_pattern().encode())
        root = self._lake.path("monitoring")
        selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
        files = [
            i.path
            for i in self._lake.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.base_name == "state.json"
        ]
        return sum(len(pattern.findall(self._lake.read_bytes(p))) for p in files)


def _zone(name: str, *zones: str) -> StoreFactory:
    def build(settings: EntaiSettings) -> Store:
        return LakeZoneStore(name, Lake(settings.lake.root), zones)

    build.__name__ = name
    return build


for _factory in (
    OnlineStoreEraser,
    _zone("offline", "offline"),
    _zone("raw", "raw"),
    _zone("quarantine", "quarantine"),
    _zone("predictions", "predictions"),
    DriftMonitorStore,
):
    register_store(_factory)


# -- lineage ------------------------------------------------------------------------


def model_versions_using(settings: EntaiSettings, dataset_ids: Sequence[str]) -> list[str]:
    """Registered model versions (``name/version``) whose lineage tags name a dataset."""
    if not dataset_ids:
        return []
    uri = settings.mlflow.tracking_uri.get_secret_value()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    wanted = set(dataset_ids)
    registry = registry_here(settings)
    found = []
    for model in registry.call(ModelRegistry.list_models):
        for info in registry.call(ModelRegistry.versions, model["name"]):
            if wanted & set(info.tags.values()):
                found.append(f"{info.name}/{info.version}")
    return found


# -- the coordinator ----------------------------------------------------------------


def subject_for(
    settings: EntaiSettings, entity: ErasureRequest | dict[str, int | str], hmac_key: bytes | None
) -> Subject:
    """The subject matcher of an entity, with the platform's pseudonymisation key."""
    values = entity.entity if isinstance(entity, ErasureRequest) else entity
    return Subject.of(values, hmac_key or resolve_hmac_key(settings))


def _discover(stores: Sequence[Store], subject: Subject) -> Subject:
    """Add the entity keys and request ids the stores know for the subject."""
    tags: set[str] = set()
    for store in stores:
        if isinstance(store, OnlineStoreEraser):
            tags |= store.discover(subject)
        elif isinstance(store, LakeZoneStore):
            tags |= store.find_tags(subject, _REQUEST_ID)
    return subject.with_tags(tags)


def _run(settings: EntaiSettings, store: Store, subject: Subject) -> StoreReceipt:
    """Erase one store under its erasure lock (one erasure per store at a time)."""
    try:
        with erasure_lock(settings, store.name):
            return store.erase(subject)
    except Exception as exc:  # one failing store must not stop the others
        message = exc.message if isinstance(exc, EntaiError) else type(exc).__name__
        logger.exception("erasure store failed", extra={"store": store.name})
        return StoreReceipt(store.name, "failed", note=f"erase failed: {message}")


def verify_erased(
    settings: EntaiSettings, subject: Subject, *, stores: Sequence[Store] | None = None
) -> dict[str, int]:
    """The verification scan: store name -> traces of the subject left (all 0 after erase)."""
    out = {}
    for store in registered_stores(settings) if stores is None else stores:
        try:
            out[store.name] = store.scan(subject)
        except EntaiError as exc:
            logger.warning("erasure scan failed", extra={"store": store.name, "error": exc.message})
            out[store.name] = -1
    return out


def _authorize(service: Service[GovernanceChecker], caller: str, resource: str) -> str:
    """The caller's principal when it holds ``governance:erase`` on ``resource``.

    One erasure is one audit entry, written when it ends (``allow`` or ``incomplete``,
    with the receipt), so the check records nothing when it allows
    (``GovernanceChecker.principal_for``); a refusal (a bad, expired or revoked token,
    a missing permission) is audited there and raised.

    Raises:
        AuthenticationError: for a missing, bad, expired or revoked token.
        PermissionDeniedError: without ``governance:erase`` (the denial is audited).
    """
    return service.call(
        GovernanceChecker.principal_for, caller, Permission.GOVERNANCE_ERASE, resource
    )


def erase(
    settings: EntaiSettings,
    request: ErasureRequest,
    *,
    caller: str,
    stores: Sequence[Store] | None = None,
    governance: Service[GovernanceChecker] | None = None,
    hmac_key: bytes | None = None,
    erasure_id: str | None = None,
) -> ErasureReceipt:
    """Erase a data subject from every store; audit (one entry) and return the receipt.

    Args:
        settings: Platform settings (absolute paths: ``settings.resolved()``).
        request: Who is to be erased, by whom and why.
        caller: The caller's API token, needing ``governance:erase``.
        stores: The stores to erase from (default: every registered store).
        governance: The governance service; default: the running platform's, else a
            local checker (one audit writer either way).
        hmac_key: The pseudonymisation key; default: ``resolve_hmac_key(settings)``.
        erasure_id: The receipt's id (a job started by :func:`start_erasure` has one);
            default: a new one.

    Returns:
        The receipt; ``receipt.complete`` is False when a store failed or the
        verification scan still found traces.

    Raises:
        AuthenticationError: for a missing, bad, expired or revoked token.
        PermissionDeniedError: without ``governance:erase`` (the denial is audited).
        ConfigError: no erasure lock every process shares (an object store lake
            without a PostgreSQL governance store).
    """
    if not isinstance(request, ErasureRequest):
        raise InvalidInputError("request must be an ErasureRequest", details={"field": "request"})
    service = governance or governance_here(settings)
    key = hmac_key or resolve_hmac_key(settings)
    subject = subject_for(settings, request, key)
    resource = f"subject:{subject.digest}"
    principal = _authorize(service, caller, resource)
    lock_kind(settings)  # refuse before touching anything when no lock is shared
    started = now_iso()
    erasure_id = erasure_id or uuid.uuid4().hex
    try:
        # First, so the stream landing drops the subject's events still on the bus.
        record_erased_subject(
            Lake(settings.lake.root),
            subject.digest,
            subject.pseudonyms,
            key,
            erased_at=datetime.now(UTC),
            retention=timedelta(seconds=settings.online_store.tombstone_retention_s),
        )
        chosen = registered_stores(settings) if stores is None else list(stores)
        subject = _discover(chosen, subject)
        receipts = tuple(_run(settings, store, subject) for store in chosen)
        datasets = datasets_with_subject(Lake(settings.lake.root), subject)
        receipt = ErasureReceipt(
            erasure_id=erasure_id,
            subject=subject.digest,
            requested_by=request.requested_by,
            principal=principal,
            reason=request.reason,
            started_at=started,
            finished_at=now_iso(),
            stores=receipts,
            retrain_datasets=datasets,
            retrain_models=tuple(model_versions_using(settings, sorted(datasets))),
            remaining=verify_erased(settings, subject, stores=chosen),
        )
    except Exception as exc:  # audited as the erasure's one entry, then raised
        message = exc.message if isinstance(exc, EntaiError) else type(exc).__name__
        service.call(
            GovernanceChecker.audit,
            caller,
            ERASE_ACTION,
            resource,
            "incomplete",
            details={"erasure_id": erasure_id, "started_at": started, "error": message},
        )
        raise
    service.call(
        GovernanceChecker.audit,
        caller,
        ERASE_ACTION,
        resource,
        "allow" if receipt.complete else "incomplete",
        details=receipt.to_dict(),
    )
    logger.info(
        "erasure done",
        extra={"erasure_id": receipt.erasure_id, "subject": subject.digest, "ok": receipt.complete},
    )
    return receipt


# -- erasure as a job: receipts any process can read ---------------------------------

ERASURES_DIRECTORY = "governance/erasures"
"""Where erasure jobs' receipts live in the lake: ``<lake>/governance/erasures/<id>.json``."""

ERASURE_LEASE_S = 60.0
"""How long a running erasure job's receipt stays ``running`` without a heartbeat; the
task renews it every quarter of that."""

_ERASURE_ID = re.compile(r"^[0-9a-f]{32}$")


def _status_path(lake: Lake, erasure_id: str) -> str:
    return lake.path(ERASURES_DIRECTORY, f"{erasure_id}.json")


def _lease_over(status: dict[str, Any], now: datetime) -> bool:
    """Whether a ``running`` receipt's task stopped renewing its lease."""
    beat = datetime.fromisoformat(str(status.get("heartbeat_at") or status["started_at"]))
    return now - beat > timedelta(seconds=float(status.get("lease_s", ERASURE_LEASE_S)))


def erasure_status(settings: EntaiSettings, erasure_id: str) -> dict[str, Any]:
    """The receipt of an erasure job: ``status`` ``running``, ``done`` (every store
    erased and the verification scan clean) or ``failed`` (``error``, or traces left in
    ``remaining``), with the per-store receipts once it finished.

    A ``running`` receipt whose task has not renewed its lease (``heartbeat_at``) for
    ``lease_s`` seconds is answered as ``failed``: the task died (its worker or its
    owner was killed) and will not finish; ask for the erasure again (erasing is
    idempotent). The stored receipt is left as it is, so a task that was only late
    still writes its final receipt.

    Raises:
        NotFoundError: no erasure job has this id.
    """
    lake = Lake(settings.lake.root)
    if not _ERASURE_ID.match(erasure_id) or not lake.exists(_status_path(lake, erasure_id)):
        raise NotFoundError(f"no erasure {erasure_id!r}", details={"erasure_id": erasure_id})
    status = dict(lake.read_json(_status_path(lake, erasure_id)))
    if status.get("status") == "running" and _lease_over(status, datetime.now(UTC)):
        last = status.get("heartbeat_at") or status["started_at"]
        status["status"] = "failed"
        status["error"] = (
            f"the erasure task stopped: no heartbeat since {last} "
            f"(lease {float(status.get('lease_s', ERASURE_LEASE_S)):g} s); ask again"
        )
    return status


def _save_status(settings: EntaiSettings, status: dict[str, Any]) -> None:
    lake = Lake(settings.lake.root)
    lake.write_json(_status_path(lake, str(status["erasure_id"])), status)


def start_erasure(
    settings: EntaiSettings,
    request: ErasureRequest,
    *,
    caller: str,
    governance: Service[GovernanceChecker] | None = None,
    lease_s: float = ERASURE_LEASE_S,
) -> dict[str, Any]:
    """Authorise an erasure now and run it as a Ray task; return its ``running`` receipt.

    The task (not the calling process) does the work, so the erasure outlives the HTTP
    request that asked for it and keeps the caller's threads free; it is owned by the
    calling process, so a caller that dies takes a still running task with it. The task
    is not retried: it renews its lease in the receipt every ``lease_s / 4`` seconds,
    and a task that dies (its worker killed, or its owner gone) is reported ``failed``
    by :func:`erasure_status` once the lease runs out (erasure is idempotent: ask
    again). The task re-checks the token when it starts and writes the finished receipt
    where :func:`erasure_status` reads it (the lake, which every replica reads), besides
    the erasure's one audit entry.

    Raises:
        AuthenticationError: a missing, bad, expired or revoked token.
        PermissionDeniedError: without ``governance:erase`` (the denial is audited).
        ConfigError: no erasure lock every process shares.
        InvalidInputError: ``lease_s`` is not positive.
    """
    if not lease_s > 0:
        raise InvalidInputError("lease_s must be positive", details={"field": "lease_s"})
    service = governance or governance_here(settings)
    subject = subject_for(settings, request, None)
    principal = _authorize(service, caller, f"subject:{subject.digest}")
    lock_kind(settings)
    status: dict[str, Any] = {
        "erasure_id": uuid.uuid4().hex,
        "status": "running",
        "subject": subject.digest,
        "requested_by": request.requested_by,
        "principal": principal,
        "reason": request.reason,
        "started_at": now_iso(),
        "lease_s": lease_s,
    }
    _save_status(settings, status)
    _erasure_task.options(num_cpus=0, max_retries=0).remote(settings, request, caller, status)
    logger.info("erasure started", extra={"erasure_id": status["erasure_id"]})
    return status


class _Heartbeat:
    """Renews a running erasure's lease in its receipt until the final receipt is saved."""

    def __init__(self, settings: EntaiSettings, status: dict[str, Any]) -> None:
        self._settings = settings
        self._status = status
        self._every_s = float(status.get("lease_s", ERASURE_LEASE_S)) / 4
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="erasure-heartbeat", daemon=True)

    def start(self) -> None:
        """Write the first heartbeat (with this worker's pid), then renew in the background."""
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        with self._lock:
            if self._done.is_set():
                return
            beat = {**self._status, "heartbeat_at": now_iso(), "worker_pid": os.getpid()}
            _save_status(self._settings, beat)

    def _run(self) -> None:
        while not self._done.wait(self._every_s):
            try:
                self._beat()
            except Exception:  # a missed beat is retried; the lease allows three
                logger.warning("erasure heartbeat failed", exc_info=True)

    def finish(self, final: dict[str, Any]) -> None:
        """Stop renewing and save the final receipt (no heartbeat can overwrite it)."""
        with self._lock:
            self._done.set()
            _save_status(self._settings, final)
        self._thread.join()


def _run_job(
    settings: EntaiSettings, request: ErasureRequest, caller: str, status: dict[str, Any]
) -> dict[str, Any]:
    """Run one erasure job to its end and save its receipt (the Ray task's body)."""
    heartbeat = _Heartbeat(settings, status)
    heartbeat.start()
    try:
        receipt = erase(settings, request, caller=caller, erasure_id=status["erasure_id"])
    except Exception as exc:
        message = exc.message if isinstance(exc, EntaiError) else type(exc).__name__
        logger.exception("erasure failed", extra={"erasure_id": status["erasure_id"]})
        done = {**status, "status": "failed", "error": message, "finished_at": now_iso()}
    else:
        done = {**receipt.to_dict(), "status": "done" if receipt.complete else "failed"}
        if not receipt.complete:
            done["error"] = "a store failed or the verification scan found traces"
    heartbeat.finish(done)
    return done


_erasure_task = ray.remote(_run_job)
