"""The DriftMonitor actor: killed mid-window it resumes with the same results; fairness
per window survives a restart between the window's close and its labels; a ranker's
fairness alerts survive a restart."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from credentials import SERVICE, callers, service_of
from ranker_logs import GROUPS, log_served, stream

from entai.actors.core import Metrics
from entai.actors.monitoring import ACTOR_NAME, DriftMonitor, start_drift_monitor
from entai.shared.data import Lake
from entai.shared.models import FairnessPolicy
from entai.shared.monitoring import ReferenceProfile, WindowFairness
from entai.shared.settings import EntaiSettings, load_settings

WINDOW = {"count": 500, "sample_size": 100}


def _settings(root: Path) -> EntaiSettings:
    return load_settings(home=root / "home", lake={"root": str(root / "lake")}).resolved()


def _reference() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 2000),
            "c": rng.choice(["a", "b"], 2000),
            "prediction": rng.random(2000),
        }
    )
    return ReferenceProfile.from_frame(frame).to_dict()


def _batch(i: int, n: int = 150) -> dict[str, list[Any]]:
    rng = np.random.default_rng(100 + i)
    start = i * n
    return {
        "request_id": [f"r{start + k}" for k in range(n)],
        "x": rng.normal(0.4 * (i >= 4), 1, n).tolist(),
        "c": rng.choice(["a", "b"], n).tolist(),
        "prediction": rng.random(n).tolist(),
        "ts": [1000.0 + start + k for k in range(n)],
    }


def _register(target: Any, remote: bool, credential: str) -> None:
    call = target.register_model.remote if remote else target.register_model
    result = call(
        "churn", 1, _reference(), feature_columns=["x", "c"], window=WINDOW, credential=credential
    )
    if remote:
        import ray

        ray.get(result)


def _windows(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for window in report["windows"]:
        kept = {k: v for k, v in window.items() if k != "closed_at"}
        kept["alerts"] = [{k: v for k, v in a.items() if k != "at"} for a in window["alerts"]]
        out.append(kept)
    return out


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    return _settings(tmp_path / f"m-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def credential(settings: EntaiSettings) -> str:
    """A service credential of the monitor's platform (what the Serve replicas present)."""
    return service_of(settings)


@pytest.fixture
def monitor(ray_cluster: Any, settings: EntaiSettings) -> Iterator[Any]:
    namespace = ray_cluster.get_runtime_context().namespace
    handle = start_drift_monitor(settings, namespace)
    try:
        yield handle
    finally:
        ray_cluster.kill(handle, no_restart=True)


def test_start_returns_the_named_detached_actor(ray_cluster: Any, monitor: Any) -> None:
    namespace = ray_cluster.get_runtime_context().namespace
    same = ray_cluster.get_actor(ACTOR_NAME, namespace=namespace)
    assert same._actor_id == monitor._actor_id


@pytest.mark.chaos  # kills the monitor actor: `make test-chaos` (CI runs it)
def test_killed_mid_window_the_actor_resumes_with_the_same_window_results(
    ray_cluster: Any, monitor: Any, credential: str, tmp_path: Path
) -> None:
    straight = DriftMonitor(_settings(tmp_path / "straight"), callers=callers())
    _register(straight, remote=False, credential=SERVICE)
    for i in range(8):
        straight.record("churn", f"b{i}", _batch(i), credential=SERVICE)

    _register(monitor, remote=True, credential=credential)
    for i in range(8):
        if i in {2, 6}:  # mid-window: 300 and 100 rows into the open window
            ray_cluster.kill(monitor, no_restart=False)
        ray_cluster.get(monitor.record.remote("churn", f"b{i}", _batch(i), credential=credential))
    report = ray_cluster.get(monitor.report.remote("churn"))
    expected = straight.report("churn")
    assert len(report["windows"]) == 2
    assert _windows(report) == _windows(expected)
    assert report["open_window"] == expected["open_window"]


@pytest.mark.chaos  # kills the monitor actor: `make test-chaos` (CI runs it)
def test_a_batch_retried_after_a_restart_is_not_counted_twice(
    ray_cluster: Any, monitor: Any, credential: str
) -> None:
    _register(monitor, remote=True, credential=credential)
    ray_cluster.get(monitor.record.remote("churn", "b0", _batch(0), credential=credential))
    ray_cluster.kill(monitor, no_restart=False)
    ray_cluster.get(monitor.record.remote("churn", "b0", _batch(0), credential=credential))
    ray_cluster.get(monitor.record.remote("churn", "b1", _batch(1), credential=credential))
    report = ray_cluster.get(monitor.report.remote("churn"))
    assert report["open_window"]["n"] == 300


