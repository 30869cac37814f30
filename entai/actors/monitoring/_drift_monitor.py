"""The DriftMonitor service: windows over served rows, drift, alerts, feedback, retraining.

One named, detached actor (``entai-drift-monitor``) monitors every deployed model. The
serving tap calls :meth:`DriftMonitor.record` asynchronously with micro-batches; the
work per call is folding the batch into the open window's bounded profile. Drift is
computed only when a window closes (by count, by event time, or by the clock through
:meth:`DriftMonitor.tick`, which the actor's own clock calls every
``monitoring.tick_interval_s``, so a time window closes even when traffic stops).

Serving replicas call :meth:`DriftMonitor.watch` with the champion they load; the
monitor reads that version's reference profile from its registry lineage and
registers it with the policies of the ``monitoring`` settings.

Durability: a model's whole state (open window profile with its sampler's generator
state, closed window reports, alert states, prediction log, processed batch ids) is
written to ``<lake>/monitoring/<model>/state.json`` atomically after every call that
changed it, before the call returns; a restarted actor reloads it in ``__init__``.
A retried ``record`` with a processed ``batch_id`` changes nothing and returns the
report of the window that batch closed, if any. Alert notifications are sent before
the checkpoint, so a crash in between resends them (at least once; events carry the
window id).

Fairness: a version whose model card names fairness columns is watched by them too
(the lineage reference carries them): the group of each served row is logged with its
prediction, each window's demographic parity difference, equalized odds difference
and disparate impact ratio are recomputed from its feedback labels, exported as the
gauge ``entai_fairness_measure``, and a measure beyond the registry policy's threshold
(``registry.policy.fairness``, the promotion gate's) drives an alert key
``(model, <attribute>, <measure>)`` through the same state machine, sink, audit and
``entai_alert_level`` gauge as drift.

Rankers: a ranker's serving replicas call :meth:`DriftMonitor.watch_ranker` with the
champion they load, the ranking fairness columns of its model card and the groups of
its items (e.g. each product's category, from the serving index). On the clock (at most
every ``monitoring.ranker_refresh_s``) the monitor lists the ranker's impression and
feedback log files of the last 7 days in the lake, reads those that are new or changed
since its last refresh and recomputes the exposure and NDCG@k per group of the
``window_seconds`` windows they touch (:class:`~entai.shared.monitoring.RankerWatch`);
the other windows are carried forward, and windows whose files aged out are dropped.
The rows read are kept in memory, not checkpointed: a restarted monitor's first
refresh reads every file in range again. A closed window's
exposure ratio or NDCG difference beyond the policy's ranking thresholds
(``min_exposure_ratio``, ``max_ndcg_difference``) drives the alert key
``(model, <attribute>, <measure>)`` through the same state machine, sink, audit and
gauges as drift, and :meth:`DriftMonitor.report` of a ranker shows its windows.

Erasure (:meth:`DriftMonitor.erase`) drops a subject's rows from the prediction log
and their sampled values from open windows (rows are tagged with ``entity_key``, else
``request_id``). Counts, moments, category frequencies and closed-window statistics are
aggregates and stay; the reference profile holds no tags (training data is erased by
the training pipeline, and a new reference comes with the next model version).

Callers: every method that changes the monitor's state takes the caller's
``credential`` and refuses it unless it is a platform service credential (the Serve
replicas' tap, watch and feedback calls; the erasure coordinator) or an API token whose
principal holds the permission (:class:`~entai.actors.governance.CallerCheck`):
``record`` and ``feedback`` need ``predict`` on ``model:<model>`` (what the serving
routes demand), ``watch``, ``watch_ranker``, ``register_model`` and ``refresh_ranker``
need ``models:approve`` on the model, ``erase`` needs ``governance:erase`` on
``monitoring``; ``acknowledge`` and ``silence`` take the caller's token and record its
principal. ``report`` and ``models`` read; ``tick`` (what the actor's own clock calls)
only closes the windows the clock says are over and ``close`` stops that clock: these
take no credential.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import ray

from entai.actors.bus import PlatformEvents
from entai.actors.core import (
    ActorClock,
    Metrics,
    TraceCarrier,
    call_self,
    configure_tracing,
    service_actor,
    span,
)
from entai.actors.governance import CallerCheck
from entai.actors.models import ReferenceSource, lineage_reference_source
from entai.actors.monitoring._alert_sinks import (
    AlertSink,
    Auditor,
    GovernanceAuditor,
    configured_sink,
)
from entai.actors.monitoring._checkpoints import RETRAIN_DIR, MonitorCheckpoints
from entai.shared.core import EntaiError, InvalidInputError, NotFoundError
from entai.shared.data import Lake, retrain_requested
from entai.shared.governance import Permission
from entai.shared.monitoring import (
    AlertKey,
    AlertStateMachine,
    ModelWatch,
    MonitoringReference,
    RankerLogSource,
    RankerWatch,
    RankingWindowFairness,
    RetrainRequest,
    WatchLimits,
    WindowFairness,
    WindowReport,
    WindowSpec,
    batch_frame,
    timestamps_s,
)
from entai.shared.settings import EntaiSettings

__all__ = ["ACTOR_NAME", "DriftMonitor", "DriftMonitorActor", "start_drift_monitor"]

logger = logging.getLogger(__name__)

ACTOR_NAME = "entai-drift-monitor"
_SYSTEM = "entai-drift-monitor"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RANKER_LOG_DAYS = 7
"""How far back a ranker's log files are read (by date partition; older ones drop out)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _LakeRankerLogs:
    """A ranker's log files of the last :data:`_RANKER_LOG_DAYS` days in the lake."""

    def __init__(self, lake: Lake, model: str, now: datetime) -> None:
        self._lake, self._model, self._now = lake, model, now

    def files(self, log: str) -> dict[str, str]:
        return self._lake.model_log_files(log, self._model, _RANKER_LOG_DAYS, now=self._now)

    def read(self, log: str, path: str, columns: list[str]) -> pd.DataFrame:
        return self._lake.read_parquet(path, columns)


