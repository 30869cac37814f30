"""One monitored model version: its open window, closed reports, alerts and feedback.

Pure domain state behind :class:`entai.actors.monitoring._drift_monitor.DriftMonitor`, which adds
persistence, notifications and metrics. Everything here checkpoints to JSON
(:meth:`ModelWatch.to_dict`) and restores exactly, the open window's sampler included,
so a restored watch closes its windows with the same results as the original.

Alert keys per closed window: ``(model, feature, method)`` for every feature with
enough data, ``(model, <prediction column>, method)`` for prediction drift, and
``(model, "*", "dataset")`` for dataset drift.

A version watched for fairness (its configuration's ``fairness``, a
:class:`~entai.shared.monitoring._fairness_windows.WindowFairness`) logs each served
row's group of every fairness attribute with its prediction, recomputes the window's
disparity measures with its realised metrics (at the close, and again as labels
arrive), and observes ``(model, <attribute>, <measure>)`` for every thresholded measure
once it can be computed: the first verdict on enough labels counts for the window (a
window id is observed once per key, like drift's). Transitions found when late labels
arrive are added to that window's report and kept for the service
(:meth:`ModelWatch.take_raised`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from entai.shared.core import ConfigError, InvalidInputError
from entai.shared.monitoring._alerts import AlertKey, AlertPolicy, AlertStateMachine
from entai.shared.monitoring._distributions import window_distributions
from entai.shared.monitoring._drift import DriftConfig, DriftStatus, dataset_drift
from entai.shared.monitoring._fairness_windows import (
    WindowFairness,
    fairness_verdicts,
    group_values,
    window_fairness,
)
from entai.shared.monitoring._feedback import PredictionLog, expected_accuracy, log_loss, roc_auc
from entai.shared.monitoring._profiles import (
    NumericColumnProfile,
    ReferenceProfile,
    WindowAccumulator,
    WindowProfile,
    accumulator_from_dict,
    accumulator_to_dict,
)
from entai.shared.monitoring._windows import (
    FloatArray,
    RetrainPolicy,
    RetrainRequest,
    WindowCursor,
    WindowReport,
    WindowSpec,
    column_summary,
    plan_segments,
    transition_event,
    window_due,
    window_id,
)

__all__ = ["DATASET_KEY", "ModelWatch", "WatchLimits"]

logger = logging.getLogger(__name__)

DATASET_KEY = ("*", "dataset")
"""Feature and method of the dataset-drift alert key."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class WatchLimits:
    """Memory bounds of a watch.

    Attributes:
        max_batch_ids: Processed batch ids remembered (older retries count again).
        max_windows: Closed window reports kept.
        max_predictions: Predictions kept for the feedback join.
    """

    max_batch_ids: int = 10_000
    max_windows: int = 200
    max_predictions: int = 10_000