def test_metrics_record_once_ray_is_initialised(ray_cluster: Any) -> None:
    assert Metrics.enabled()
    Metrics.predictions("churn", 1, 3)
    Metrics.drift_statistic("churn", "x", "ks", 0.2)
    Metrics.alert_state("churn", "x", "ks", "alert")


@pytest.mark.chaos  # kills the monitor actor: `make test-chaos` (CI runs it)
def test_fairness_per_window_alerts_after_a_restart_between_close_and_labels(
    ray_cluster: Any, monitor: Any, credential: str
) -> None:
    fairness = WindowFairness.create(
        {"c": {"min_group_size": 50}}, FairnessPolicy(max_equalized_odds_difference=0.2)
    )
    ray_cluster.get(
        monitor.register_model.remote(
            "churn",
            1,
            _reference(),
            feature_columns=["x", "c"],
            window=WINDOW,
            fairness=fairness,
            credential=credential,
        )
    )
    rows = [_batch(i) for i in range(4)]  # 600 rows: the first window closes at 500
    for i, batch in enumerate(rows):
        ray_cluster.get(monitor.record.remote("churn", f"b{i}", batch, credential=credential))
    ray_cluster.kill(monitor, no_restart=False)
    # labels agree with the scores for group a and contradict them for group b
    labels = {
        rid: int((p >= 0.5) == (c == "a"))
        for batch in rows
        for rid, p, c in zip(batch["request_id"], batch["prediction"], batch["c"], strict=True)
    }
    assert ray_cluster.get(monitor.feedback.remote("churn", labels, credential=credential)) == 600
    report = ray_cluster.get(monitor.report.remote("churn"))
    (window,) = report["windows"]
    measured = window["realised"]["fairness"]["c"]
    assert measured["measures"]["equalized_odds_difference"] == 1.0
    assert measured["crossed"] == ["equalized_odds_difference"]
    alerts = {tuple(a["key"]): a["level"] for a in report["alerts"]}
    assert alerts[("churn", "c", "equalized_odds_difference")] == "warn"


@pytest.mark.chaos  # kills the monitor actor: `make test-chaos` (CI runs it)
def test_a_rankers_fairness_alerts_survive_a_restart(ray_cluster: Any, tmp_path: Path) -> None:
    """The actor watches a ranker, judges its biased windows from the lake's logs, and a
    restarted actor keeps the alert states: refreshing again raises nothing new."""
    root = tmp_path / f"r-{uuid.uuid4().hex[:6]}"
    settings = load_settings(
        home=root / "home",
        lake={"root": str(root / "lake")},
        monitoring={"window_seconds": 100.0, "grace_s": 0.0},
        registry={"policy": {"fairness": {"min_exposure_ratio": 0.8}}},
    ).resolved()
    t0 = math.floor(time.time() / 100.0) * 100.0 - 1000.0  # two windows, both over
    log_served(Lake(settings.lake.root), pd.concat([stream(True, start=t0 + w) for w in (0, 100)]))
    handle = start_drift_monitor(settings, ray_cluster.get_runtime_context().namespace)
    credential = service_of(settings)
    try:
        columns = {"category": {"k": 4, "min_group_size": 50, "groups": ["A", "B"]}}
        watch = handle.watch_ranker.remote("ranker", 1, columns, GROUPS, credential=credential)
        assert ray_cluster.get(watch) == "registered"
        report = ray_cluster.get(handle.refresh_ranker.remote("ranker", credential=credential))
        assert [w["closed"] for w in report["windows"]] == [True, True]
        ratios = [
            w["fairness"]["category"]["measures"]["exposure_ratio"] for w in report["windows"]
        ]
        assert ratios == pytest.approx([0.570642] * 2, abs=1e-6)
        (alert,) = report["alerts"]
        assert alert["key"] == ["ranker", "category", "exposure_ratio"]
        assert alert["level"] == "alert"  # two crossing windows: warn, then alert

        ray_cluster.kill(handle, no_restart=False)
        watch = handle.watch_ranker.remote("ranker", 1, columns, GROUPS, credential=credential)
        assert ray_cluster.get(watch) == "unchanged"
        again = ray_cluster.get(handle.refresh_ranker.remote("ranker", credential=credential))
        assert again["alerts"] == report["alerts"]
        assert [w["window_id"] for w in again["windows"]] == [
            w["window_id"] for w in report["windows"]
        ]
    finally:
        ray_cluster.kill(handle, no_restart=True)
