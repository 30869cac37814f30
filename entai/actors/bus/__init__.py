"""The event bus: the protocol, the in-cluster queue and Redis Streams."""

from __future__ import annotations

from entai.actors.bus._bus import (
    DEFAULT_LEDGER_TTL_S,
    DONE,
    Delivery,
    EventBus,
    check_read,
    decode_entry,
)
from entai.actors.bus._open import (
    bus_from_settings,
)
from entai.actors.bus._platform import (
    PlatformEvents,
)
from entai.actors.bus._queue import (
    EventQueue,
    EventQueueActor,
    QueueBus,
)
from entai.actors.bus._redis_streams import (
    RedisStreamBus,
)

__all__ = [
    "DEFAULT_LEDGER_TTL_S",
    "DONE",
    "Delivery",
    "EventBus",
    "EventQueue",
    "EventQueueActor",
    "PlatformEvents",
    "QueueBus",
    "RedisStreamBus",
    "bus_from_settings",
    "check_read",
    "decode_entry",
]
