"""The retraining workflow turns a pending RetrainRequest into a registered challenger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from governed import Governed

from entai.pipelines.training import (
    RETRAIN_PRINCIPAL,
    TrainConfig,
    pending_requests,
    process_pending,
)
from entai.shared.data import Lake
from entai.shared.settings import EntaiSettings


def test_pending_request_becomes_a_challenger_once(
    ray_cluster: Any, tmp_path: Path, demo_training_data: Callable[..., Path]
) -> None:
    settings = EntaiSettings(home=tmp_path).resolved()
    labels = demo_training_data(tmp_path, n_users=300, days=40, seed=9, every_days=3)
    lake = Lake(settings.lake.root)
    config = TrainConfig(
        model_name="propensity",
        feature_service="purchase_propensity",
        definitions_module="entai.demo.features",
        label_source=str(labels),
        num_boost_round=20,
        baselines=(),
    )
    request = {
        "model": "propensity",
        "version": 1,
        "reason": "dataset drift in 2 consecutive windows",
        "window_ids": ["propensity/v1/w3", "propensity/v1/w4"],
        "created_at": datetime.now(UTC).isoformat(),
        "request_id": "rr-test-1",
        "auto_promote": False,
    }
    lake.write_json(lake.path("monitoring", "retrain_requests", "rr-test-1.json"), request)
    assert [r["request_id"] for r in pending_requests(lake)] == ["rr-test-1"]

    (outcome,) = process_pending(settings, lambda request: config)

    info = Governed(settings).registry().resolve("propensity", "challenger")
    assert info.version == outcome["version"]
    assert info.tags["entai.registrant"] == RETRAIN_PRINCIPAL
    assert pending_requests(lake) == []
    done = lake.read_json(lake.path("monitoring", "retrain_requests", "done", "rr-test-1.json"))
    assert done["outcome"]["version"] == info.version
    assert process_pending(settings, lambda request: config) == []
