"""The retraining worker: a named, detached actor that runs pending RetrainRequests.

The DriftMonitor writes each request to ``<lake>/monitoring/retrain_requests/`` and
then announces it on the bus (``entai-retrain-requested``). The worker listens on that
platform stream and, when a request is announced, hands every pending request to
:func:`entai.pipelines.training._retrain.process_pending`, with the training config
recorded in the drifted version's lineage; it acknowledges the announcement only
after the run, so a worker killed mid-run hears it again after its restart.

The request file stays the durable record, not the event: the worker reconciles
from the files when it starts and every ``monitoring.retrain_resync_s`` (default
5 minutes), so a request whose announcement was lost (the bus down when the monitor
published, a queue actor restarted) still runs, late. Requests reach the worker
however they were filed (the monitor, an operator, a monitor that crashed between the
file and the event), and the monitor (an actor, a lower layer) knows nothing about a
workflow that lives in ``pipelines``.

Rate limit: on top of the monitor's per-model limit on requests, the worker runs at
most one retrain per model per ``monitoring.retrain.min_interval_s``; a request that
comes sooner is closed as skipped (audited), not queued. A restarted worker reads
the last run per model back from the closed requests, so a restart does not reset
the limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import ray

from entai.actors.bus import EventBus, bus_from_settings
from entai.actors.core import ActorClock, call_self, service_actor
from entai.pipelines.training._config import TrainConfig
from entai.pipelines.training._lineage import recorded_train_config
from entai.pipelines.training._retrain import ConfigSource, last_runs, process_pending
from entai.shared.data import Lake, PlatformEventKind
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
        resync_s: Reconcile from the request files every this many seconds (the
            worker's own clock); only inside an actor.
        listen: Listen for ``entai-retrain-requested`` announcements (a thread of
            the worker's) on ``bus``, by default the settings' bus.
        bus: The bus to listen on.
        clock: Current time (timezone-aware), for the rate limit.
    """

    def __init__(
        self,
        settings: EntaiSettings,
        *,
        config_for: ConfigSource | None = None,
        resync_s: float | None = None,
        listen: bool = False,
        bus: EventBus | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings = settings
        self._config_for = config_for or self._recorded_config
        self._min_interval = timedelta(seconds=settings.monitoring.retrain.min_interval_s)
        self._clock = clock
        self._last_run: dict[str, datetime] = last_runs(Lake(settings.lake.root))
        self._outcomes: list[dict[str, Any]] = []
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: ActorClock | None = None
        self._listener: threading.Thread | None = None
        if resync_s is not None:
            self._ticker = ActorClock(call_self("run_once"), resync_s, name="retrain-resync")
            self._ticker.start()
        if listen:
            self._listener = threading.Thread(
                target=self._listen,
                args=(bus or bus_from_settings(settings),),
                name="retrain-listen",
                daemon=True,
            )
            self._listener.start()

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
        with self._run_lock:  # the listener and the resync clock may both ask
            outcomes = process_pending(
                self._settings, self._config_for, skip_reason=self._skip_reason
            )
            if outcomes:
                log.info("retrain requests handled", extra={"outcomes": len(outcomes)})
            self._outcomes = [*self._outcomes, *outcomes][-_KEPT_OUTCOMES:]
            return outcomes

    def _listen(self, bus: EventBus) -> None:
        source = PlatformEventKind.RETRAIN_REQUESTED.value
        while not self._stop.is_set():
            try:
                deliveries = bus.read(source, ACTOR_NAME, max_events=100, block_s=1.0)
                if deliveries:
                    log.info("retrain requested", extra={"announcements": len(deliveries)})
                    self.run_once()
                    bus.ack(source, deliveries)
            except Exception as exc:  # noqa: BLE001 - bus or run failed: the resync catches up
                log.warning("retrain listener failed; retrying", extra={"error": str(exc)})
                self._stop.wait(1.0)

    def outcomes(self) -> list[dict[str, Any]]:
        """The latest outcomes, oldest first."""
        return list(self._outcomes)

    def close(self) -> None:
        """Stop listening and reconciling (after the current run)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.stop()


RetrainWorkerActor = ray.remote(RetrainWorker)


def start_retrain_worker(settings: EntaiSettings, namespace: str | None = None) -> Any:
    """Create (or get) the named, detached ``entai-retrain-worker`` actor.

    Like every service it reserves no CPU; the training it starts asks Ray for its
    own. It listens for announced requests on the settings' bus and reconciles from
    the request files every ``settings.monitoring.retrain_resync_s``. Pass settings
    with absolute paths (``settings.resolved()``).
    """
    return service_actor(
        RetrainWorkerActor,
        ACTOR_NAME,
        namespace or settings.ray.namespace,
        settings,
        resync_s=settings.monitoring.retrain_resync_s,
        listen=True,
    )
