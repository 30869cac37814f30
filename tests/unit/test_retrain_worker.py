"""The retraining worker's queue handling: rate limit, failed runs, bookkeeping (no Ray)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from in_process_bus import InProcessBus

from entai.pipelines.training import RetrainWorker, TrainConfig, pending_requests
from entai.shared.data import Lake, PlatformEventKind, retrain_requested
from entai.shared.settings import EntaiSettings, load_settings


def _request(lake: Lake, request_id: str, model: str = "m") -> None:
    lake.write_json(
        lake.path("monitoring", "retrain_requests", f"{request_id}.json"),
        {
            "model": model,
            "version": 1,
            "reason": "dataset drift in 2 consecutive windows",
            "window_ids": [],
            "created_at": datetime.now(UTC).isoformat(),
            "request_id": request_id,
            "auto_promote": False,
        },
    )


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    return load_settings(home=tmp_path, lake={"root": str(tmp_path / "lake")}).resolved()


def test_a_failing_run_is_closed_with_its_error_and_a_second_one_is_rate_limited(
    settings: EntaiSettings,
) -> None:
    lake = Lake(settings.lake.root)
    seen: list[str] = []

    def config_for(request: Mapping[str, Any]) -> TrainConfig:
        seen.append(str(request["request_id"]))
        raise FileNotFoundError("labels.parquet")

    worker = RetrainWorker(settings, config_for=config_for)
    _request(lake, "r1")
    (first,) = worker.run_once()
    assert "FileNotFoundError" in first["error"]
    assert pending_requests(lake) == []
    done = lake.read_json(lake.path("monitoring", "retrain_requests", "done", "r1.json"))
    assert done["outcome"]["error"] == first["error"]

    _request(lake, "r2")  # same model within monitoring.retrain.min_interval_s
    (second,) = worker.run_once()
    assert second["skipped"].startswith("rate limited")
    assert seen == ["r1"]
    assert [o["request_id"] for o in worker.outcomes()] == ["r1", "r2"]
    assert worker.run_once() == []

    # A restarted worker reads the last run back: the limit still holds for "m" (its
    # skipped request does not count as a run), and another model is not limited.
    restarted = RetrainWorker(settings, config_for=config_for)
    _request(lake, "r3")
    _request(lake, "r4", model="other")
    outcomes = {o["request_id"]: o for o in restarted.run_once()}
    assert outcomes["r3"]["skipped"].startswith("rate limited")
    assert "error" in outcomes["r4"]
    assert seen == ["r1", "r4"]


def test_without_a_rate_limit_every_request_runs(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path,
        lake={"root": str(tmp_path / "lake")},
        monitoring={"retrain": {"min_interval_s": 0}},
    ).resolved()
    lake = Lake(settings.lake.root)
    seen: list[str] = []

    def config_for(request: Mapping[str, Any]) -> TrainConfig:
        seen.append(str(request["request_id"]))
        raise RuntimeError("no data")

    worker = RetrainWorker(settings, config_for=config_for)
    for rid in ("a", "b"):
        _request(lake, rid)
    assert len(worker.run_once()) == 2
    assert sorted(seen) == ["a", "b"]


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_an_announced_request_runs_at_once_and_its_announcement_is_acked_after(
    settings: EntaiSettings,
) -> None:
    """No polling: with no resync clock, only the announcement can make the worker run."""
    lake = Lake(settings.lake.root)
    bus = InProcessBus()
    seen: list[str] = []

    def config_for(request: Mapping[str, Any]) -> TrainConfig:
        seen.append(str(request["request_id"]))
        raise RuntimeError("no data")

    worker = RetrainWorker(settings, config_for=config_for, listen=True, bus=bus)
    try:
        _request(lake, "quiet")  # filed, not announced: waits for a resync or an event
        time.sleep(0.3)
        assert seen == []
        _request(lake, "loud")
        announced = retrain_requested("m", 1, "loud", "dataset drift")
        bus.publish([announced])
        assert _wait_for(lambda: bus.acked == [announced.event_id])
        # One run closes every pending file, the unannounced one included (the second
        # of model "m" as rate limited).
        assert pending_requests(lake) == []
        assert sorted(o["request_id"] for o in worker.outcomes()) == ["loud", "quiet"]
        assert len(seen) == 1
        assert bus.queue.backlog(PlatformEventKind.RETRAIN_REQUESTED.value) == 0
    finally:
        worker.close()
