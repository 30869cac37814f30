"""Fairness per monitoring window: a version whose card names fairness columns has its
disparity measures recomputed from each window's feedback labels; a window whose labels
are shifted for one group is flagged and alerts like drift, a stable one does not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from credentials import SERVICE, callers

from entai.actors.core import Metrics
from entai.actors.monitoring import DriftMonitor
from entai.shared.models import FairnessPolicy, ModelCard, binary_fairness
from entai.shared.monitoring import (
    MonitoringReference,
    PredictionLog,
    WindowFairness,
    fairness_verdicts,
    fmt,
    header_lines,
    summarize,
    window_fairness,
)
from entai.shared.settings import EntaiSettings, load_settings

WINDOW = 600
COLUMNS = {"region_code": {"threshold": 0.5, "min_group_size": 50, "bins": 10}}
EOD = "equalized_odds_difference"
MEASURES = {"demographic_parity_difference", EOD, "disparate_impact_ratio"}


class Sink:
    def __init__(self) -> None:
        self.all: list[dict[str, Any]] = []

    def send(self, event: Mapping[str, Any]) -> None:
        self.all.append(dict(event))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The fairness alerts (a sample's drift by chance may alert too)."""
        return [e for e in self.all if e["method"] in MEASURES]


class Auditor:
    def __init__(self) -> None:
        self.resources: list[tuple[str, str]] = []

    def audit(self, action: str, principal: str, resource: str, *args: Any, **kw: Any) -> bool:
        self.resources.append((action, resource))
        return True


def served(seed: int, n: int = WINDOW) -> pd.DataFrame:
    """Served rows: a feature, the region (a model input), the score, and the outcome a
    calibrated model's scores imply."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1.0 / (1.0 + np.exp(-2.0 * x))
    return pd.DataFrame(
        {
            "request_id": [f"s{seed}-r{i}" for i in range(n)],
            "version": 1,
            "x": x,
            "region_code": rng.integers(0, 2, n).astype(np.float64),
            "prediction": p,
            "outcome": (rng.random(n) < p).astype(int),
        }
    )


def labels(rows: pd.DataFrame, *, flip_region: float | None = None) -> dict[str, int]:
    """The outcomes as feedback; for ``flip_region`` the labels are inverted (the
    model's scores now say the opposite of what happens to that group)."""
    y = rows["outcome"].to_numpy()
    if flip_region is not None:
        y = np.where(rows["region_code"].to_numpy() == flip_region, 1 - y, y)
    return dict(zip(rows["request_id"], y.tolist(), strict=True))


def reference(columns: Mapping[str, Any] | None = COLUMNS) -> dict[str, Any]:
    rows = served(0, 1000)
    document = MonitoringReference.from_scores(
        rows, ["x", "region_code"], rows["prediction"], reference_auc=0.8
    ).to_dict()
    return {**document, "fairness": dict(columns)} if columns else document


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    return load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        monitoring={"window_count": WINDOW, "window_seconds": None},
        registry={
            "policy": {
                "fairness": {
                    "max_equalized_odds_difference": 0.2,
                    "max_demographic_parity_difference": 0.2,
                }
            }
        },
    )


@pytest.fixture
def gauges(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str, str], float]:
    seen: dict[tuple[str, str, str], float] = {}

    def record(model: str, attribute: str, measure: str, value: float | None) -> None:
        if value is not None:
            seen[(model, attribute, measure)] = value

    monkeypatch.setattr(Metrics, "fairness_measure", staticmethod(record))
    return seen


def monitor(
    settings: EntaiSettings, sink: Sink, auditor: Auditor, document: dict[str, Any]
) -> DriftMonitor:
    clock = lambda: datetime(2026, 3, 1, tzinfo=UTC)  # noqa: E731
    return DriftMonitor(
        settings,
        sink=sink,
        auditor=auditor,
        clock=clock,
        references=lambda m, v: document,
        callers=callers(),
    )


def close_window(m: DriftMonitor, rows: pd.DataFrame, batch: str) -> str:
    columns = rows.drop(columns=["outcome"]).to_dict(orient="list")
    report = m.record("offers", batch, columns, credential=SERVICE)
    assert report is not None and report.n == WINDOW
    return report.window_id


def window(m: DriftMonitor, wid: str) -> dict[str, Any]:
    (found,) = [w for w in m.report("offers")["windows"] if w["window_id"] == wid]
    return found


def test_a_window_with_one_groups_labels_shifted_is_flagged_and_alerts(
    settings: EntaiSettings, gauges: dict[tuple[str, str, str], float]
) -> None:
    sink, auditor = Sink(), Auditor()
    m = monitor(settings, sink, auditor, reference())
    assert m.watch("offers", 1, credential=SERVICE) == "registered"
    rows = served(1)
    wid = close_window(m, rows, "b1")
    # a restart between the close and the labels: the groups are in the checkpoint
    m = monitor(settings, sink, auditor, reference())
    assert m.feedback("offers", labels(rows, flip_region=1.0), credential=SERVICE) == WINDOW

    fairness = window(m, wid)["realised"]["fairness"]["region_code"]
    assert fairness["available"] and fairness["n_labels"] == WINDOW
    assert fairness["measures"][EOD] > 0.5
    assert fairness["crossed"] == [EOD]  # the scores did not move: parity holds
    assert fairness["measures"]["demographic_parity_difference"] < 0.2
    tpr = {g: v["tpr"] for g, v in fairness["groups"].items()}
    assert tpr["1.0"] < 0.3 < 0.7 < tpr["0.0"]
    (event,) = sink.events
    assert (event["feature"], event["method"], event["level"]) == ("region_code", EOD, "warn")
    assert event["window_id"] == wid and event["notify"]
    assert ("monitoring:alert", f"model:offers:region_code:{EOD}") in auditor.resources
    assert [a for a in window(m, wid)["alerts"] if a["method"] in MEASURES] == [event]
    assert gauges[("offers", "region_code", EOD)] == pytest.approx(fairness["measures"][EOD])
    alerts = {tuple(a["key"]): a["level"] for a in m.report("offers")["alerts"]}
    assert alerts[("offers", "region_code", EOD)] == "warn"
    text = header_lines(summarize(m.report("offers")))
    assert "fairness by region_code: demographic_parity_difference " in text[-1]
    assert f"{EOD} {fmt(fairness['measures'][EOD])} (beyond the threshold)" in text[-1]


