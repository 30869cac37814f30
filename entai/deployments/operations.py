"""Event intake and erasure for the ingress: settings in, domain calls out.

Both run in a worker thread of the ingress replica (they block on Redis, actors and
the lake), never on its event loop. An erasure itself runs in a Ray task the replica
starts; its receipt is read back from the lake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from entai.actors.bus import bus_from_settings
from entai.actors.core import span
from entai.pipelines.features import publish_events
from entai.shared.core import NotFoundError, OverloadedError
from entai.shared.data import EventsReceipt, UndeclaredPii, load_contract
from entai.shared.settings import EntaiSettings, resolve_hmac_key

__all__ = ["EventIntake", "erase_subject", "erasure_receipt"]

_RETRY_AFTER_S = 2.0


class EventIntake:
    """Validates event batches against their source's contract and publishes them.

    The sources are the application's ``event_contracts`` and, for the others, the
    platform's ``settings.streams`` (which its consumers land). A source whose backlog
    (events on the bus not yet landed) reached its stream's ``max_backlog`` is refused
    with :class:`OverloadedError` (429 and ``Retry-After``) instead of queueing more.
    """

    def __init__(self, settings: EntaiSettings, contracts: Mapping[str, str]) -> None:
        paths = {source: stream.contract for source, stream in settings.streams.items()}
        paths.update(contracts)
        self._contracts = {source: load_contract(path) for source, path in paths.items()}
        self._limits = {source: s.max_backlog for source, s in settings.streams.items()}
        self._bus = bus_from_settings(settings) if self._contracts else None
        self._key = resolve_hmac_key(settings) if self._contracts else b""
        self._undeclared_pii = UndeclaredPii(settings.security.undeclared_pii)

    def publish(self, source: str, events: Sequence[Any]) -> EventsReceipt:
        """Accepted events go on the bus (masked); rejected ones are reported per event.

        Raises:
            NotFoundError: the source is not configured here.
            OverloadedError: the source's consumers lag more than its ``max_backlog``.
        """
        with span("entai.events.publish", {"entai.source": source, "entai.events": len(events)}):
            return self._publish(source, events)

    def _publish(self, source: str, events: Sequence[Any]) -> EventsReceipt:
        contract = self._contracts.get(source)
        if contract is None or self._bus is None:
            raise NotFoundError(
                f"no event source {source!r} is configured on this deployment",
                details={"source": source, "known": sorted(self._contracts)},
            )
        limit = self._limits.get(source)
        if limit is not None:
            backlog = self._bus.backlog(source)
            if backlog >= limit:
                raise OverloadedError(
                    f"source {source!r} has {backlog} events not yet landed "
                    f"(limit {limit}); retry later",
                    details={
                        "source": source,
                        "backlog": backlog,
                        "max_backlog": limit,
                        "retry_after_s": _RETRY_AFTER_S,
                    },
                )
        return publish_events(
            self._bus, contract, events, hmac_key=self._key, undeclared_pii=self._undeclared_pii
        )


def erase_subject(
    settings: EntaiSettings, token: str, entity: Mapping[str, int | str], reason: str
) -> dict[str, Any]:
    """Start erasing a data subject everywhere (a Ray task); the caller needs
    ``governance:erase``. Returns the ``running`` receipt."""
    from entai.pipelines.erasure import start_erasure
    from entai.shared.governance import ErasureRequest

    request = ErasureRequest(dict(entity), requested_by="http", reason=reason)
    return start_erasure(settings, request, caller=token)


def erasure_receipt(settings: EntaiSettings, erasure_id: str) -> dict[str, Any]:
    """An erasure's receipt, from the lake (any replica reads the same).

    Raises:
        NotFoundError: no erasure has this id.
    """
    from entai.pipelines.erasure import erasure_status

    return erasure_status(settings, erasure_id)
