"""The retraining worker: a named, detached actor that runs pending RetrainRequests.

It polls ``<lake>/monitoring/retrain_requests/`` every ``monitoring.retrain_poll_s``
(its own clock, :class:`entai.actors.core._actor_clock.ActorClock`) and hands what it finds
to :func:`entai.pipelines.training._retrain.process_pending`, with the training config
recorded in the drifted version's lineage.

Why poll rather than have the DriftMonitor call it: a request is a durable file,
written before the monitor audits it, so the worker picks it up however it got there
(the monitor, an operator, a monitor that crashed right after writing it), including
after its own restart, and the monitor (an actor, a lower layer) needs to know nothing
about a workflow that lives in ``pipelines``. The price is up to one poll interval of
latency, small next to a training run. A worker killed mid-run leaves the request
pending, so it is run again after the restart (at least once).

Rate limit: on top of the monitor's per-model limit on requests, the worker runs at
most one retrain per model per ``monitoring.retrain.min_interval_s``; a request that
comes sooner is closed as skipped (audited), not queued. A restarted worker reads
the last run per model back from the closed requests, so a restart does not reset
the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import ray

from entai.actors.core import ActorClock, call_self, service_actor
from entai.pipelines.training._config import TrainConfig
from entai.pipelines.training._lineage import recorded_train_config
from entai.pipelines.training._retrain import ConfigSource, last_runs, process_pending
from entai.shared.data import Lake
from entai.shared.settings import EntaiSettings

__all__ = ["ACTOR_NAME", "RetrainWorker", "RetrainWorkerActor", "start_retrain_worker"]

log = logging.getLogger(__name__)

ACTOR_NAME = "entai-retrain-worker"
_KEPT_OUTCOMES = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RetrainWorker:
    """Runs pending retrain requests, rate-limited per model.

    Args:
        settings: Lake, MLflow and monitoring settings (absolute paths).
        config_for: The config to rerun for a request; by default the one recorded
            in the lineage of the version the request is about.
        poll_s: Run the worker's own clock (:meth:`run_once` every this many
            seconds); only inside an actor.
        clock: Current time (timezone-aware), for the rate limit.
    """

    def __init__(
        self,
        settings: EntaiSettings,
        *,
        config_for: ConfigSource | None = None,
        poll_s: float | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings = settings
        self._config_for = config_for or self._recorded_config
        self._min_interval = timedelta(seconds=settings.monitoring.retrain.min_interval_s)
        self._clock = clock
        self._last_run: dict[str, datetime] = last_runs(Lake(settings.lake.root))
        self._outcomes: list[dict[str, Any]] = []
        self._ticker: ActorClock | None = None
        if poll_s is not None:
            self._ticker = ActorClock(call_self("run_once"), poll_s, name="retrain-poll")
            self._ticker.start()

    def __repr__(self) -> str:
        return f"RetrainWorker(lake={self._settings.lake.root!r})"

    def _recorded_config(self, request: Mapping[str, Any]) -> TrainConfig:
        return recorded_train_config(self._settings, str(request["model"]), int(request["version"]))

    def _skip_reason(self, request: Mapping[str, Any]) -> str | None:
        model, now = str(request["model"]), self._clock()
        last = self._last_run.get(model)
        if last is not None and now - last < self._min_interval:
            return f"rate limited: model {model!r} was retrained at {last.isoformat()}"
        self._last_run[model] = now
        return None

    def run_once(self) -> list[dict[str, Any]]:
        """Handle every pending request now; returns their outcomes."""
        outcomes = process_pending(self._settings, self._config_for, skip_reason=self._skip_reason)
        if outcomes:
            log.info("retrain requests handled", extra={"outcomes": len(outcomes)})
        self._outcomes = [*self._outcomes, *outcomes][-_KEPT_OUTCOMES:]
        return outcomes

    def outcomes(self) -> list[dict[str, Any]]:
        """The latest outcomes, oldest first."""
        return list(self._outcomes)

    def close(self) -> None:
        """Stop polling (after the current run)."""
        if self._ticker is not None:
            self._ticker.stop()


RetrainWorkerActor = ray.remote(RetrainWorker)


def start_retrain_worker(settings: EntaiSettings, namespace: str | None = None) -> Any:
    """Create (or get) the named, detached ``entai-retrain-worker`` actor.

    Like every service it reserves no CPU; the training it starts asks Ray for its
    own. It polls every ``settings.monitoring.retrain_poll_s``. Pass settings with
    absolute paths (``settings.resolved()``).
    """
    return service_actor(
        RetrainWorkerActor,
        ACTOR_NAME,
        namespace or settings.ray.namespace,
        settings,
        poll_s=settings.monitoring.retrain_poll_s,
    )