def _checked_model(model: str) -> str:
    if not _MODEL_NAME.match(model) or ".." in model or model == RETRAIN_DIR:
        raise InvalidInputError(
            f"model name {model!r} is not valid (letters, digits, '_', '.', '-')",
            details={"field": "model", "value": model},
        )
    return model


class DriftMonitor:
    """Drift, alerts, realised metrics and retraining requests for deployed models.

    Args:
        settings: The lake root holds the checkpoints and retraining requests.
        sink: Receives alert notifications; by default the log and the webhooks of
            ``settings.monitoring.webhooks`` (:func:`configured_sink`).
        retrain_sink: Receives each :class:`RetrainRequest`; by default it is written
            to ``<lake>/monitoring/retrain_requests/<request_id>.json``.
        auditor: Audit log writer (the services wiring passes the governance service's);
            by default events are logged as not audited.
        clock: Current time (timezone-aware); closes idle time windows.
        max_batch_ids: Processed batch ids remembered per model (retries older than
            that are counted again).
        max_windows: Closed window reports kept per model.
        max_predictions: Predictions kept per model for the feedback join.
        references: Where :meth:`watch` finds a version's reference; by default its
            registry lineage in MLflow.
        tick_interval_s: Run the actor's own clock (:meth:`tick` every this many
            seconds); only inside an actor, where the clock calls the actor's handle.
        events: Announces each filed retrain request on the bus
            (``entai-retrain-requested``), which wakes the retrain worker.
        callers: Who may call the state-changing methods; by default the check of
            this platform (``settings``: its service secret and governance service).
    """

    def __init__(
        self,
        settings: EntaiSettings,
        *,
        sink: AlertSink | None = None,
        retrain_sink: Callable[[RetrainRequest], None] | None = None,
        auditor: Auditor | None = None,
        clock: Callable[[], datetime] = _utcnow,
        max_batch_ids: int = 10_000,
        max_windows: int = 200,
        max_predictions: int = 10_000,
        references: ReferenceSource | None = None,
        tick_interval_s: float | None = None,
        events: PlatformEvents | None = None,
        callers: CallerCheck | None = None,
    ) -> None:
        self._callers = callers or CallerCheck.of(settings, ACTOR_NAME)
        self._events = events
        configure_tracing(settings.observability, "drift-monitor")
        self._limits = WatchLimits(max_batch_ids, max_windows, max_predictions)
        self._store = MonitorCheckpoints(Lake(settings.lake.root), self._limits)
        self._monitoring = settings.monitoring
        self._fairness_policy = settings.registry.policy.fairness
        self._references = references or lineage_reference_source(settings.mlflow)
        self._watched: dict[str, int] = {}
        self._sink: AlertSink = sink or configured_sink(settings.monitoring)
        self._retrain_sink = retrain_sink or self._store.save_retrain_request
        self._auditor: Auditor = auditor or GovernanceAuditor(None)
        self._clock = clock
        self._models: dict[str, ModelWatch] = self._store.load()
        self._rankers: dict[str, RankerWatch] = self._store.load_rankers()
        self._ranker_due: dict[str, float] = {}  # next refresh, epoch seconds
        self._ticker: ActorClock | None = None
        if tick_interval_s is not None:
            self._ticker = ActorClock(call_self("tick"), tick_interval_s, name="monitor-clock")
            self._ticker.start()

    def __repr__(self) -> str:
        return f"DriftMonitor(lake={self._store.lake.root!r}, models={sorted(self._models)})"

    def _watch(self, model: str) -> ModelWatch:
        watch = self._models.get(model)
        if watch is None:
            raise NotFoundError(
                f"model {model!r} is not registered with the drift monitor",
                details={"model": model},
            )
        return watch

    def _alerts_of(self, model: str) -> AlertStateMachine:
        """The alert states of a watched model or ranker."""
        ranker = self._rankers.get(model)
        if ranker is not None and model not in self._models:
            return ranker.alerts
        return self._watch(model).alerts

    def _save(self, model: str) -> None:
        if model in self._models:
            self._store.save(self._models[model])
        if model in self._rankers:
            self._store.save_ranker(self._rankers[model])

    # -- registration -----------------------------------------------------------------

    def _may(self, credential: str, permission: Permission, resource: str) -> None:
        self._callers.require(credential, permission, resource)

    def register_model(
        self,
        model: str,
        version: int,
        reference: Mapping[str, Any],
        *,
        credential: str,
        feature_columns: Sequence[str],
        prediction_column: str = "prediction",
        window: WindowSpec | Mapping[str, Any],
        drift_config: Mapping[str, Any] | None = None,
        alert_policy: Mapping[str, Any] | None = None,
        retrain_policy: Mapping[str, Any] | None = None,
        reference_auc: float | None = None,
        fairness: WindowFairness | Mapping[str, Any] | None = None,
    ) -> None:
        """Start (or keep) monitoring a model version against its reference profile.

        Idempotent: the same version with the same configuration changes nothing. A new
        version (or a new configuration) starts fresh windows, alerts and prediction log.

        Args:
            reference: ``ReferenceProfile.from_frame(training_df).to_dict()``; it must
                profile every feature column (and the prediction column for
                prediction drift).
            window: A :class:`WindowSpec` or its dict (``count`` and/or ``seconds``).
            drift_config: ``DriftConfig`` fields; alert_policy: ``AlertPolicy`` fields;
                retrain_policy: ``RetrainPolicy`` fields.
            reference_auc: The version's validation AUC, for the realised-AUC rule.
            fairness: The attributes to recompute fairness by per window, and the
                thresholds that alert (a :class:`WindowFairness` or its dict).
            credential: The caller's (``models:approve`` on the model).

        Raises:
            AuthenticationError / PermissionDeniedError: for the credential.
        """
        self._may(credential, Permission.MODELS_APPROVE, f"model:{model}")
        spec = window if isinstance(window, WindowSpec) else WindowSpec.from_dict(window)
        config: dict[str, Any] = {
            "version": int(version),
            "features": [str(c) for c in feature_columns],
            "prediction_column": prediction_column,
            "window": spec.to_dict(),
            "drift_config": dict(drift_config or {}),
            "alert_policy": dict(alert_policy or {}),
            "retrain_policy": dict(retrain_policy or {}),
            "reference_auc": reference_auc,
        }
        if isinstance(fairness, WindowFairness):
            config["fairness"] = fairness.to_dict()
        elif fairness is not None:
            config["fairness"] = WindowFairness.from_dict(fairness).to_dict()
        ref_text = json.dumps(dict(reference), sort_keys=True, separators=(",", ":"))
        config["reference_id"] = hashlib.sha256(ref_text.encode()).hexdigest()[:16]
        old = self._models.get(_checked_model(model))
        if old is not None and old.config == config:
            return
        first_seq = old.cursor.seq + (1 if old.cursor.n else 0) if old is not None else 0
        watch = ModelWatch.create(
            model, config, reference, first_seq=first_seq, limits=self._limits
        )
        # The reference is immutable and named by its hash: written once, before the
        # state that points to it, and never again on the hot path.
        self._store.save_reference(model, config["reference_id"], ref_text)
        self._models[model] = watch
        self._store.save(watch)
        self._audit(
            "monitoring:register", f"model:{model}:v{version}", {"window": config["window"]}
        )
        logger.info("model registered for monitoring", extra={"model": model, "version": version})

    def watch(self, model: str, version: int, *, credential: str) -> str:
        """Monitor ``version`` against the reference profile in its registry lineage.

        Serving replicas call this for the champion they load, at start and after every
        swap; the window, drift, alert and retraining policies come from the
        ``monitoring`` settings. Repeating a call changes nothing.

        Returns:
            ``"registered"``, ``"unchanged"``, or ``"no_reference"`` for a version
            trained without a reference profile (it is then not monitored).

        Raises:
            AuthenticationError / PermissionDeniedError: ``credential`` is neither a
                service's nor a token with ``models:approve`` on the model.
        """
        self._may(credential, Permission.MODELS_APPROVE, f"model:{model}")
        current = self._models.get(_checked_model(model))
        if current is not None and self._watched.get(model) == version == current.version:
            return "unchanged"
        document = self._references(model, int(version))
        if document is None:
            logger.warning(
                "version has no monitoring reference; not monitored",
                extra={"model": model, "version": version},
            )
            return "no_reference"
        reference = MonitoringReference.from_dict(document)
        before = None if current is None else current.config
        fairness = None
        if reference.fairness:
            fairness = WindowFairness.create(reference.fairness, self._fairness_policy)
        self.register_model(
            model,
            version,
            reference.profile,
            credential=credential,  # checked above: a remembered credential, no call
            **reference.registration(self._monitoring),
            fairness=fairness,
        )
        self._watched[model] = int(version)
        return "unchanged" if self._models[model].config == before else "registered"

    def watch_ranker(
        self,
        model: str,
        version: int,
        columns: Mapping[str, Mapping[str, Any]],
        item_groups: Mapping[str, Mapping[int, str]],
        *,
        credential: str,
    ) -> str:
        """Watch a ranker version's fairness per window (see the module docstring).

        Args:
            columns: The ranking fairness columns of the version's model card
                (``RankingWindowFairness.columns_of(card)``).
            item_groups: Per attribute the ranker can tell, each item's group; a
                column without one is reported unavailable in every window.

        Returns:
            ``"registered"``, ``"unchanged"`` for a repeated call, or ``"no_fairness"``
            when the card names no ranking fairness column (nothing is watched).

        Raises:
            AuthenticationError / PermissionDeniedError: as :meth:`watch`.
        """
        self._may(credential, Permission.MODELS_APPROVE, f"model:{model}")
        _checked_model(model)
        if not columns:
            return "no_fairness"
        fairness = RankingWindowFairness.create(columns, self._fairness_policy)
        config = {
            "version": int(version),
            "fairness": fairness.to_dict(),
            "item_groups": {
                str(c): {str(i): str(g) for i, g in groups.items()}
                for c, groups in item_groups.items()
            },
            "window_s": self._monitoring.window_seconds or 3600.0,
            "grace_s": self._monitoring.grace_s,
            "alert_policy": self._monitoring.alerts.model_dump(),
        }
        old = self._rankers.get(model)
        if old is not None and old.config == config:
            return "unchanged"
        watch = RankerWatch(model, config, max_windows=self._limits.max_windows)
        self._rankers[model] = watch
        self._ranker_due.pop(model, None)
        self._store.save_ranker(watch)
        self._audit("monitoring:register", f"model:{model}:v{version}", {"ranker": True})
        logger.info("ranker registered for fairness monitoring", extra={"model": model})
        return "registered"

    def refresh_ranker(self, model: str, *, credential: str) -> dict[str, Any]:
        """Bring a ranker's windows up to date with its log files now; returns its report.

        Raises:
            AuthenticationError / PermissionDeniedError: as :meth:`watch`.
            NotFoundError: the ranker is not watched.
        """
        self._may(credential, Permission.MODELS_APPROVE, f"model:{model}")
        return self._refresh_ranker(model)

    def _refresh_ranker(self, model: str) -> dict[str, Any]:
        watch = self._rankers.get(model)
        if watch is None:
            raise NotFoundError(
                f"ranker {model!r} is not watched by the drift monitor", details={"model": model}
            )
        now = self._clock()
        logs: RankerLogSource = _LakeRankerLogs(self._store.lake, model, now)
        for event in watch.refresh(logs, now):
            self._alert(event)
        for attribute, measures in watch.latest_fairness().items():
            for measure, value in measures.items():
                Metrics.fairness_measure(model, attribute, measure, value)
        self._ranker_due[model] = now.timestamp() + self._monitoring.ranker_refresh_s
        self._store.save_ranker(watch)
        return watch.report()

    def models(self) -> list[str]:
        """Names of the monitored models (rankers watched for fairness included)."""
        return sorted({*self._models, *self._rankers})

    def close(self) -> None:
        """Stop the actor's clock (after its current tick)."""
        if self._ticker is not None:
            self._ticker.stop()

    # -- hot path ---------------------------------------------------------------------

    def record(
        self,
        model: str,
        batch_id: str,
        rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        *,
        credential: str,
        trace: TraceCarrier | None = None,
    ) -> WindowReport | None:
        """Fold a micro-batch of served rows into the model's windows.

        Rows carry the feature columns, the prediction column and optionally
        ``request_id``, ``version`` (rows of other versions are ignored and counted),
        ``ts`` (epoch seconds or ISO time; missing -> now) and ``entity_key``. With a
        ``trace`` carrier (the prediction tap's), the call is the span
        ``entai.monitor.record`` of that trace.

        Returns:
            The report of the last window this batch closed, or None. A retried
            ``batch_id`` changes nothing and returns the same answer.

        Raises:
            AuthenticationError / PermissionDeniedError: ``credential`` is neither a
                service's nor a token with ``predict`` on the model.
        """
        self._may(credential, Permission.PREDICT, f"model:{model}")
        if trace is None:
            return self._record(model, batch_id, rows)
        with span("entai.monitor.record", {"entai.model": model}, parent=trace) as current:
            report = self._record(model, batch_id, rows)
            if current is not None:
                current.set_attribute("entai.window_closed", report is not None)
            return report

    def _record(
        self,
        model: str,
        batch_id: str,
        rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    ) -> WindowReport | None:
        watch = self._watch(model)
        if batch_id in watch.batches:
            return watch.last_report(watch.batches[batch_id])
        now = self._clock()
        frame = watch.conform(batch_frame(rows))
        ts = timestamps_s(frame, "ts", now.timestamp())
        closed = watch.close_due(now)
        closed += watch.add(frame, ts, now)
        Metrics.predictions(model, watch.version, len(frame))
        watch.remember_batch(batch_id, [r.window_id for r in closed])
        self._after_change(watch, closed, now)
        return closed[-1] if closed else None

    def tick(self) -> list[WindowReport]:
        """Close every time window the clock says is over; returns their reports."""
        now = self._clock()
        out: list[WindowReport] = []
        for watch in self._models.values():
            closed = watch.close_due(now)
            if closed:
                self._after_change(watch, closed, now)
                out += closed
        for model in list(self._rankers):
            if self._ranker_due.get(model, 0.0) <= now.timestamp():
                try:
                    self._refresh_ranker(model)
                except (EntaiError, OSError, ValueError, KeyError) as exc:  # a bad log file
                    # must not stop the clock; tried again after the refresh interval
                    self._ranker_due[model] = now.timestamp() + self._monitoring.ranker_refresh_s
                    logger.warning(
                        "ranker refresh failed", extra={"model": model, "error": repr(exc)}
                    )
        return out

    def _after_change(self, watch: ModelWatch, closed: list[WindowReport], now: datetime) -> None:
        """Notify, request retraining, publish metrics, then checkpoint."""
        for report in closed:
            columns = dict(report.features)
            if report.prediction is not None:
                columns[watch.prediction_column] = report.prediction
            for name, column in columns.items():
                Metrics.drift_statistic(watch.name, name, column["method"], column["statistic"])
            for event in report.alerts:
                self._alert(event)
        for event in watch.take_raised():
            self._alert(event)
        if watch.fairness is not None:
            for attribute, measures in watch.latest_fairness().items():
                for measure, value in measures.items():
                    Metrics.fairness_measure(watch.name, attribute, measure, value)
        if closed or watch.retrain_pending:
            self._maybe_retrain(watch, now)
        self._store.save(watch)

    def _alert(self, event: Mapping[str, Any]) -> None:
        Metrics.alert_state(event["model"], event["feature"], event["method"], event["level"])
        self._audit(
            "monitoring:alert",
            f"model:{event['model']}:{event['feature']}:{event['method']}",
            dict(event),
        )
        if not event["notify"]:
            return
        try:
            self._sink.send(event)
        except EntaiError as exc:
            logger.warning(
                "alert sink failed", extra={"error": exc.message, "details": exc.details}
            )

    def _maybe_retrain(self, watch: ModelWatch, now: datetime) -> None:
        request = watch.retrain_request(now)
        if request is None:
            return
        self._retrain_sink(request)
        self._audit("monitoring:retrain_request", f"model:{watch.name}", request.to_dict())
        logger.info("retraining requested", extra={"retrain": request.to_dict()})
        if self._events is not None:
            self._events.publish(
                [
                    retrain_requested(
                        request.model, request.version, request.request_id, request.reason
                    )
                ]
            )

    def _audit(
        self, action: str, resource: str, details: Mapping[str, Any], principal: str = _SYSTEM
    ) -> None:
        self._auditor.audit(action, principal, resource, "allow", details=details)

    # -- feedback, report, operators --------------------------------------------------

    def feedback(self, model: str, labels: Mapping[str, int], *, credential: str) -> int:
        """Join labels (0/1 by request id) to logged predictions; returns how many matched.

        Realised AUC and log loss of the windows concerned are recomputed, and their
        fairness measures for a version watched for fairness (alerting as drift does).

        Raises:
            AuthenticationError / PermissionDeniedError: ``credential`` is neither a
                service's nor a token with ``predict`` on the model (nothing is joined).
        """
        self._may(credential, Permission.PREDICT, f"model:{model}")
        watch = self._watch(model)
        matched = watch.feedback(labels, self._clock())
        if matched:
            self._after_change(watch, [], self._clock())
        return matched

    def report(self, model: str) -> dict[str, Any]:
        """A JSON-able report: configuration, open window, closed windows, alert states
        (a ranker's: its windows' fairness and alert states, ``"kind": "ranker"``)."""
        ranker = self._rankers.get(model)
        if ranker is not None and model not in self._models:
            return ranker.report()
        return self._watch(model).report()

    def acknowledge(self, model: str, feature: str, method: str, token: str) -> None:
        """Acknowledge an alert: no more notifications at its level for this episode.

        ``token`` is the caller's: its principal needs ``models:approve`` on the model
        and is recorded as who acknowledged.

        Raises:
            ConflictError: when the alert is OK.
            AuthenticationError / PermissionDeniedError: for the token.
        """
        by = self._auditor.principal_for(token, "models:approve", f"model:{model}")
        self._alerts_of(model).acknowledge(AlertKey(model, feature, method), by)
        self._save(model)
        resource = f"model:{model}:{feature}:{method}"
        self._audit("monitoring:acknowledge", resource, {"by": by}, principal=by)

    def silence(self, model: str, feature: str, method: str, until: datetime, token: str) -> None:
        """Send no notifications for an alert key before ``until`` (timezone-aware).

        ``token`` is the caller's (``models:approve`` on the model); the audit log
        records its principal.

        Raises:
            AuthenticationError / PermissionDeniedError: for the token.
        """
        by = self._auditor.principal_for(token, "models:approve", f"model:{model}")
        self._alerts_of(model).silence(AlertKey(model, feature, method), until)
        self._save(model)
        resource = f"model:{model}:{feature}:{method}"
        details = {"until": until.isoformat(), "by": by}
        self._audit("monitoring:silence", resource, details, principal=by)

    def erase(self, keys: Sequence[str], *, credential: str) -> int:
        """Drop stored rows and samples of data subjects, by entity key or request id.

        Returns:
            Prediction-log rows plus sampled values dropped, over all models.

        Raises:
            AuthenticationError / PermissionDeniedError: ``credential`` is neither a
                service's nor a token with ``governance:erase`` on ``monitoring``.
        """
        self._may(credential, Permission.GOVERNANCE_ERASE, "monitoring")
        total = 0
        for watch in self._models.values():
            dropped = watch.erase(keys)
            if dropped:
                self._store.save(watch)
                total += dropped
        self._audit("monitoring:erase", "monitoring", {"keys": len(keys), "dropped": total})
        return total


DriftMonitorActor = ray.remote(DriftMonitor)


def start_drift_monitor(
    settings: EntaiSettings, namespace: str | None = None, *, auditor: Auditor | None = None
) -> Any:
    """Create (or get) the named, detached ``entai-drift-monitor`` actor.

    Detached, restarted forever (``max_restarts=-1``, ``max_task_retries=-1``), no CPU
    reserved, fetched if it exists, its clock ticking every
    ``settings.monitoring.tick_interval_s``. Pass settings with absolute paths
    (``settings.resolved()``).

    Returns:
        The actor handle.
    """
    return service_actor(
        DriftMonitorActor,
        ACTOR_NAME,
        namespace or settings.ray.namespace,
        settings,
        auditor=auditor,
        tick_interval_s=settings.monitoring.tick_interval_s,
        events=PlatformEvents(settings),
    )
