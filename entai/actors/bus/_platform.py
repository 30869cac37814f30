"""Publishing platform events: a small, serialisable publisher the services share.

:class:`PlatformEvents` is handed to a service when it starts (the registry, the drift
monitor, the stream workers) and opens the settings' bus on first use, inside the
process that publishes. Publishing is best effort by design: the fact an event announces
is already durable where it happened (the lake file, the registry's alias history, the
retrain request file), so a bus that is down costs a late reaction, never the fact;
the failure is logged and the caller goes on. Consumers that must not miss a fact
reconcile from the durable record on start (the retrain worker does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from entai.actors.bus._bus import EventBus
from entai.actors.bus._open import bus_from_settings
from entai.shared.data import Event
from entai.shared.settings import EntaiSettings

__all__ = ["PlatformEvents"]

log = logging.getLogger(__name__)


class PlatformEvents:
    """Publishes platform events (:mod:`entai.shared.data` ``PlatformEventKind``).

    Args:
        settings: Choose the bus (Redis Streams with a Redis store, else the queue).
        bus: A bus to use instead (tests, or a service that has one already).
    """

    def __init__(self, settings: EntaiSettings, *, bus: EventBus | None = None) -> None:
        self._settings = settings
        self._bus = bus
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "PlatformEvents()"

    def __getstate__(self) -> dict[str, Any]:
        # The bus holds connections (or an actor handle): opened again where unpickled.
        return {"settings": self._settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]

    def _open(self) -> EventBus:
        with self._lock:
            if self._bus is None:
                self._bus = bus_from_settings(self._settings)
            return self._bus

    def publish(self, events: Sequence[Event]) -> int:
        """Publish; on failure log one warning and return 0 (see the module docstring)."""
        if not events:
            return 0
        try:
            return self._open().publish(events)
        except Exception as exc:  # noqa: BLE001 - best effort: the fact is durable elsewhere
            log.warning(
                "platform event not published",
                extra={"source": events[0].source, "events": len(events), "error": str(exc)},
            )
            return 0
