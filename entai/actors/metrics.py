"""entai's custom metrics, through ``ray.util.metrics``, behind one small typed facade.

Other modules call e.g. ``Metrics.predictions(model, version, n)``. The instruments are
created on first use, in each process, and only when Ray is initialised (a driver
after ``ray.init`` or any worker); otherwise every call is a no-op, so importing this
module is cheap and unit tests need no cluster. Ray exports them on its Prometheus
endpoint (names prefixed ``ray_``) and the dashboard's metrics view.

==============================  =========  ===============================  ===========
metric                          type       tags                             unit
==============================  =========  ===============================  ===========
entai_online_lookups            counter    view, status                     lookups
entai_online_lookup_latency_s   histogram  route                            seconds
entai_predictions               counter    model, version                   predictions
entai_prediction_latency_s      histogram  model, version                   seconds
entai_drift_statistic           gauge      model, feature, method           statistic
entai_alert_level               gauge      model, feature, method           0 ok, 1 warn, 2 alert
==============================  =========  ===============================  ===========
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Metrics"]

logger = logging.getLogger(__name__)

_LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
_ALERT_LEVELS = {"ok": 0.0, "warn": 1.0, "alert": 2.0}


@dataclass(frozen=True)
class _Instruments:
    online_lookups: Any
    online_latency: Any
    predictions: Any
    prediction_latency: Any
    drift_statistic: Any
    alert_level: Any


_instruments: _Instruments | None = None


def _get() -> _Instruments | None:
    """The process's instruments, created on first use; None without Ray."""
    global _instruments  # noqa: PLW0603 - one lazily built set per process
    if _instruments is not None:
        return _instruments
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    from ray.util import metrics

    _instruments = _Instruments(
        online_lookups=metrics.Counter(
            "entai_online_lookups",
            description="Online feature lookups (entities x views) by read status.",
            tag_keys=("view", "status"),
        ),
        online_latency=metrics.Histogram(
            "entai_online_lookup_latency_s",
            description="Latency of an online feature lookup, in seconds.",
            boundaries=_LATENCY_BOUNDARIES,
            tag_keys=("route",),
        ),
        predictions=metrics.Counter(
            "entai_predictions",
            description="Predictions served, per model and version.",
            tag_keys=("model", "version"),
        ),
        prediction_latency=metrics.Histogram(
            "entai_prediction_latency_s",
            description="Latency of a prediction request, in seconds.",
            boundaries=_LATENCY_BOUNDARIES,
            tag_keys=("model", "version"),
        ),
        drift_statistic=metrics.Gauge(
            "entai_drift_statistic",
            description="Drift statistic of a feature in the last closed window.",
            tag_keys=("model", "feature", "method"),
        ),
        alert_level=metrics.Gauge(
            "entai_alert_level",
            description="Drift alert level: 0 ok, 1 warn, 2 alert.",
            tag_keys=("model", "feature", "method"),
        ),
    )
    return _instruments


class Metrics:
    """Static facade over the instruments; every method is a no-op without Ray."""

    @staticmethod
    def enabled() -> bool:
        """Whether calls record anything in this process (Ray is initialised)."""
        return _get() is not None

    @staticmethod
    def online_lookups(view: str, n: int = 1, status: str = "present") -> None:
        """Count ``n`` online reads of a view with one status."""
        if n > 0 and (m := _get()) is not None:
            m.online_lookups.inc(n, tags={"view": view, "status": status})

    @staticmethod
    def online_latency(seconds: float, route: str = "online") -> None:
        """Observe one online lookup's latency."""
        if (m := _get()) is not None:
            m.online_latency.observe(seconds, tags={"route": route})

    @staticmethod
    def predictions(model: str, version: int | str, n: int = 1) -> None:
        """Count ``n`` predictions of a model version."""
        if n > 0 and (m := _get()) is not None:
            m.predictions.inc(n, tags={"model": model, "version": str(version)})

    @staticmethod
    def prediction_latency(model: str, version: int | str, seconds: float) -> None:
        """Observe one prediction request's latency."""
        if (m := _get()) is not None:
            m.prediction_latency.observe(seconds, tags={"model": model, "version": str(version)})

    @staticmethod
    def drift_statistic(model: str, feature: str, method: str, value: float | None) -> None:
        """Set a feature's latest drift statistic (skipped when not computed)."""
        if value is None or not math.isfinite(value):
            return
        if (m := _get()) is not None:
            tags = {"model": model, "feature": feature, "method": method}
            m.drift_statistic.set(value, tags=tags)

    @staticmethod
    def alert_state(model: str, feature: str, method: str, level: str) -> None:
        """Set an alert key's level (``ok``, ``warn`` or ``alert``)."""
        if (m := _get()) is not None:
            tags = {"model": model, "feature": feature, "method": method}
            m.alert_level.set(_ALERT_LEVELS.get(level, math.nan), tags=tags)
