"""Hyper-parameter search for XGBoost with Ray Tune and ASHA, tracked in MLflow.

Each trial is a Tune function trainable holding ``cpus_per_trial`` CPUs; it reads the
training arrays from the object store (put once, shared by all trials) and reports
its validation metrics every ``report_every`` rounds through an XGBoost callback,
which is what ASHA decides on. Trials are logged to MLflow afterwards from the
driver, one child run per trial under one parent run: writing from the trials
themselves would put concurrent writers on a SQLite store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from entai.actors.backends import configure_mlflow
from entai.pipelines.training._config import SearchDimension, TuneConfig
from entai.shared.core import InvalidInputError
from entai.shared.settings import MlflowSettings

__all__ = ["TrialRecord", "TuneOutcome", "log_trials", "tune_xgboost"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial.

    Attributes:
        trial_id: Tune's id.
        params: The sampled parameters.
        history: Reported metrics per round: ``{"rounds": [...], "valid_auc": [...]}``.
        status: ``completed``, ``early_stopped`` (by ASHA) or ``error``.
    """

    trial_id: str
    params: dict[str, Any]
    history: dict[str, list[float]]
    status: str

    def best(self, metric: str, mode: str) -> tuple[float, int]:
        """The best value of ``metric`` and the round count it was reached at."""
        values = np.asarray(self.history.get(metric, []), dtype=np.float64)
        if values.size == 0:
            return (float("-inf") if mode == "max" else float("inf"), 0)
        at = int(np.argmax(values) if mode == "max" else np.argmin(values))
        return float(values[at]), int(self.history["rounds"][at])


@dataclass(frozen=True)
class TuneOutcome:
    """The trials of a search and the winner."""

    trials: tuple[TrialRecord, ...]
    best: TrialRecord
    best_value: float
    best_rounds: int
    metric: str
    seconds: float


def _space(dimensions: Mapping[str, SearchDimension]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for name, dim in dimensions.items():
        if dim.type == "choice":
            space[name] = tune.choice(list(dim.values))
            continue
        low, high = float(dim.low or 0.0), float(dim.high or 0.0)
        if dim.type == "randint":
            space[name] = tune.randint(int(low), int(high))
        elif dim.type == "loguniform":
            space[name] = tune.loguniform(low, high)
        else:
            space[name] = tune.uniform(low, high)
    return space


def _trial(config: dict[str, Any], *, data: dict[str, Any], fixed: dict[str, Any]) -> None:
    """One Tune trial: train XGBoost, report every ``report_every`` rounds."""
    import xgboost
    from ray import tune

    features = fixed["features"]
    dtrain = xgboost.DMatrix(data["x_train"], label=data["y_train"], feature_names=features)
    dvalid = xgboost.DMatrix(data["x_valid"], label=data["y_valid"], feature_names=features)
    rounds, every = fixed["num_boost_round"], fixed["report_every"]

    class Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            done = epoch + 1
            if done % every == 0 or done == rounds:
                valid = evals_log["valid"]
                tune.report(
                    {f"valid_{m}": float(v[-1]) for m, v in valid.items()} | {"rounds": done}
                )
            return False

    params = {**fixed["params"], **config}
    xgboost.train(
        params,
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "valid")],
        verbose_eval=False,
        callbacks=[Report()],
    )


def _record(result: Any, metric: str, rounds: int) -> TrialRecord:
    frame = result.metrics_dataframe
    history: dict[str, list[float]] = {}
    if frame is not None and len(frame):
        cols = [c for c in frame.columns if c == "rounds" or c.startswith("valid_")]
        history = {c: [float(v) for v in frame[c].to_numpy()] for c in cols}
    last = int(history["rounds"][-1]) if history.get("rounds") else 0
    status = "error" if result.error else ("completed" if last >= rounds else "early_stopped")
    trial_id = str((result.metrics or {}).get("trial_id", Path(str(result.path)).name))
    return TrialRecord(
        trial_id=trial_id, params=dict(result.config), history=history, status=status
    )


