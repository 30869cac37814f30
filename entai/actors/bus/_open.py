"""Which event bus a platform uses: chosen once, from its settings."""

from __future__ import annotations

from entai.actors.bus._bus import EventBus
from entai.actors.bus._queue import QueueBus
from entai.actors.bus._redis_streams import RedisStreamBus
from entai.shared.settings import EntaiSettings, RedisOnlineStoreSettings

__all__ = ["bus_from_settings"]


def bus_from_settings(
    settings: EntaiSettings, *, namespace: str | None = None, redelivery_s: float = 60.0
) -> EventBus:
    """The bus the settings choose: Redis Streams with a Redis online store, else the queue.

    The Redis bus uses the online store's URL and the key prefix ``<key_prefix>:events:``.
    ``redelivery_s`` is how long an event this client read and did not acknowledge
    waits before another consumer takes it over.
    """
    store = settings.online_store
    if isinstance(store, RedisOnlineStoreSettings):
        return RedisStreamBus(
            store.url.get_secret_value(), f"{store.key_prefix}:events:", claim_idle_s=redelivery_s
        )
    return QueueBus(
        namespace=namespace or settings.ray.namespace, visibility_timeout_s=redelivery_s
    )
