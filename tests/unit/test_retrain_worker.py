"""The retraining worker's queue handling: rate limit, failed runs, bookkeeping (no Ray)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from entai.pipelines.training import RetrainWorker, TrainConfig, pending_requests
from entai.shared.data import Lake
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