def tune_xgboost(
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    label_column: str,
    config: TuneConfig,
    storage_path: str | Path,
    run_name: str = "entai-tune",
) -> TuneOutcome:
    """Search XGBoost parameters with ASHA; return every trial and the best one.

    Args:
        train_df: Training rows.
        valid_df: Validation rows (later in time).
        feature_columns: Model inputs, in order.
        label_column: The binary label.
        config: Search space, budget, base parameters and rounds.
        storage_path: Where Tune keeps its experiment state.
        run_name: Tune experiment name.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    features = list(feature_columns)
    if not config.metric.startswith("valid_"):
        raise InvalidInputError(
            f"metric must be a validation metric (valid_*), got {config.metric!r}",
            details={"field": "metric"},
        )
    data = {
        "x_train": train_df[features].to_numpy(dtype=np.float32),
        "y_train": train_df[label_column].to_numpy(dtype=np.float32),
        "x_valid": valid_df[features].to_numpy(dtype=np.float32),
        "y_valid": valid_df[label_column].to_numpy(dtype=np.float32),
    }
    metric_name = config.metric.removeprefix("valid_")
    fixed = {
        "features": features,
        "num_boost_round": config.num_boost_round,
        "report_every": config.report_every,
        "params": {
            **config.params,
            "nthread": config.cpus_per_trial,
            "eval_metric": sorted({"auc", "logloss", metric_name}),
        },
    }
    scheduler = ASHAScheduler(
        time_attr="rounds",
        max_t=config.num_boost_round,
        grace_period=min(config.grace_period, config.num_boost_round),
        reduction_factor=config.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data, fixed=fixed), {"cpu": config.cpus_per_trial}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=_space(config.search_space),
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            scheduler=scheduler,
            num_samples=config.num_samples,
            search_alg=BasicVariantGenerator(
                random_state=config.seed, max_concurrent=config.max_concurrent
            ),
        ),
        run_config=tune.RunConfig(
            name=run_name, storage_path=str(Path(storage_path).resolve()), verbose=0
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - started
    trials = tuple(
        _record(r, config.metric, config.num_boost_round)
        for r in (grid[i] for i in range(len(grid)))
    )
    scored = [(t.best(config.metric, config.mode), t) for t in trials if t.status != "error"]
    if not scored:
        raise RuntimeError(f"every tuning trial of {run_name} failed: {grid.errors}")
    sign = 1.0 if config.mode == "max" else -1.0
    (value, rounds), best = max(scored, key=lambda item: sign * item[0][0])
    log.info("tuning finished", extra={"trials": len(trials), "best": value, "seconds": seconds})
    return TuneOutcome(
        trials=trials,
        best=best,
        best_value=value,
        best_rounds=max(rounds, 1),
        metric=config.metric,
        seconds=seconds,
    )


def log_trials(
    settings: MlflowSettings, outcome: TuneOutcome, *, run_name: str, tags: Mapping[str, str]
) -> str:
    """Log a parent run for the search and one child run per trial; return the parent id."""
    from mlflow.entities import Metric, Param, RunTag

    client = configure_mlflow(settings)
    experiment_id = client.get_experiment_by_name(settings.experiment).experiment_id
    parent = client.create_run(
        experiment_id, run_name=run_name, tags={**tags, "entai.kind": "tuning"}
    )
    parent_id: str = parent.info.run_id
    now = int(time.time() * 1000)
    for trial in outcome.trials:
        child = client.create_run(
            experiment_id,
            run_name=f"{run_name}/{trial.trial_id}",
            tags={"mlflow.parentRunId": parent_id, "entai.kind": "trial"},
        )
        steps = trial.history.get("rounds", [])
        metrics = [
            Metric(name, value, now, int(step))
            for name, values in trial.history.items()
            if name != "rounds"
            for step, value in zip(steps, values, strict=True)
        ]
        client.log_batch(
            child.info.run_id,
            metrics=metrics[:1000],
            params=[Param(k, str(v)) for k, v in trial.params.items()],
            tags=[RunTag("entai.trial_status", trial.status)],
        )
        client.set_terminated(
            child.info.run_id, "FAILED" if trial.status == "error" else "FINISHED"
        )
    best_params = [Param(f"best_{k}", str(v)) for k, v in outcome.best.params.items()]
    client.log_batch(
        parent_id,
        metrics=[
            Metric(f"best_{outcome.metric}", outcome.best_value, now, 0),
            Metric("best_rounds", float(outcome.best_rounds), now, 0),
            Metric("tuning_seconds", outcome.seconds, now, 0),
        ],
        params=best_params,
        tags=[RunTag("entai.best_trial", outcome.best.trial_id)],
    )
    client.set_terminated(parent_id)
    return parent_id
