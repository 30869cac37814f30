"""Tuning: ASHA stops weak trials, every trial is an MLflow child run, the best is
retrained, logged under the parent and registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from governed import Governed

from entai.pipelines.training import (
    SearchDimension,
    TrainingData,
    TuneConfig,
    run_tuning,
    time_split,
    validation_dataset_id,
)

FEATURES = ["a", "b", "c"]


def _data() -> TrainingData:
    rng = np.random.default_rng(3)
    rows = 6_000
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=FEATURES)
    logit = frame["a"] - 0.5 * frame["b"] * frame["c"]
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(rows) // 100, unit="D"
    )
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.2)
    return TrainingData(
        train,
        valid,
        features=FEATURES,
        manifest={"dataset_id": "synthetic-tune", "definitions_hash": "none"},
        valid_id=validation_dataset_id(valid, ["event_timestamp", "label"]),
    )


def test_defaults_fit_a_two_core_machine() -> None:
    config = TuneConfig(
        model_name="m", feature_service="fs", definitions_module="d", label_source="l.parquet"
    )
    assert config.num_samples <= 8
    assert config.max_concurrent * config.cpus_per_trial <= 2


def test_search_dimension_validation() -> None:
    with pytest.raises(ValueError, match="low < high"):
        SearchDimension(type="uniform", low=1.0, high=0.5)


def test_tuning_logs_children_and_registers_the_retrained_best(
    ray_cluster: Any, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from entai.actors.core import LocalService
    from entai.shared.settings import EntaiSettings

    settings = EntaiSettings(home=tmp_path).resolved()
    config = TuneConfig(
        model_name="tuned",
        feature_service="fs",
        definitions_module="unused",
        label_source="unused.parquet",
        num_boost_round=30,
        grace_period=5,
        report_every=5,
        num_samples=4,
        max_concurrent=2,
        baselines=(),
        search_space={
            "max_depth": SearchDimension(type="choice", values=(1, 2, 6)),
            "eta": SearchDimension(type="loguniform", low=0.005, high=0.3),
        },
    )
    governed = Governed(settings)
    registry = governed.registry()
    summary = run_tuning(
        settings,
        config,
        data=_data(),
        registry=LocalService(registry),
        token=governed.token("ml-engineer"),
    )
    tuning = summary["tuning"]
    assert tuning["trials"] == 4
    assert 1 <= tuning["best_rounds"] <= 30

    uri = settings.mlflow.tracking_uri.get_secret_value()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    children = client.search_runs(
        [client.get_experiment_by_name(settings.mlflow.experiment).experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tuning['parent_run_id']}'",
    )
    trials = [r for r in children if r.data.tags.get("entai.kind") == "trial"]
    assert len(trials) == 4
    assert all("valid_auc" in r.data.metrics and "eta" in r.data.params for r in trials)
    statuses = {r.data.tags["entai.trial_status"] for r in trials}
    assert statuses <= {"completed", "early_stopped"}
    best = [r for r in children if r.info.run_id == summary["run_id"]]
    assert best and best[0].data.params["max_depth"] == str(tuning["best_params"]["max_depth"])

    info = registry.resolve("tuned", "challenger")
    assert info.run_id == summary["run_id"]
    assert info.tags["entai.registrant"] == "ml-engineer"  # the token's principal
    assert summary["metrics"]["valid_auc"] > 0.6
