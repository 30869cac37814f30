"""Event intake and erasure for the ingress: settings in, domain calls out.

Both run in a worker thread of the ingress replica (they block on Redis, actors and
the lake), never on its event loop.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from entai.shared.core import ConfigError, NotFoundError
from entai.shared.data import DataContract, EventsReceipt, UndeclaredPii
from entai.shared.settings import EntaiSettings

__all__ = ["EventIntake", "erase_subject", "load_contract"]


def load_contract(import_path: str) -> DataContract:
    """A contract from ``"package.module:NAME"`` or a YAML file path."""
    if ":" in import_path and not import_path.endswith((".yaml", ".yml")):
        module, _, attr = import_path.partition(":")
        contract = getattr(importlib.import_module(module), attr, None)
        if not isinstance(contract, DataContract):
            raise ConfigError(
                f"{import_path} is not a DataContract", details={"contract": import_path}
            )
        return contract
    return DataContract.from_yaml(import_path)


class EventIntake:
    """Validates event batches against their source's contract and publishes them."""

    def __init__(self, settings: EntaiSettings, contracts: Mapping[str, str]) -> None:
        from entai.actors.bus import bus_from_settings
        from entai.shared.settings import resolve_hmac_key

        self._contracts = {source: load_contract(path) for source, path in contracts.items()}
        self._bus = bus_from_settings(settings) if self._contracts else None
        self._key = resolve_hmac_key(settings) if self._contracts else b""
        self._undeclared_pii = UndeclaredPii(settings.security.undeclared_pii)

    def publish(self, source: str, events: Sequence[Any]) -> EventsReceipt:
        """Accepted events go on the bus (masked); rejected ones are reported per event."""
        from entai.pipelines.features import publish_events

        contract = self._contracts.get(source)
        if contract is None or self._bus is None:
            raise NotFoundError(
                f"no event source {source!r} is configured on this deployment",
                details={"source": source, "known": sorted(self._contracts)},
            )
        return publish_events(
            self._bus, contract, events, hmac_key=self._key, undeclared_pii=self._undeclared_pii
        )


def erase_subject(
    settings: EntaiSettings, token: str, entity: Mapping[str, int | str], reason: str
) -> dict[str, Any]:
    """Erase a data subject everywhere; the caller needs ``governance:erase``."""
    from entai.pipelines.erasure import erase
    from entai.shared.governance import ErasureRequest

    request = ErasureRequest(dict(entity), requested_by="http", reason=reason)
    receipt = erase(settings, request, caller=token)
    return dict(receipt.to_dict())
