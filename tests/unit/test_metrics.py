"""The metrics facade: gauges kept alive between the moments they change, the newest
feature event time only ever rising, predict errors counted by model and code."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from entai.actors.core import _metrics as metrics_module
from entai.deployments.http_errors import install_error_handlers
from entai.shared.core import NotFoundError, ServiceUnavailableError


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


class PredictBody(BaseModel):
    n: int


class FakeCounter:
    def __init__(self) -> None:
        self.incs: list[tuple[float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.incs.append((value, tags))


def test_errors_on_the_predict_route_are_counted_by_model_and_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = FakeCounter()
    monkeypatch.setattr(metrics_module, "_instruments", {"entai_prediction_errors": counter})
    api = FastAPI()
    install_error_handlers(api)

    @api.post("/v1/predict/{model}")
    async def predict(model: str, body: PredictBody) -> dict[str, str]:
        if model == "down":
            raise ServiceUnavailableError("feature store down")
        raise NotFoundError(f"no deployed model {model!r}")

    @api.post("/v1/monitoring/{model}")
    async def monitoring(model: str) -> dict[str, str]:
        raise ServiceUnavailableError("not counted: not the predict route")

    with TestClient(api) as client:
        assert client.post("/v1/predict/down", json={"n": 1}).status_code == 503
        assert client.post("/v1/predict/down", json={"n": "x"}).status_code == 422
        assert client.post("/v1/predict/any-name-at-all", json={"n": 1}).status_code == 404
        assert client.post("/v1/monitoring/down").status_code == 503
    assert counter.incs == [
        (1, {"model": "down", "code": "service_unavailable"}),
        (1, {"model": "down", "code": "invalid_input"}),
        (1, {"model": "_unknown", "code": "not_found"}),
    ]


def test_a_views_newest_event_time_only_rises(monkeypatch: pytest.MonkeyPatch) -> None:
    gauge = FakeGauge()
    monkeypatch.setattr(metrics_module, "_instruments", {"entai_feature_event_time_s": gauge})
    monkeypatch.setattr(metrics_module, "_newest_event_s", {})
    monkeypatch.setattr(metrics_module, "_gauges", metrics_module._GaugeRefresher())
    monkeypatch.setattr(metrics_module, "_report_interval_s", lambda: 3600.0)
    metrics_module.Metrics.feature_event_times({"a": 100.0, "b": 50.0})
    metrics_module.Metrics.feature_event_times({"a": 90.0, "b": 60.0})  # a late event of a
    assert gauge.sets == [(100.0, {"view": "a"}), (50.0, {"view": "b"}), (60.0, {"view": "b"})]


def test_online_lookups_reach_ray_summed_per_series_within_half_an_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entai.shared.features import FeatureStatus

    monkeypatch.setattr(metrics_module, "_report_interval_s", lambda: 0.1)
    tally = metrics_module._CounterTally("entai_online_lookups")
    counter = FakeCounter()
    instruments: dict[str, Any] = {"entai_online_lookups": counter}
    tally.add(instruments, {("user", FeatureStatus.PRESENT): 2, ("user", "not_found"): 1})
    tally.add(instruments, {("user", "present"): 3, ("item", FeatureStatus.NOT_FOUND): 4})
    assert counter.incs == []  # nothing per call
    time.sleep(0.3)
    assert sorted((tags["view"], tags["status"], n) for n, tags in counter.incs) == [
        ("item", "not_found", 4),
        ("user", "not_found", 1),
        ("user", "present", 5),
    ]
    tally.add(instruments, {("user", "present"): 1})
    time.sleep(0.3)
    assert counter.incs[-1] == (1, {"view": "user", "status": "present"})
    assert len(counter.incs) == 4  # a quiet period hands nothing over
