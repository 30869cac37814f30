"""Serving tells the DriftMonitor which version is champion, off the request path.

:class:`ChampionRegistrar` is the Model deployment's versions hook
(:class:`entai.deployments.model_runtime.ModelRuntime`): after the first load and
after every long poll of the registry it hears the served versions. When the
champion is one the monitor has not yet acknowledged, it sends
``DriftMonitor.watch(model, version)`` without waiting; the next poll collects the
answer. A missing or restarting monitor is simply asked again on a later poll, so a
monitor started after the app still gets the champion within one poll. The monitor
ignores a repeated identical registration, so every replica may send it.

A ranker's replicas use the same registrar with another request
(:func:`ranker_watch_request`): ``DriftMonitor.watch_ranker`` with the ranking
fairness columns of the champion's model card and the groups of its items (each
product's category, from the version's serving index). Both present the replica's
service credential.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import ray

from entai.actors.core import ActorService
from entai.actors.models import ModelRegistry
from entai.actors.monitoring import DriftMonitor
from entai.actors.services import Services
from entai.shared.core import NotFoundError
from entai.shared.monitoring import RankingWindowFairness
from entai.shared.recommend import InteractionIndex

__all__ = ["ChampionRegistrar", "WatchRequest", "ranker_watch_request"]

WatchRequest = Callable[[ActorService[DriftMonitor], int], Any]
"""Sends the monitor its registration of a champion version; returns the call's ref."""

log = logging.getLogger(__name__)


class ChampionRegistrar:
    """Registers a model's champion with the ``entai-drift-monitor`` actor.

    Args:
        model: Registered model name.
        services: The platform's services (the drift monitor among them).
        credential: What the default request presents (the replica's service credential).
        request: How the champion is registered; by default ``DriftMonitor.watch``.
    """

    def __init__(
        self,
        model: str,
        services: Services,
        credential: str,
        *,
        request: WatchRequest | None = None,
    ) -> None:
        self._model = model
        self._services = services
        self._request = request or (
            lambda monitor, version: monitor.submit(
                DriftMonitor.watch, model, version, credential=credential
            )
        )
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
            self._pending = (champion, self._request(monitor, champion))

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


def ranker_watch_request(
    model: str,
    services: Services,
    index_of: Callable[[int], InteractionIndex | None],
    credential: str,
) -> WatchRequest:
    """The registration of a ranker's champion: its card's ranking fairness columns and
    its items' categories (``index_of(version)``: the version's loaded serving index)."""

    def request(monitor: ActorService[DriftMonitor], version: int) -> Any:
        try:
            card = services.registry().call(ModelRegistry.card, model, version)
            columns = RankingWindowFairness.columns_of(card)
        except NotFoundError:
            columns = {}  # no card: nothing to watch ("no_fairness")
        index = index_of(version)
        groups = {} if index is None else {"category": dict(index.item_category)}
        return monitor.submit(
            DriftMonitor.watch_ranker, model, version, columns, groups, credential=credential
        )

    return request
