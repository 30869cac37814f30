"""The memory online store's tombstones, kept in the Ray cluster's key-value store.

A memory shard keeps its rows in its own process: a restarted shard starts empty and
its rows come back when the views are materialized again, from an offline store that
an erasure has already cleared. Its tombstones cannot come back that way, and a
restarted shard without them would let a late write (a stream replay dated before the
erasure) bring an erased key back. So a memory shard writes every tombstone it is
given to the cluster's key-value store (the GCS's, which outlives any actor; it lasts
as long as the cluster, or longer with a fault-tolerant GCS) before it takes it, and
a starting shard takes back the ones still in force.

One record per tombstone call, named by its content: the shards given one erasure's
tombstones write the same record, so a shard that was down during the erasure gets it
at its next start. A record holds tombstone ids (digests, never the keys), the erase
time and the expiry; records past their expiry are deleted when a shard starts.

Ray's key-value store is reached through ``ray.experimental.internal_kv`` (Ray Serve's
own state store uses it); the records of one platform are under its Ray namespace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ray.experimental import internal_kv

from entai.shared.core import ServiceUnavailableError
from entai.shared.features import MemoryOnlineStore, tombstone_id

__all__ = ["KeptTombstones"]

_KV_NAMESPACE = "entai"


class KeptTombstones:
    """The tombstone records of one memory shard in the cluster's store.

    Args:
        namespace: The platform's Ray namespace (its shards' namespace).
        owner: The shard actor's id: the same across its restarts, new for a shard of
            another platform that reuses the namespace (whose memory values are new too),
            so one platform's tombstones never drop another's writes.
    """

    def __init__(self, namespace: str, owner: str) -> None:
        self._prefix = f"online-tombstones/{namespace}/{owner}/"

    def __repr__(self) -> str:
        return f"KeptTombstones({self._prefix!r})"

    @staticmethod
    def available() -> bool:
        """Whether this process reaches a Ray cluster's key-value store."""
        initialized: Any = internal_kv._internal_kv_initialized  # untyped in Ray
        return bool(initialized())

    def keep(self, keys: Sequence[str], erased_at: datetime, retention: timedelta) -> str:
        """Write the record of one tombstone call; return its name.

        Raises:
            ServiceUnavailableError: the key-value store did not take it.
        """
        record = {
            "ids": sorted({tombstone_id(k) for k in keys}),
            "erased_at": erased_at.astimezone(UTC).isoformat(),
            "expires_at": (erased_at + retention).astimezone(UTC).isoformat(),
        }
        data = json.dumps(record, sort_keys=True).encode()
        name = self._prefix + hashlib.sha256(data).hexdigest()[:32]
        try:
            internal_kv._internal_kv_put(name, data, overwrite=True, namespace=_KV_NAMESPACE)
        except Exception as exc:  # the GCS client raises its own RPC errors
            raise ServiceUnavailableError(
                f"the cluster's key-value store did not keep the tombstones: {type(exc).__name__}",
                details={"service": "gcs", "tombstones": len(record["ids"])},
            ) from exc
        return name

    def restore(self, store: MemoryOnlineStore) -> int:
        """Give ``store`` every tombstone still in force; delete the expired records.

        Returns:
            How many tombstones (ids) were restored.
        """
        now = datetime.now(UTC)
        restored = 0
        for name in internal_kv._internal_kv_list(self._prefix, namespace=_KV_NAMESPACE):
            data: bytes | None = internal_kv._internal_kv_get(name, namespace=_KV_NAMESPACE)
            if data is None:  # deleted by another shard since the listing
                continue
            record = json.loads(data)
            expires_at = datetime.fromisoformat(record["expires_at"])
            if expires_at <= now:
                internal_kv._internal_kv_del(name, namespace=_KV_NAMESPACE)
                continue
            erased_at = datetime.fromisoformat(record["erased_at"])
            restored += store.restore_tombstones(record["ids"], erased_at, expires_at)
        return restored
