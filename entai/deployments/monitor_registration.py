"""Serving tells the DriftMonitor which version is champion, off the request path.

:class:`ChampionRegistrar` is the Model deployment's versions hook
(:class:`entai.deployments.model_runtime.ModelRuntime`): after the first load and
after every long poll of the registry it hears the served versions. When the
champion is one the monitor has not yet acknowledged, it sends
``DriftMonitor.watch(model, version)`` without waiting; the next poll collects the
answer. A missing or restarting monitor is simply asked again on a later poll, so a
monitor started after the app still gets the champion within one poll. The monitor
ignores a repeated identical registration, so every replica may send it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray

from entai.actors.monitoring import DriftMonitor
from entai.actors.services import Services

__all__ = ["ChampionRegistrar"]

log = logging.getLogger(__name__)


class ChampionRegistrar:
    """Registers a model's champion with the ``entai-drift-monitor`` actor.

    Args:
        model: Registered model name.
        services: The platform's services (the drift monitor among them).
    """

    def __init__(self, model: str, services: Services) -> None:
        self._model = model
        self._services = services
        self._pending: tuple[int, Any] | None = None
        self.acknowledged: int | None = None
        self.status: str | None = None

    def __repr__(self) -> str:
        return f"ChampionRegistrar(model={self._model!r}, acknowledged={self.acknowledged})"

    def __call__(self, versions: Mapping[str, int]) -> None:
        """Make sure the monitor watches ``versions["champion"]``; never blocks."""
        champion = versions.get("champion")
        if champion is None or champion == self.acknowledged:
            return
        if self._pending is not None:
            version, ref = self._pending
            ready, _ = ray.wait([ref], timeout=0)
            if not ready and version == champion:
                return  # still in flight
            self._pending = None
            if ready and self._collect(version, ref) and version == champion:
                return
        monitor = self._services.drift_monitor_if_running()
        if monitor is None:
            log.debug("no drift monitor running yet", extra={"model": self._model})
        else:
            self._pending = (champion, monitor.submit(DriftMonitor.watch, self._model, champion))

    def _collect(self, version: int, ref: Any) -> bool:
        try:
            self.status = str(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - the monitor may be restarting; asked again
            log.warning(
                "drift monitor did not take the champion; retrying",
                extra={"model": self._model, "version": version, "error": repr(exc)},
            )
            return False
        self.acknowledged = version
        log.info(
            "champion watched by the drift monitor",
            extra={"model": self._model, "version": version, "status": self.status},
        )
        return True
