"""entai's custom metrics, through ``ray.util.metrics``, behind one small typed facade.

Other modules call e.g. ``Metrics.predictions(model, version, n)``. The instruments are
created on first use, in each process, and only when Ray is initialised (a driver
after ``ray.init`` or any worker); otherwise every call is a no-op, so importing this
module is cheap and unit tests need no cluster. Ray's metrics agent on each node
exports them on its Prometheus endpoint (``ray.nodes()[i]["MetricsExportPort"]``)
with the prefix ``ray_``, counters with the suffix ``_total``, and the dashboard's
metrics view shows them; each process reports every ``metrics_report_interval_ms``
(10 s by default, ``RAY_metrics_report_interval_ms``).

Ray 2.60 reports a gauge only in an interval in which it was set, and its agent drops
a gauge series not reported for two intervals; a drift statistic set once at a window's
close would vanish from Prometheus seconds later. So the gauges' last values are kept
here and set again by a daemon thread every half interval (:class:`_GaugeRefresher`).

``entai_online_lookups`` is counted on every online read, several series per read (one
per view and status), and each ``ray.util.metrics`` call costs a serving replica's
thread tens of microseconds. Its increments are summed here and handed to Ray by a
daemon thread every half interval, one call per series (:class:`_CounterTally`), so
they reach Prometheus no later than before (Ray reports once per interval anyway).

==============================  =========  ===============================  ===========
metric                          type       tags                             unit
==============================  =========  ===============================  ===========
entai_online_lookups            counter    view, status                     values
entai_online_lookup_latency_s   histogram  route                            seconds
entai_predictions               counter    model, version                   predictions
entai_prediction_latency_s      histogram  model, version                   seconds
entai_prediction_errors         counter    model, code                      requests
entai_recommend_fallbacks       counter    model, reason                    requests
entai_drift_statistic           gauge      model, feature, method           statistic
entai_alert_level               gauge      model, feature, method           0 ok, 1 warn, 2 alert
entai_fairness_measure          gauge      model, attribute, measure        measure
entai_stream_backlog            gauge      source                           events
entai_feature_event_time_s      gauge      view                             epoch seconds
entai_stream_events             counter    source, outcome                  events
==============================  =========  ===============================  ===========
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["METRICS", "MetricSpec", "Metrics"]

logger = logging.getLogger(__name__)

_LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
_ALERT_LEVELS = {"ok": 0.0, "warn": 1.0, "alert": 2.0}


@dataclass(frozen=True)
class MetricSpec:
    """One custom metric as declared to Ray.

    Attributes:
        name: Metric name (Prometheus shows it as ``ray_<name>``).
        kind: Instrument type.
        tag_keys: Tags every observation carries.
        description: What it counts or measures.
    """

    name: str
    kind: Literal["counter", "histogram", "gauge"]
    tag_keys: tuple[str, ...]
    description: str


METRICS = (
    MetricSpec(
        "entai_online_lookups",
        "counter",
        ("view", "status"),
        "Online feature values read (entities x features), by view and read status.",
    ),
    MetricSpec(
        "entai_online_lookup_latency_s",
        "histogram",
        ("route",),
        "Latency of an online feature lookup, in seconds (route: shards or direct).",
    ),
    MetricSpec(
        "entai_predictions",
        "counter",
        ("model", "version"),
        "Predictions served, per model and version.",
    ),
    MetricSpec(
        "entai_prediction_latency_s",
        "histogram",
        ("model", "version"),
        "Latency of a prediction request, in seconds.",
    ),
    MetricSpec(
        "entai_prediction_errors",
        "counter",
        ("model", "code"),
        "Prediction requests answered with an error, per model and error code.",
    ),
    MetricSpec(
        "entai_recommend_fallbacks",
        "counter",
        ("model", "reason"),
        "Recommendations answered from the ranker's index because the online store did "
        "not give the user's recent views (reason: timeout, unavailable, breaker_open, "
        "invalid_value).",
    ),
    MetricSpec(
        "entai_drift_statistic",
        "gauge",
        ("model", "feature", "method"),
        "Drift statistic of a feature in the last closed window.",
    ),
    MetricSpec(
        "entai_alert_level",
        "gauge",
        ("model", "feature", "method"),
        "Drift alert level: 0 ok, 1 warn, 2 alert.",
    ),
    MetricSpec(
        "entai_fairness_measure",
        "gauge",
        ("model", "attribute", "measure"),
        "Fairness measure of a model by a protected or segment attribute, from the "
        "feedback labels of the latest closed window that has them (a ranker's: "
        "exposure_ratio and ndcg_difference by an item attribute).",
    ),
    MetricSpec(
        "entai_stream_backlog",
        "gauge",
        ("source",),
        "Events of a source published on the bus and not yet landed (consumer lag).",
    ),
    MetricSpec(
        "entai_stream_events",
        "counter",
        ("source", "outcome"),
        "Events consumed from the bus: landed, duplicate or dead_letter.",
    ),
    MetricSpec(
        "entai_feature_event_time_s",
        "gauge",
        ("view",),
        "Newest event time written to a view's online store, in epoch seconds "
        "(freshness: time() minus it).",
    ),
)
"""Every metric entai records, in the order of the module docstring's table."""

