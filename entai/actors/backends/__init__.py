"""Storage backends the services write through: the Redis online store and MLflow."""

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

__all__ = [
    "RedisOnlineStore",
    "configure_mlflow",
    "load_card",
    "resolved_tracking_uri",
    "store_card",
]