def test_a_stable_window_is_measured_and_does_not_alert(
    settings: EntaiSettings, gauges: dict[tuple[str, str, str], float]
) -> None:
    sink, auditor = Sink(), Auditor()
    m = monitor(settings, sink, auditor, reference())
    m.watch("offers", 1, credential=SERVICE)
    rows = served(2)
    wid = close_window(m, rows, "b1")
    m.feedback("offers", labels(rows), credential=SERVICE)
    fairness = window(m, wid)["realised"]["fairness"]["region_code"]
    assert fairness["measures"][EOD] < 0.2 and fairness["crossed"] == []
    assert sink.events == []
    assert not any(
        r.endswith(EOD) for action, r in auditor.resources if action == "monitoring:alert"
    )
    assert gauges[("offers", "region_code", EOD)] == pytest.approx(fairness["measures"][EOD])
    alerts = {tuple(a["key"]): a["level"] for a in m.report("offers")["alerts"]}
    assert alerts[("offers", "region_code", EOD)] == "ok"  # observed, not raised


def test_too_few_labels_per_group_give_no_verdict(settings: EntaiSettings) -> None:
    sink = Sink()
    m = monitor(settings, sink, Auditor(), reference())
    m.watch("offers", 1, credential=SERVICE)
    rows = served(3)
    wid = close_window(m, rows, "b1")
    m.feedback(
        "offers", labels(rows.iloc[:60], flip_region=1.0), credential=SERVICE
    )  # ~30 per group < 50
    fairness = window(m, wid)["realised"]["fairness"]["region_code"]
    assert fairness["measures"][EOD] is None
    assert "fewer than two groups of sufficient size" in fairness["reasons"][EOD]
    assert sink.events == []
    assert not [a for a in m.report("offers")["alerts"] if a["key"][2] == EOD]  # not observed


def test_a_version_without_fairness_columns_logs_no_groups(settings: EntaiSettings) -> None:
    m = monitor(settings, Sink(), Auditor(), reference(None))
    m.watch("offers", 1, credential=SERVICE)
    rows = served(4)
    wid = close_window(m, rows, "b1")
    m.feedback("offers", labels(rows, flip_region=1.0), credential=SERVICE)
    assert "fairness" not in window(m, wid)["realised"]


def test_a_column_no_served_row_carries_is_reported_unavailable(settings: EntaiSettings) -> None:
    sink = Sink()
    m = monitor(settings, sink, Auditor(), reference({**COLUMNS, "region": COLUMNS["region_code"]}))
    m.watch("offers", 1, credential=SERVICE)
    rows = served(5)
    wid = close_window(m, rows, "b1")
    m.feedback("offers", labels(rows), credential=SERVICE)
    fairness = window(m, wid)["realised"]["fairness"]
    assert fairness["region"] == {
        "available": False,
        "reason": "no labelled served row of the window carries 'region'",
    }
    assert fairness["region_code"]["available"]


def test_the_window_measures_equal_the_training_measures_on_the_same_rows() -> None:
    rows = served(6)
    y = np.asarray(list(labels(rows, flip_region=0.0).values()), dtype=np.float64)
    log = PredictionLog()
    groups = {"region_code": [str(v) for v in rows["region_code"]]}
    log.add(list(rows["request_id"]), rows["prediction"].to_numpy(), "w0", [None] * WINDOW, groups)
    log.join(dict(zip(rows["request_id"], y.astype(int).tolist(), strict=True)))
    restored = PredictionLog.from_dict(log.to_dict())
    config = WindowFairness.create(COLUMNS, FairnessPolicy(max_equalized_odds_difference=0.2))
    got = window_fairness(config, *restored.labelled_groups("w0", ["region_code"]))
    expected = binary_fairness(
        y, rows["prediction"], rows["region_code"].astype(str), attribute="region_code",
        min_group_size=50,
    )  # fmt: skip
    assert got["region_code"]["measures"] == pytest.approx(
        {m: d.value for m, d in expected.measures().items()}
    )
    assert fairness_verdicts(config, got) == [("region_code", EOD, True)]


def test_the_columns_and_their_settings_come_from_the_card() -> None:
    report = binary_fairness(
        [1, 0, 1, 0], [0.9, 0.2, 0.8, 0.4], ["a", "a", "b", "b"],
        attribute="region", threshold=0.3, min_group_size=2, bins=5,
    )  # fmt: skip
    card = ModelCard(model_name="offers", fairness={"region": report})
    assert WindowFairness.columns_of(card) == {
        "region": {"threshold": 0.3, "min_group_size": 2, "bins": 5}
    }
    assert WindowFairness.columns_of(ModelCard(model_name="offers")) == {}