_instruments: dict[str, Any] | None = None
_newest_event_s: dict[str, float] = {}
_DEFAULT_REPORT_INTERVAL_S = 10.0


def _report_interval_s() -> float:
    """The process's metrics report interval (Ray floors it at one second)."""
    try:
        from ray import _config

        return max(float(_config.metrics_report_interval_ms()), 1000.0) / 1000.0
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without the knob
        return _DEFAULT_REPORT_INTERVAL_S


class _GaugeRefresher:
    """Keeps every gauge series alive by setting its last value again, periodically."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._thread: threading.Thread | None = None

    def set(
        self, instruments: dict[str, Any], name: str, value: float, tags: dict[str, str]
    ) -> None:
        """Set a gauge now and remember the value for the refresh."""
        instruments[name].set(value, tags=tags)
        with self._lock:
            self._values[(name, tuple(sorted(tags.items())))] = value
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(instruments,), name="entai-gauges", daemon=True
                )
                self._thread.start()

    def _run(self, instruments: dict[str, Any]) -> None:
        period = _report_interval_s() / 2
        while True:
            time.sleep(period)
            with self._lock:
                values = list(self._values.items())
            for (name, tags), value in values:
                instruments[name].set(value, tags=dict(tags))


_gauges = _GaugeRefresher()


class _CounterTally:
    """Sums a counter's increments per tag set; a daemon thread hands each sum to Ray
    every half report interval (one ``inc`` per series instead of one per call).

    A tag value may be any object whose ``str`` (lower-cased) is the tag, e.g. a
    :class:`~entai.shared.features.FeatureStatus`: it is turned into text at the flush.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._keys = next(spec.tag_keys for spec in METRICS if spec.name == name)
        self._lock = threading.Lock()
        self._counts: dict[tuple[Any, ...], float] = {}
        self._thread: threading.Thread | None = None

    def add(self, instruments: dict[str, Any], counts: Mapping[tuple[Any, ...], float]) -> None:
        """Count each ``n`` of ``counts`` for its series (the tag values, in the
        counter's tag order)."""
        with self._lock:
            for tags, n in counts.items():
                self._counts[tags] = self._counts.get(tags, 0) + n
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(instruments,), name="entai-counters", daemon=True
                )
                self._thread.start()

    def flush(self, instruments: dict[str, Any]) -> None:
        """Hand every sum counted so far to Ray."""
        with self._lock:
            counts, self._counts = self._counts, {}
        series: dict[tuple[str, ...], float] = {}
        for tags, n in counts.items():
            named = tuple(str(value).lower() for value in tags)
            series[named] = series.get(named, 0) + n
        instrument = instruments[self._name]
        for tags, n in series.items():
            instrument.inc(n, tags=dict(zip(self._keys, tags, strict=True)))

    def _run(self, instruments: dict[str, Any]) -> None:
        period = _report_interval_s() / 2
        while True:
            time.sleep(period)
            self.flush(instruments)


_lookups = _CounterTally("entai_online_lookups")


def _build(spec: MetricSpec) -> Any:
    from ray.util import metrics

    if spec.kind == "counter":
        return metrics.Counter(spec.name, description=spec.description, tag_keys=spec.tag_keys)
    if spec.kind == "histogram":
        return metrics.Histogram(
            spec.name,
            description=spec.description,
            boundaries=_LATENCY_BOUNDARIES,
            tag_keys=spec.tag_keys,
        )
    return metrics.Gauge(spec.name, description=spec.description, tag_keys=spec.tag_keys)


def _get() -> dict[str, Any] | None:
    """The process's instruments by metric name, created on first use; None without Ray."""
    global _instruments  # noqa: PLW0603 - one lazily built set per process
    if _instruments is not None:
        return _instruments
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    _instruments = {spec.name: _build(spec) for spec in METRICS}
    return _instruments


