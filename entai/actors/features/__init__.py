"""The online store service: FeatureShard actors and the client that routes to them."""

from __future__ import annotations

from entai.actors.features._feature_shard import (
    FeatureShard,
    FeatureShardActor,
    ShardHandle,
    build_store,
    shard_name,
    sqlite_directory,
    start_shards,
)
from entai.actors.features._online_client import (
    AsyncReads,
    Authorize,
    OnlineFeatureClient,
)
from entai.actors.features._shard_calls import (
    Parts,
    call_shards,
    call_shards_async,
    merge_parts,
    split_by_shard,
)

__all__ = [
    "AsyncReads",
    "Authorize",
    "FeatureShard",
    "FeatureShardActor",
    "OnlineFeatureClient",
    "Parts",
    "ShardHandle",
    "build_store",
    "call_shards",
    "call_shards_async",
    "merge_parts",
    "shard_name",
    "split_by_shard",
    "sqlite_directory",
    "start_shards",
]
