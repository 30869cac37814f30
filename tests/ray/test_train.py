"""Training on Ray: near-oracle AUC, the same model from the single-worker task and from
Ray Train, no leakage through the time split, and the whole ``entai train`` path
(PIT join -> train -> evaluate -> MLflow -> registry)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from governed import Governed
from sklearn.metrics import roc_auc_score

from entai.pipelines.training import evaluate_binary, time_split, train_xgboost
from entai.shared.core import InvalidInputError

FEATURES = [f"x{i}" for i in range(5)]
PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "seed": 0}


def synthetic(rows: int = 30_000, seed: int = 0) -> pd.DataFrame:
    """Rows over 60 days with a known label probability (the oracle)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 2] * x[:, 3] + 0.5 * np.abs(x[:, 4]) - 1.0
    oracle = 1.0 / (1.0 + np.exp(-logit))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.integers(0, 60, rows)), unit="D"
    )
    frame["label"] = (rng.random(rows) < oracle).astype(np.int64)
    frame["oracle"] = oracle
    return frame


def local_valid_auc(train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> float:
    """The same model fitted in this process: for properties of the split, not of Ray Train."""
    import xgboost as xgb

    booster = xgb.train(
        PARAMS, xgb.DMatrix(train[features], label=train["label"]), num_boost_round=150
    )
    return float(roc_auc_score(valid["label"], booster.inplace_predict(valid[features])))


def test_time_split_puts_every_validation_row_after_training() -> None:
    frame = synthetic(2_000)
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.25)
    assert train["event_timestamp"].max() < valid["event_timestamp"].min()
    assert len(train) + len(valid) == len(frame)
    with pytest.raises(InvalidInputError, match="valid_fraction"):
        time_split(frame, timestamp_column="event_timestamp", valid_fraction=1.0)


def test_future_only_signal_does_not_raise_validation_auc() -> None:
    """A column that equals the label only in the validation period must not help.

    The property is the split's, so the three fits run in this process (three Ray Train
    runs cost two minutes of the suite and prove nothing more).
    """
    frame = synthetic(seed=1)
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.2)
    cut = valid["event_timestamp"].min()
    rng = np.random.default_rng(2)
    noise = rng.random(len(frame))
    future = frame["event_timestamp"] >= cut
    frame["leak"] = np.where(future, frame["label"], noise)
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.2)
    with_leak = local_valid_auc(train, valid, [*FEATURES, "leak"])
    without = local_valid_auc(train, valid, FEATURES)
    oracle = float(roc_auc_score(valid["label"], valid["oracle"]))
    assert with_leak - without < 0.01, (with_leak, without)
    assert with_leak <= oracle + 0.01
    # the same signal through a random (leaky) split is caught: AUC jumps far past the oracle
    shuffled = frame.sample(frac=1.0, random_state=0)
    cut_at = int(len(shuffled) * 0.8)
    leaky = local_valid_auc(shuffled.iloc[:cut_at], shuffled.iloc[cut_at:], [*FEATURES, "leak"])
    assert leaky > oracle + 0.05


def _train(train: pd.DataFrame, valid: pd.DataFrame, path: Path, **kwargs: Any) -> Any:
    return train_xgboost(
        train,
        valid,
        feature_columns=FEATURES,
        label_column="label",
        params=PARAMS,
        num_boost_round=150,
        storage_path=path,
        **kwargs,
    )


def test_task_and_ray_train_train_the_same_model_close_to_the_oracle(
    ray_cluster: Any, tmp_path: Path
) -> None:
    """One worker: the default runner (a Ray task) gives Ray Train's model, either transport."""
    frame = synthetic()
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.2)
    task = _train(train, valid, tmp_path / "task")
    ray_train = _train(train, valid, tmp_path / "ray_train", runner="ray_train")
    via_ray_data = _train(train, valid, tmp_path / "ray_data", transport="ray_data")
    assert (task.runner, ray_train.runner, via_ray_data.runner) == ("task", "ray_train", "task")
    assert not (tmp_path / "task").exists()  # no checkpoint round trip on the task runner
    # the task trained in the worker that imported xgboost during the hand-over
    assert (task.trained_where_loaded, via_ray_data.trained_where_loaded) == (True, True)
    assert ray_train.trained_where_loaded is None
    scores = task.booster.inplace_predict(valid[FEATURES])
    for other in (ray_train, via_ray_data):
        np.testing.assert_allclose(
            other.booster.inplace_predict(valid[FEATURES]), scores, rtol=0, atol=1e-6
        )
        assert other.evals == task.evals
    keys = {"handover_s", "fit_s", "worker_data_s", "worker_train_s", "fixed_overhead_s"}
    assert keys | {"load_model_s"} <= task.timings.keys() & ray_train.timings.keys()
    worker = task.timings["worker_data_s"] + task.timings["worker_train_s"]
    assert task.timings["fixed_overhead_s"] == pytest.approx(task.timings["fit_s"] - worker)
    auc = float(roc_auc_score(valid["label"], scores))
    oracle = float(roc_auc_score(valid["label"], valid["oracle"]))
    assert oracle - auc < 0.02, (auc, oracle)


def test_several_workers_train_on_ray_train(ray_cluster: Any, tmp_path: Path) -> None:
    frame = synthetic(10_000)
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.2)
    outcome = _train(train, valid, tmp_path, num_workers=2)
    assert outcome.runner == "ray_train"
    scores = outcome.booster.inplace_predict(valid[FEATURES])
    oracle = float(roc_auc_score(valid["label"], valid["oracle"]))
    assert oracle - float(roc_auc_score(valid["label"], scores)) < 0.03
    assert len(outcome.evals["valid"]["auc"]) == 150