class Metrics:
    """Static facade over the instruments; every method is a no-op without Ray."""

    @staticmethod
    def enabled() -> bool:
        """Whether calls record anything in this process (Ray is initialised)."""
        return _get() is not None

    @staticmethod
    def online_lookups(view: str, n: int = 1, status: str = "present") -> None:
        """Count ``n`` feature values read from a view with one status (handed to Ray
        within half a report interval, :class:`_CounterTally`)."""
        if n > 0 and (m := _get()) is not None:
            _lookups.add(m, {(view, status): n})

    @staticmethod
    def online_latency(seconds: float, route: str = "online") -> None:
        """Observe one online lookup's latency."""
        if (m := _get()) is not None:
            m["entai_online_lookup_latency_s"].observe(seconds, tags={"route": route})

    @staticmethod
    def online_read(
        route: str, seconds: float, views: Iterable[tuple[str, Sequence[Sequence[Any]]]]
    ) -> None:
        """Record one online read: values per view and status, and its latency.

        Args:
            route: ``shards`` (through the shard actors) or ``direct`` (store read here).
            seconds: The read's latency.
            views: Per view read, its statuses (feature-major, as in ``ReadResult``).
        """
        if (m := _get()) is None:
            return
        counts: dict[tuple[Any, ...], int] = {}
        for view, statuses in views:
            for column in statuses:
                for status in column:
                    counts[view, status] = counts.get((view, status), 0) + 1
        _lookups.add(m, counts)
        Metrics.online_latency(seconds, route)

    @staticmethod
    def predictions(model: str, version: int | str, n: int = 1) -> None:
        """Count ``n`` predictions of a model version."""
        if n > 0 and (m := _get()) is not None:
            m["entai_predictions"].inc(n, tags={"model": model, "version": str(version)})

    @staticmethod
    def prediction_latency(model: str, version: int | str, seconds: float) -> None:
        """Observe one prediction request's latency."""
        if (m := _get()) is not None:
            tags = {"model": model, "version": str(version)}
            m["entai_prediction_latency_s"].observe(seconds, tags=tags)

    @staticmethod
    def prediction_error(model: str, code: str) -> None:
        """Count one prediction request that failed with an error ``code``."""
        if (m := _get()) is not None:
            m["entai_prediction_errors"].inc(1, tags={"model": model, "code": code})

    @staticmethod
    def recommend_fallback(model: str, reason: str) -> None:
        """Count one recommendation that did without the online store (``reason``)."""
        if (m := _get()) is not None:
            m["entai_recommend_fallbacks"].inc(1, tags={"model": model, "reason": reason})

    @staticmethod
    def drift_statistic(model: str, feature: str, method: str, value: float | None) -> None:
        """Set a feature's latest drift statistic (skipped when not computed)."""
        if value is None or not math.isfinite(value):
            return
        if (m := _get()) is not None:
            tags = {"model": model, "feature": feature, "method": method}
            _gauges.set(m, "entai_drift_statistic", value, tags)

    @staticmethod
    def alert_state(model: str, feature: str, method: str, level: str) -> None:
        """Set an alert key's level (``ok``, ``warn`` or ``alert``)."""
        if (m := _get()) is not None:
            tags = {"model": model, "feature": feature, "method": method}
            _gauges.set(m, "entai_alert_level", _ALERT_LEVELS.get(level, math.nan), tags)

    @staticmethod
    def fairness_measure(model: str, attribute: str, measure: str, value: float | None) -> None:
        """Set a fairness measure of the latest closed window that has it (a classifier's
        from its labels; a ranker's exposure ratio or NDCG difference); skipped when not
        computed."""
        if value is None or not math.isfinite(value):
            return
        if (m := _get()) is not None:
            tags = {"model": model, "attribute": attribute, "measure": measure}
            _gauges.set(m, "entai_fairness_measure", value, tags)

    @staticmethod
    def stream_backlog(source: str, events: int) -> None:
        """Set a source's backlog: events on the bus not yet landed."""
        if (m := _get()) is not None:
            _gauges.set(m, "entai_stream_backlog", float(events), {"source": source})

    @staticmethod
    def stream_events(source: str, outcome: str, n: int) -> None:
        """Count ``n`` consumed events of a source by outcome."""
        if n > 0 and (m := _get()) is not None:
            m["entai_stream_events"].inc(n, tags={"source": source, "outcome": outcome})

    @staticmethod
    def feature_event_times(newest: Mapping[str, float]) -> None:
        """Raise each view's newest online event time (epoch seconds) to ``newest``'s;
        an older write (a late event, a backfill) leaves it where it is."""
        if (m := _get()) is None:
            return
        for view, seconds in newest.items():
            if seconds > _newest_event_s.get(view, -math.inf):
                _newest_event_s[view] = seconds
                _gauges.set(m, "entai_feature_event_time_s", seconds, {"view": view})
