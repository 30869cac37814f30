"""Storage backends the services write through: the online stores (Redis; SQLite files on
local disk, the embedded default) and MLflow."""

from __future__ import annotations

from entai.actors.backends._mlflow import (
    configure_mlflow,
    load_card,
    resolved_tracking_uri,
    store_card,
)
from entai.actors.backends._redis_store import (
    RedisOnlineStore,
)
from entai.actors.backends._sqlite_store import (
    SQLITE_SUFFIX,
    SqliteOnlineStore,
    Synchronous,
)

__all__ = [
    "SQLITE_SUFFIX",
    "RedisOnlineStore",
    "SqliteOnlineStore",
    "Synchronous",
    "configure_mlflow",
    "load_card",
    "resolved_tracking_uri",
    "store_card",
]
