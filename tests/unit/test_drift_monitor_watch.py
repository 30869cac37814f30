"""DriftMonitor.watch: a served champion is monitored from the reference in its lineage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from credentials import SERVICE, callers

from entai.actors.monitoring import DriftMonitor
from entai.shared.monitoring import MonitoringReference
from entai.shared.settings import EntaiSettings, load_settings


class Auditor:
    def __init__(self) -> None:
        self.actions: list[str] = []

    def audit(self, action: str, *args: Any, **kwargs: Any) -> bool:
        self.actions.append(action)
        return True


def _reference(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=400), "y": rng.poisson(3.0, 400)})
    scores = rng.random(400)
    return MonitoringReference.from_scores(frame, ["x", "y"], scores, reference_auc=0.81).to_dict()


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    return load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        monitoring={"window_count": 150, "window_seconds": None, "alerts": {"cooldown_s": 5}},
    )


def test_watch_registers_with_the_settings_policies_once_per_version(
    settings: EntaiSettings,
) -> None:
    lookups: list[tuple[str, int]] = []
    references = {1: _reference(1), 2: _reference(2)}

    def source(model: str, version: int) -> Mapping[str, Any] | None:
        lookups.append((model, version))
        return references.get(version)

    auditor = Auditor()
    monitor = DriftMonitor(settings, auditor=auditor, references=source, callers=callers())
    assert monitor.watch("m", 1, credential=SERVICE) == "registered"
    assert monitor.watch("m", 1, credential=SERVICE) == "unchanged"
    assert lookups == [("m", 1)]  # a repeated call does not read the lineage again
    report = monitor.report("m")
    assert report["version"] == 1
    assert report["window"]["count"] == 150
    assert report["features"] == ["x", "y"]
    assert monitor.watch("m", 2, credential=SERVICE) == "registered"  # a swap: the new champion
    assert monitor.report("m")["version"] == 2
    assert monitor.watch("m", 3, credential=SERVICE) == "no_reference"
    assert monitor.report("m")["version"] == 2
    assert auditor.actions.count("monitoring:register") == 2


def test_a_restarted_monitor_keeps_its_windows_when_the_champion_is_watched_again(
    settings: EntaiSettings,
) -> None:
    reference = _reference(1)
    first = DriftMonitor(
        settings, auditor=Auditor(), references=lambda m, v: reference, callers=callers()
    )
    first.watch("m", 1, credential=SERVICE)
    rng = np.random.default_rng(5)
    first.record(
        "m",
        "b1",
        {"x": rng.normal(size=40).tolist(), "y": [3] * 40, "prediction": [0.5] * 40},
        credential=SERVICE,
    )
    again = DriftMonitor(
        settings, auditor=Auditor(), references=lambda m, v: reference, callers=callers()
    )
    assert again.watch("m", 1, credential=SERVICE) == "unchanged"
    assert again.report("m")["open_window"]["n"] == 40