def test_runner_and_cpu_choices_are_checked(ray_cluster: Any, tmp_path: Path) -> None:
    frame = synthetic(2_000)
    train, valid = time_split(frame, timestamp_column="event_timestamp", valid_fraction=0.2)
    with pytest.raises(InvalidInputError, match="runner 'task' trains on one worker") as info:
        _train(train, valid, tmp_path, runner="task", num_workers=2)
    assert info.value.details["field"] == "runner"
    with pytest.raises(InvalidInputError, match="runner must be") as info:
        _train(train, valid, tmp_path, runner="spark")
    assert info.value.details["field"] == "runner"
    # the test cluster has 2 CPUs: a job holding both would starve its own Ray Data feed
    with pytest.raises(InvalidInputError, match="needs one free") as info:
        _train(train, valid, tmp_path, transport="ray_data", cpus_per_worker=2)
    assert info.value.details["field"] == "cpus_per_worker"


def test_config_rejects_the_task_runner_with_several_workers() -> None:
    from pydantic import ValidationError

    from entai.pipelines.training import TrainConfig

    base = {"model_name": "m", "feature_service": "f", "definitions_module": "d"}
    assert TrainConfig(**base, label_source="l.parquet").runner == "auto"
    with pytest.raises(ValidationError, match="runner 'task' trains on one worker"):
        TrainConfig(**base, label_source="l.parquet", runner="task", num_workers=2)


def test_evaluation_reports_calibration_and_segments() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    y = (rng.random(20_000) < p).astype(int)
    seg = np.where(rng.random(20_000) < 0.5, "a", "b")
    out = evaluate_binary(y, p, segments=pd.Series(seg))
    assert out["metrics"]["valid_ece"] < 0.02  # calibrated by construction
    skewed = evaluate_binary(y, p**3)
    assert skewed["metrics"]["valid_ece"] > 0.1
    assert skewed["metrics"]["valid_auc"] == pytest.approx(out["metrics"]["valid_auc"])
    assert set(out["segments"]) == {"a", "b"}
    assert sum(c["count"] for c in out["calibration"]) == 20_000


@pytest.fixture(scope="module")
def demo_lake(
    tmp_path_factory: pytest.TempPathFactory, demo_training_data: Callable[..., Path]
) -> tuple[Any, Path]:
    """Demo events -> feature views in an offline store; labels as a Parquet file."""
    from entai.shared.settings import EntaiSettings

    home = tmp_path_factory.mktemp("train-home")
    labels = demo_training_data(home, n_users=800, days=50)
    return EntaiSettings(home=home).resolved(), labels


def test_run_training_end_to_end(ray_cluster: Any, demo_lake: tuple[Any, Path]) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from entai.actors.core import LocalService
    from entai.pipelines.training import TrainConfig, run_training

    settings, labels = demo_lake
    config_file = labels.parent / "train.yaml"
    config_file.write_text(
        f"""
model_name: propensity
feature_service: purchase_propensity
definitions_module: entai.demo.features
label_source: {labels}
segment_column: category
oracle_column: oracle
num_boost_round: 60
baselines: [logistic_regression]
card:
  intended_use: Rank users for a weekly category email.
  limitations: [Synthetic data only.]
  owners: [ml-team]
"""
    )
    governed = Governed(settings)
    registry = governed.registry()
    summary = run_training(
        settings,
        TrainConfig.from_yaml(config_file),
        registry=LocalService(registry),
        token=governed.token("ml-engineer"),
    )
    metrics = summary["metrics"]
    assert metrics["oracle_gap_auc"] < 0.05, metrics  # features estimate latent rates
    assert metrics["valid_auc"] > metrics["baseline_logistic_regression_valid_auc"] - 0.02
    assert {"valid_logloss", "valid_ece", "valid_brier"} <= metrics.keys()

    info = registry.resolve("propensity", "challenger")
    assert info.version == summary["version"]
    assert info.tags["entai.registrant"] == "ml-engineer"  # the token's principal
    assert info.tags["entai.feature_service"] == "purchase_propensity"
    assert info.tags["entai.valid_dataset_id"] == summary["valid_dataset_id"]
    assert len(info.tags["entai.definitions_hash"]) >= 12
    card = registry.card("propensity", info.version)
    assert card.complete, card.missing()
    assert set(card.segment_metrics) == {
        "electronics",
        "books",
        "fashion",
        "home",
        "sports",
        "toys",
        "beauty",
        "grocery",
    }

    # the global explanation: TreeSHAP on the validation rows, in the card and the run
    explanation = card.explanations
    assert explanation is not None and explanation.method == "tree_shap"
    assert explanation.rows == min(summary["rows"]["valid"], 20_000)
    assert len(explanation.top) == 5 and len(explanation.importance) == 12
    ranked = list(explanation.importance.values())
    assert ranked == sorted(ranked, reverse=True) and ranked[0] > 0
    assert all(sum(b.rows for b in f.dependence) == explanation.rows for f in explanation.top)
    assert "## Top features" in card.to_markdown()
    logged = mlflow.artifacts.load_dict(
        f"runs:/{summary['run_id']}/explanations/global_importance.json"
    )
    assert logged["importance"] == explanation.importance

    uri = settings.mlflow.tracking_uri.get_secret_value()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(summary["run_id"])
    assert run.data.params["runner"] == "task"  # the default for one worker
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == [summary["dataset_id"]]
    assert len(client.get_metric_history(run.info.run_id, "valid_auc")) >= 60
    model = mlflow.models.get_model_info(summary["model_uri"])
    assert model.signature is not None
    # No input example: MLflow would keep raw training rows that no erasure reaches.
    assert model.saved_input_example_info is None
