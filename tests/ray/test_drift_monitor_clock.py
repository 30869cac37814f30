"""The DriftMonitor actor's own clock closes an idle time window: no traffic needed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from credentials import service_of

from entai.actors.monitoring import start_drift_monitor
from entai.shared.monitoring import ReferenceProfile
from entai.shared.settings import load_settings


def test_a_time_window_closes_by_the_clock_with_no_new_traffic(
    ray_cluster: Any, tmp_path: Path
) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        monitoring={"tick_interval_s": 0.2},
    ).resolved()
    namespace = f"clock-{uuid.uuid4().hex[:8]}"
    monitor = start_drift_monitor(settings, namespace)
    try:
        rng = np.random.default_rng(0)
        reference = ReferenceProfile.from_frame(
            pd.DataFrame({"x": rng.normal(size=1000), "prediction": rng.random(1000)})
        ).to_dict()
        window = {"seconds": 1.0, "grace_s": 0.0, "sample_size": 100}
        ray_cluster.get(
            monitor.register_model.remote(
                "m",
                1,
                reference,
                feature_columns=["x"],
                window=window,
                credential=service_of(settings),
            )
        )
        rows = {"x": rng.normal(size=150).tolist(), "prediction": rng.random(150).tolist()}
        assert (
            ray_cluster.get(
                monitor.record.remote("m", "only-batch", rows, credential=service_of(settings))
            )
            is None
        )
        deadline = time.monotonic() + 30.0
        windows: list[dict[str, Any]] = []
        while not windows and time.monotonic() < deadline:
            time.sleep(0.2)
            windows = ray_cluster.get(monitor.report.remote("m"))["windows"]
        assert len(windows) == 1, "the clock did not close the idle time window"
        assert windows[0]["closed_by"] == "clock"
        assert windows[0]["n"] == 150
    finally:
        ray_cluster.kill(monitor, no_restart=True)
