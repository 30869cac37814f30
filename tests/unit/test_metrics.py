"""The metrics facade keeps gauges alive between the moments they change."""

from __future__ import annotations

import time
from typing import Any

import pytest

from entai.actors.core import _metrics as metrics_module


class FakeGauge:
    def __init__(self) -> None:
        self.sets: list[tuple[float, dict[str, str]]] = []

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.sets.append((value, tags))


def test_a_gauge_set_once_is_set_again_until_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray 2.60's agent forgets a gauge not reported for two intervals.
    monkeypatch.setattr(metrics_module, "_report_interval_s", lambda: 0.05)
    refresher = metrics_module._GaugeRefresher()
    gauge = FakeGauge()
    instruments: dict[str, Any] = {"g": gauge}
    refresher.set(instruments, "g", 0.4, {"model": "m", "feature": "x"})
    refresher.set(instruments, "g", 1.0, {"model": "m", "feature": "y"})
    time.sleep(0.3)
    x = [v for v, tags in gauge.sets if tags["feature"] == "x"]
    y = [v for v, tags in gauge.sets if tags["feature"] == "y"]
    assert len(x) >= 3 and set(x) == {0.4}
    assert len(y) >= 3 and set(y) == {1.0}
    refresher.set(instruments, "g", 0.9, {"model": "m", "feature": "x"})
    time.sleep(0.15)
    assert gauge.sets[-1][0] in {0.9, 1.0} and gauge.sets[-2][0] in {0.9, 1.0}
