"""Training's fairness step: the config section, the column check, the evaluation it adds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entai.pipelines.training import (
    MISSING_GROUP,
    FairnessConfig,
    TrainConfig,
    check_fairness_columns,
    fairness_reports,
    recorded_config,
    with_fairness,
)
from entai.shared.core import ConfigError, InvalidInputError

BASE = """
model_name: m
feature_service: fs
definitions_module: entai.demo.features
label_source: labels.parquet
"""


def load(tmp_path: Path, extra: str) -> TrainConfig:
    path = tmp_path / "train.yaml"
    path.write_text(BASE + extra)
    return TrainConfig.from_yaml(path)


def test_config_section_loads_and_is_recorded_for_retraining(tmp_path: Path) -> None:
    config = load(tmp_path, "fairness:\n  columns: [region, age_band]\n  top_fraction: 0.2\n")
    assert config.fairness == FairnessConfig(columns=("region", "age_band"), top_fraction=0.2)
    assert recorded_config(config)["fairness"]["columns"] == ["region", "age_band"]
    assert load(tmp_path, "").fairness is None


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ("fairness:\n  columns: [label]\n", "fairness"),
        ("fairness:\n  columns: []\n", r"fairness\.columns"),
        ("fairness:\n  columns: [a, a]\n", "fairness"),
        ("fairness:\n  columns: [a]\n  top_fraction: 1.5\n", r"fairness\.top_fraction"),
    ],
)
def test_bad_section_is_a_config_error_naming_the_field(
    tmp_path: Path, section: str, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load(tmp_path, section)


def test_missing_column_fails_before_training() -> None:
    frame = pd.DataFrame({"region": ["n"], "label": [1]})
    check_fairness_columns(None, frame)
    check_fairness_columns(FairnessConfig(columns=("region",)), frame)
    with pytest.raises(InvalidInputError, match=r"fairness\.columns \['age_band'\]") as caught:
        check_fairness_columns(FairnessConfig(columns=("region", "age_band")), frame)
    assert caught.value.details["field"] == "fairness.columns"


def test_without_a_config_the_evaluation_is_unchanged() -> None:
    evaluation = {"metrics": {"valid_auc": 0.7}, "segments": {}}
    out = with_fairness(evaluation, None, pd.DataFrame(), [], [])
    assert out == evaluation
    assert out is not evaluation


def test_top_fraction_sets_the_threshold_and_nulls_form_a_group() -> None:
    rng = np.random.default_rng(0)
    rows = 1_000
    scores = rng.random(rows)
    labels = (rng.random(rows) < scores).astype(int)
    region = pd.Series(rng.choice(["n", "s"], rows), dtype="string")
    region[:40] = pd.NA
    frame = pd.DataFrame({"region": region})
    config = FairnessConfig(columns=("region",), top_fraction=0.2, min_group_size=50)
    report = fairness_reports(config, frame, labels, scores)["region"]
    assert report.threshold == pytest.approx(float(np.quantile(scores, 0.8)))
    selected = sum(g.selection_rate * g.count for g in report.groups)  # type: ignore[operator]
    assert selected == 200
    missing = report.group(MISSING_GROUP)
    assert (missing.count, missing.sufficient) == (40, False)

    evaluation = with_fairness({"metrics": {"valid_auc": 0.7}}, config, frame, labels, scores)
    assert evaluation["fairness"]["region"] == report.model_dump(mode="json")
    assert evaluation["metrics"]["valid_auc"] == 0.7
    assert evaluation["metrics"]["valid_fairness_region_disparate_impact_ratio"] == (
        report.disparate_impact_ratio.value
    )