class ModelWatch:
    """Monitoring state of one model version (see the module docstring).

    Build with :meth:`create` or :meth:`from_dict`.
    """

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        reference: Mapping[str, Any],
        limits: WatchLimits,
    ) -> None:
        self.name = name
        self.config = dict(config)
        self.version = int(config["version"])
        self.features: list[str] = list(config["features"])
        self.prediction_column = str(config["prediction_column"])
        self.spec = WindowSpec.from_dict(config["window"])
        try:
            self.drift_config = DriftConfig(**config["drift_config"])
            self.retrain_policy = RetrainPolicy(**config["retrain_policy"])
            policy = AlertPolicy(**config["alert_policy"])
        except TypeError as exc:
            raise ConfigError(
                f"monitoring config of model {name!r} is invalid: {exc}",
                details={"field": "drift_config/alert_policy/retrain_policy"},
            ) from exc
        profile = ReferenceProfile.from_dict(reference)
        missing = [c for c in self.features if c not in profile.columns]
        if missing:
            raise InvalidInputError(
                f"reference profile of model {name!r} lacks feature column(s) {missing}",
                details={"field": "reference", "columns": missing},
            )
        self._reference = profile
        fairness = config.get("fairness")
        self.fairness = None if fairness is None else WindowFairness.from_dict(fairness)
        self.raised: list[dict[str, Any]] = []  # transitions found outside a window close
        self.limits = limits
        self.cursor = WindowCursor()
        self.acc: WindowAccumulator | None = None
        self.span: list[float] = []  # first and last event time of the open window
        self.confidence = [0.0, 0.0]  # sum of max(p, 1-p) and count, open window
        self.batches: OrderedDict[str, list[str]] = OrderedDict()
        self.windows: list[WindowReport] = []
        self.alerts = AlertStateMachine(policy)
        self.log = PredictionLog(limits.max_predictions)
        self.last_retrain_at: datetime | None = None
        self.retrain_pending = False
        self.ignored_rows = 0
        self.distributions: dict[str, Any] | None = None  # of the last closed window

    @classmethod
    def create(
        cls,
        name: str,
        config: Mapping[str, Any],
        reference: Mapping[str, Any],
        *,
        first_seq: int,
        limits: WatchLimits,
    ) -> ModelWatch:
        """A fresh watch whose first window has sequence number ``first_seq``.

        Args:
            config: Version, features, prediction column, window, policies.
            reference: ``ReferenceProfile.to_dict()`` of the training data.
        """
        watch = cls(name, config, reference, limits)
        watch.cursor = WindowCursor(first_seq)
        return watch

    @property
    def reference(self) -> ReferenceProfile:
        """The profile this version is monitored against."""
        return self._reference

    @property
    def columns(self) -> list[str]:
        """The profiled columns: features, then the prediction."""
        return [*self.features, self.prediction_column]

    # -- ingest -----------------------------------------------------------------------

    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Keep this version's rows and cast profiled columns to the reference's kinds.

        Raises:
            InvalidInputError: when a feature or the prediction column is missing.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"rows for model {self.name!r} lack column(s) {missing}",
                details={"field": "rows", "columns": missing},
            )
        if "version" in frame.columns:
            mine = pd.to_numeric(frame["version"], errors="coerce") == self.version
            self.ignored_rows += int((~mine).sum())
            frame = frame[mine.to_numpy()].reset_index(drop=True)
        frame = frame.copy()
        for name in self.columns:
            profile = self._reference.columns.get(name)
            numeric = profile is None or isinstance(profile, NumericColumnProfile)
            column = frame[name]
            frame[name] = (
                pd.to_numeric(column, errors="coerce").astype(np.float64)
                if numeric
                else column.astype(object)
            )
        return frame

    def add(self, frame: pd.DataFrame, ts: FloatArray, now: datetime) -> list[WindowReport]:
        """Fold conformed rows (with event times ``ts``) in; returns windows closed."""
        segments, cursor = plan_segments(self.spec, self.cursor, ts)
        tags = self._tags(frame)
        ids = frame["request_id"].astype(str) if "request_id" in frame.columns else None
        closed: list[WindowReport] = []
        for seg in segments:
            part = slice(seg.start, seg.stop)
            if seg.stop > seg.start:
                rows = frame.iloc[part]
                if self.acc is None:
                    self.acc = WindowAccumulator(sample_size=self.spec.sample_size, seed=seg.seq)
                self.acc.add(rows[self.columns].reset_index(drop=True), tags=tags[part])
                seg_ts = ts[part]
                lo, hi = float(seg_ts.min()), float(seg_ts.max())
                if self.span:
                    lo, hi = min(lo, self.span[0]), max(hi, self.span[1])
                self.span = [lo, hi]
                predictions = rows[self.prediction_column].to_numpy(np.float64)
                finite = int(np.isfinite(predictions).sum())
                if finite:
                    self.confidence[0] += (expected_accuracy(predictions) or 0.0) * finite
                    self.confidence[1] += finite
                if ids is not None:
                    wid = window_id(self.name, self.version, seg.seq)
                    self.log.add(
                        ids.iloc[part].tolist(), predictions, wid, tags[part], self._groups(rows)
                    )
            if seg.closes:
                closed.append(self._close(seg.seq, seg.closed_by, now))
        self.cursor = cursor
        return closed

    def _groups(self, rows: pd.DataFrame) -> dict[str, list[str | None]] | None:
        """Each row's group of every fairness attribute the rows carry."""
        if self.fairness is None:
            return None
        return {c: group_values(rows[c].tolist()) for c in self.fairness.columns if c in rows}

    def _tags(self, frame: pd.DataFrame) -> list[str | None]:
        for column in ("entity_key", "request_id"):
            if column in frame.columns:
                values = frame[column]
                tags: list[str | None] = (
                    values.astype(str).astype(object).where(values.notna(), None).tolist()
                )
                return tags
        return [None] * len(frame)

    def close_due(self, now: datetime) -> list[WindowReport]:
        """Close the open time window when the clock is past its end (plus grace)."""
        if not window_due(self.spec, self.cursor, now.timestamp()):
            return []
        report = self._close(self.cursor.seq, "clock", now)
        self.cursor = WindowCursor(self.cursor.seq + 1)
        return [report]

    def remember_batch(self, batch_id: str, window_ids: list[str]) -> None:
        """Mark a batch processed (bounded; the oldest ids are forgotten first)."""
        self.batches[batch_id] = window_ids
        while len(self.batches) > self.limits.max_batch_ids:
            self.batches.popitem(last=False)

    def last_report(self, window_ids: Sequence[str]) -> WindowReport | None:
        """The report of the last of ``window_ids`` still kept, if any."""
        wanted = set(window_ids)
        found = [w for w in self.windows if w.window_id in wanted]
        return found[-1] if found else None

    # -- closing a window -------------------------------------------------------------

    def _close(self, seq: int, closed_by: str, now: datetime) -> WindowReport:
        wid = window_id(self.name, self.version, seq)
        assert self.acc is not None  # a window closes only after it received rows
        window = self.acc.to_profile()
        self.distributions = {
            "window_id": wid,
            "columns": window_distributions(self._reference, window, self.columns),
        }
        ref = self._reference.columns
        drift = dataset_drift(
            ReferenceProfile(self._reference.n_rows, {c: ref[c] for c in self.features}),
            WindowProfile(window.n_rows, {c: window.columns[c] for c in self.features}),
            config=self.drift_config,
        )
        prediction = None
        if self.prediction_column in ref:
            pc = self.prediction_column
            pred = dataset_drift(
                ReferenceProfile(self._reference.n_rows, {pc: ref[pc]}),
                WindowProfile(window.n_rows, {pc: window.columns[pc]}),
                config=self.drift_config,
            ).columns[pc]
            prediction = column_summary(pred)
        verdicts = [(name, str(c.method), c.status) for name, c in drift.columns.items()]
        if prediction is not None:
            verdicts.append((self.prediction_column, prediction["method"], pred.status))
        verdicts.append((*DATASET_KEY, drift.status))
        events = []
        for feature, method, status in verdicts:
            if status is DriftStatus.INSUFFICIENT_DATA:
                continue
            key = AlertKey(self.name, feature, method)
            change = self.alerts.observe(key, wid, status is DriftStatus.DRIFT, now)
            if change is not None:
                events.append(transition_event(change, self.version))
        realised = self._realised(wid)
        events += self._fairness_alerts(wid, realised, now)
        report = WindowReport(
            window_id=wid,
            model=self.name,
            version=self.version,
            seq=seq,
            n=window.n_rows,
            start=self.span[0] if self.span else None,
            end=self.span[1] if self.span else None,
            closed_at=now.isoformat(),
            closed_by=closed_by,
            status=str(drift.status),
            drifted_share=drift.drifted_share,
            features={name: column_summary(c) for name, c in drift.columns.items()},
            prediction=prediction,
            expected_accuracy=self.open_confidence(),
            realised=realised,
            alerts=events,
        )
        self.windows = [*self.windows, report][-self.limits.max_windows :]
        self.acc, self.span, self.confidence = None, [], [0.0, 0.0]
        logger.info("window closed", extra={"window_id": wid, "status": report.status})
        return report

    def open_confidence(self) -> float | None:
        """Mean confidence ``max(p, 1 - p)`` of the open window's predictions, if any."""
        total, count = self.confidence
        return total / count if count else None

    def _realised(self, wid: str) -> dict[str, Any] | None:
        labels, predictions = self.log.labelled(wid)
        if not labels.size:
            return None
        realised: dict[str, Any] = {
            "n_labels": int(labels.size),
            "auc": roc_auc(labels, predictions),
            "log_loss": log_loss(labels, predictions),
        }
        if self.fairness is not None:
            labels, predictions, groups = self.log.labelled_groups(wid, list(self.fairness.columns))
            realised["fairness"] = window_fairness(self.fairness, labels, predictions, groups)
        return realised

    def _fairness_alerts(
        self, wid: str, realised: Mapping[str, Any] | None, now: datetime
    ) -> list[dict[str, Any]]:
        """Observe the window's computable fairness verdicts; the level changes."""
        if self.fairness is None or realised is None or "fairness" not in realised:
            return []
        events = []
        for attribute, measure, crossed in fairness_verdicts(self.fairness, realised["fairness"]):
            change = self.alerts.observe(AlertKey(self.name, attribute, measure), wid, crossed, now)
            if change is not None:
                events.append(transition_event(change, self.version))
        return events

    def latest_fairness(self) -> dict[str, dict[str, float | None]]:
        """The measures of the newest closed window with fairness computed, by attribute."""
        for report in reversed(self.windows):
            fairness = (report.realised or {}).get("fairness") or {}
            found = {a: dict(r["measures"]) for a, r in fairness.items() if r.get("available")}
            if found:
                return found
        return {}

    def _relabelled(self, report: WindowReport, now: datetime) -> WindowReport:
        """A closed window's report after new labels: realised metrics recomputed, and
        the fairness verdicts' level changes added (and kept in :attr:`raised`)."""
        realised = self._realised(report.window_id)
        events = self._fairness_alerts(report.window_id, realised, now)
        self.raised += events
        return replace(report, realised=realised, alerts=[*report.alerts, *events])

    def take_raised(self) -> list[dict[str, Any]]:
        """Alert transitions found since the last call outside a window close (late
        labels' fairness verdicts), oldest first; the list is emptied."""
        raised, self.raised = self.raised, []
        return raised

    # -- feedback, retraining, erasure --------------------------------------------------

    def feedback(self, labels: Mapping[str, int], now: datetime | None = None) -> int:
        """Join labels; recompute realised metrics (and fairness, observing its verdicts
        at ``now``, default the current time) of closed windows; returns matches."""
        matched, touched = self.log.join(labels)
        if touched:
            at = now or datetime.now(UTC)
            self.windows = [
                self._relabelled(w, at) if w.window_id in touched else w for w in self.windows
            ]
            self.retrain_pending = True
        return matched

    def retrain_request(self, now: datetime) -> RetrainRequest | None:
        """Ask the retraining policy; a request is remembered for its rate limit."""
        self.retrain_pending = False
        request = self.retrain_policy.evaluate(
            self.name,
            self.version,
            self.windows,
            reference_auc=self.config["reference_auc"],
            last_request_at=self.last_retrain_at,
            now=now,
        )
        if request is not None:
            self.last_retrain_at = now
        return request

    def erase(self, keys: Sequence[str]) -> int:
        """Drop a subject's prediction-log rows and open-window samples; returns count."""
        dropped, found = self.log.erase(keys)
        if self.acc is not None:
            dropped += self.acc.erase(set(keys) | found)
        return dropped

    # -- reporting and checkpoints ------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """JSON-able report: configuration, windows, alerts and distributions.

        ``distributions`` is ``{"window_id", "columns"}`` for the last closed window, or
        the reference alone (``window_id`` None, every ``current`` None) before any closed.
        """
        states = self.alerts.to_dict()["states"]
        distributions = self.distributions or {
            "window_id": None,
            "columns": window_distributions(self.reference, None, self.columns),
        }
        return {
            "model": self.name,
            "version": self.version,
            "window": self.spec.to_dict(),
            "features": self.features,
            "prediction_column": self.prediction_column,
            "open_window": {
                "window_id": window_id(self.name, self.version, self.cursor.seq),
                "n": self.cursor.n,
                "start": self.span[0] if self.span else None,
                "end_s": self.cursor.end_s,
                "expected_accuracy": self.open_confidence(),
            },
            "windows": [w.to_dict() for w in self.windows],
            "alerts": [
                {k: s[k] for k in ("key", "level", "acknowledged_by", "silenced_until")}
                for s in states
            ],
            "distributions": distributions,
            "predictions_logged": len(self.log),
            "ignored_rows": self.ignored_rows,
            "last_retrain_at": (
                None if self.last_retrain_at is None else self.last_retrain_at.isoformat()
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able checkpoint of everything but the reference (it never changes)."""
        return {
            "name": self.name,
            "config": self.config,
            "cursor": [self.cursor.seq, self.cursor.n, self.cursor.end_s],
            "acc": None if self.acc is None else accumulator_to_dict(self.acc),
            "span": self.span,
            "confidence": self.confidence,
            "batches": [[k, v] for k, v in self.batches.items()],
            "windows": [w.to_dict() for w in self.windows],
            "alerts": self.alerts.to_dict(),
            "log": self.log.to_dict(),
            "last_retrain_at": _iso(self.last_retrain_at),
            "retrain_pending": self.retrain_pending,
            "ignored_rows": self.ignored_rows,
            "distributions": self.distributions,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], reference: Mapping[str, Any], limits: WatchLimits
    ) -> ModelWatch:
        """Restore a watch checkpointed by :meth:`to_dict`, given its reference profile."""
        watch = cls(str(data["name"]), data["config"], reference, limits)
        seq, n, end = data["cursor"]
        watch.cursor = WindowCursor(int(seq), int(n), end)
        watch.acc = None if data["acc"] is None else accumulator_from_dict(data["acc"])
        watch.span = [float(x) for x in data["span"]]
        watch.confidence = [float(x) for x in data["confidence"]]
        watch.batches = OrderedDict((str(k), list(v)) for k, v in data["batches"])
        watch.windows = [WindowReport.from_dict(w) for w in data["windows"]]
        watch.alerts = AlertStateMachine.from_dict(data["alerts"])
        watch.log = PredictionLog.from_dict(data["log"])
        watch.log.max_rows = limits.max_predictions
        last = data["last_retrain_at"]
        watch.last_retrain_at = None if last is None else datetime.fromisoformat(last)
        watch.retrain_pending = bool(data["retrain_pending"])
        watch.ignored_rows = int(data["ignored_rows"])
        watch.distributions = data.get("distributions")  # absent in older checkpoints
        return watch
