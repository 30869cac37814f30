"""XGBoost training on Ray: one Ray task for one worker, Ray Train (V2) for more.

Two runners train the same loop on the same float32 arrays:

- ``"task"``: one Ray task reserving ``cpus_per_worker`` CPUs. The data shards reach it
  by object ref and the booster comes back as bytes: no controller, no worker group,
  no placement group, no checkpoint directory. For one worker this gives the same
  model as Ray Train without its fixed start and stop (measured in
  ``docs/benchmarks.md``: tens of seconds on a loaded 2-core machine).
- ``"ray_train"``: ``XGBoostTrainer`` (V2 API), for multi-worker (distributed) runs.
  Per-round metrics are not reported to Ray Train: reporting on every round costs a
  round trip to the controller each time and dominated the run time in measurements.
  Rank 0 reports once, with the model checkpoint, when training ends.

``"auto"`` (the default) picks ``"task"`` for one worker and ``"ray_train"`` otherwise.

Data reaches the training process as float32 array shards in the object store by
default: ``ray.data.from_pandas`` plus a streaming Ray Data job per split and a pandas
round-trip on the worker cost seconds of fixed time for data that already sits in
the driver's memory (see ``bench/train.py``).
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from entai.pipelines.xgboost_fit import (
    Evals,
    fit_booster,
    frame_arrays,
    load_xgboost,
    train_task,
)
from entai.shared.core import InvalidInputError

__all__ = [
    "BASELINES",
    "Runner",
    "TrainOutcome",
    "Transport",
    "evaluate_binary",
    "time_split",
    "train_baselines",
    "train_xgboost",
]

log = logging.getLogger(__name__)

Transport = Literal["object_store", "ray_data"]
Runner = Literal["auto", "task", "ray_train"]
"""Where training runs: ``"auto"`` (task for one worker, Ray Train for more), or forced."""

_MODEL_FILE = "model.ubj"
_EVALS_FILE = "evals.json"


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced.

    Attributes:
        booster: The trained model.
        evals: Per-round metric curves, ``{"train": {"auc": [...]}, "valid": {...}}``.
        feature_columns: Input columns, in the order the model expects.
        timings: Seconds per stage: ``handover_s`` (arrays into the object store),
            ``fit_s`` (the task or the Ray Train run, end to end), ``worker_data_s``
            and ``worker_train_s`` (DMatrix build and boosting, measured where the
            training runs), ``fixed_overhead_s`` (``fit_s`` minus the worker's own
            time: scheduling, process start, Ray Train's controller and worker group,
            checkpoint, result transfer) and ``load_model_s`` (the booster from the
            returned bytes or the checkpoint).
        runner: The runner that trained it, ``"task"`` or ``"ray_train"``.
        trained_where_loaded: The task runner only: whether the training ran in the
            worker that had imported xgboost while the driver handed the data over
            (else its start-up included a second import); None for Ray Train.
    """

    booster: Any
    evals: Evals
    feature_columns: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    runner: str = ""
    trained_where_loaded: bool | None = None


def time_split(
    df: pd.DataFrame, *, timestamp_column: str, valid_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows by time: the latest ``valid_fraction`` of distinct times is validation.

    Every validation row is strictly later than every training row, so nothing from
    the validation period can leak into training.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise InvalidInputError(
            f"valid_fraction must be in (0, 1), got {valid_fraction}",
            details={"field": "valid_fraction"},
        )
    if timestamp_column not in df.columns:
        raise InvalidInputError(
            f"training data has no timestamp column {timestamp_column!r}",
            details={"field": timestamp_column},
        )
    times = np.sort(df[timestamp_column].unique())
    if len(times) < 2:
        raise InvalidInputError(
            "a time split needs at least two distinct timestamps",
            details={"field": timestamp_column},
        )
    cut_index = min(max(int(len(times) * (1.0 - valid_fraction)), 1), len(times) - 1)
    cut = times[cut_index]
    is_valid = df[timestamp_column] >= cut
    return df.loc[~is_valid].reset_index(drop=True), df.loc[is_valid].reset_index(drop=True)


def _check_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(
            f"{what} is missing column(s) {missing}", details={"missing": missing}
        )


def _worker_arrays(config: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """This Ray Train worker's shard of ``split`` as (features, labels) arrays."""
    import ray
    import ray.train

    if config["transport"] == "object_store":
        rank = ray.train.get_context().get_world_rank()
        shard: dict[str, np.ndarray] = ray.get(config["shards"][split][rank])
        return shard["x"], shard["y"]
    frame = ray.train.get_dataset_shard(split).materialize().to_pandas()
    return frame_arrays(config, frame)


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on each Ray Train worker: train, then report once (rank 0 with the model)."""
    import ray.train

    booster, evals_result, final = fit_booster(config, lambda split: _worker_arrays(config, split))
    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            booster.save_model(str(Path(tmp) / _MODEL_FILE))
            (Path(tmp) / _EVALS_FILE).write_text(json.dumps(evals_result))
            ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(final)


def _shards(df: pd.DataFrame, features: list[str], label: str, n: int) -> list[Any]:
    """Row-contiguous float32 shards, one per worker, put in the object store."""
    import ray

    x = np.ascontiguousarray(df[features].to_numpy(dtype=np.float32))
    y = df[label].to_numpy(dtype=np.float32)
    bounds = np.linspace(0, len(df), n + 1).astype(np.int64)
    return [ray.put({"x": x[lo:hi], "y": y[lo:hi]}) for lo, hi in itertools.pairwise(bounds)]


def _resolve_runner(runner: Runner, num_workers: int) -> Literal["task", "ray_train"]:
    if runner == "auto":
        return "task" if num_workers == 1 else "ray_train"
    if runner == "task" and num_workers != 1:
        raise InvalidInputError(
            f"runner 'task' trains on one worker, got num_workers={num_workers}; "
            "use runner 'ray_train' or 'auto'",
            details={"field": "runner"},
        )
    if runner not in ("task", "ray_train"):
        raise InvalidInputError(
            f"runner must be 'auto', 'task' or 'ray_train', got {runner!r}",
            details={"field": "runner"},
        )
    return runner


def _check_cpu_left_for_data(reserved: int) -> None:
    """With Ray Data feeding the training, the job must not hold every CPU."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))  # type: ignore[no-untyped-call]
    if reserved >= total:
        raise InvalidInputError(
            f"cpus_per_worker x num_workers = {reserved} holds all {total:g} CPUs of the "
            "cluster; the ray_data transport needs one free for the tasks that feed "
            "training (lower cpus_per_worker or use the object_store transport)",
            details={"field": "cpus_per_worker"},
        )


@dataclass(frozen=True)
class _Fitted:
    booster: Any
    evals: Evals
    worker: dict[str, float]
    fit_s: float
    load_model_s: float
    trained_where_loaded: bool | None = None


def _load_in_worker(*, cpus: int, run_name: str) -> Any:
    """Send the task runner's first task, which imports xgboost in a worker; its ref.

    Sent before the hand-over, so the worker's import (most of a cold run's start-up)
    runs while the driver builds and puts the shards.
    """
    import ray

    return ray.remote(load_xgboost).options(num_cpus=cpus, name=f"{run_name}-load").remote()


def _fit_in_task(
    config: dict[str, Any], inputs: Mapping[str, Any], loaded: Any, *, cpus: int, run_name: str
) -> _Fitted:
    """One Ray task holding ``cpus`` CPUs, after ``loaded``; the booster comes back as bytes."""
    import ray
    import xgboost

    task = ray.remote(train_task).options(num_cpus=cpus, name=run_name)
    started = time.perf_counter()
    raw, evals, final, where_loaded = ray.get(
        task.remote(config, inputs["train"], inputs["valid"], loaded)
    )
    fitted = time.perf_counter()
    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    worker = {k: float(v) for k, v in final.items() if k.startswith("worker_")}
    return _Fitted(
        booster, evals, worker, fitted - started, time.perf_counter() - fitted, where_loaded
    )


def _fit_on_ray_train(
    config: dict[str, Any],
    datasets: dict[str, Any] | None,
    *,
    num_workers: int,
    cpus: int,
    storage_path: str | Path,
    run_name: str,
) -> _Fitted:
    """Ray Train's ``XGBoostTrainer``; rank 0's checkpoint holds the booster."""
    import xgboost
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    trainer = XGBoostTrainer(
        _train_loop_per_worker,
        train_loop_config=config,
        datasets=datasets,
        scaling_config=ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=run_name, storage_path=str(Path(storage_path).resolve())),
    )
    started = time.perf_counter()
    result = trainer.fit()
    fitted = time.perf_counter()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {run_name} finished without a checkpoint")
    with result.checkpoint.as_directory() as path:
        booster = xgboost.Booster()
        booster.load_model(str(Path(path) / _MODEL_FILE))
        evals = json.loads((Path(path) / _EVALS_FILE).read_text())
    worker = {k: float(v) for k, v in (result.metrics or {}).items() if k.startswith("worker_")}
    return _Fitted(booster, evals, worker, fitted - started, time.perf_counter() - fitted)


def train_xgboost(
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    label_column: str,
    params: Mapping[str, Any],
    num_boost_round: int,
    storage_path: str | Path,
    num_workers: int = 1,
    cpus_per_worker: int = 1,
    transport: Transport = "object_store",
    runner: Runner = "auto",
    run_name: str = "entai-train",
) -> TrainOutcome:
    """Train an XGBoost model on Ray: one task for one worker, Ray Train for more.

    Args:
        train_df: Training rows.
        valid_df: Validation rows, later in time than ``train_df``.
        feature_columns: Model inputs, in order.
        label_column: The binary label.
        params: XGBoost parameters; ``nthread`` defaults to ``cpus_per_worker``.
        num_boost_round: Boosting rounds.
        storage_path: Where Ray Train keeps checkpoints (absolute path or URI); the
            task runner writes nothing there.
        num_workers: Training workers (more than one needs Ray Train).
        cpus_per_worker: CPUs each worker reserves (and XGBoost threads it uses).
            With the ``ray_data`` transport the workers must leave a CPU of the
            cluster free for the Ray Data tasks that feed them.
        transport: ``"object_store"`` puts one float32 array shard per worker in the
            object store (no Ray Data job, no pandas on the worker: the fast path for
            frames that fit in memory); ``"ray_data"`` passes Ray Datasets, for data
            that does not.
        runner: ``"task"`` (one Ray task, one worker), ``"ray_train"``
            (``XGBoostTrainer``) or ``"auto"``: the task for one worker, Ray Train
            for more. Both train the same model from the same data and seed.
        run_name: Name of the Ray Train run, or of the task.

    Returns:
        The booster, its per-round evaluation curves, where the time went and the
        runner used.

    Raises:
        InvalidInputError: A missing column, empty data, an unknown transport or
            runner, ``runner="task"`` with several workers, or (``ray_data``) no CPU
            left for the data tasks.
    """
    features = list(feature_columns)
    columns = [*features, label_column]
    _check_columns(train_df, columns, "training data")
    _check_columns(valid_df, columns, "validation data")
    if len(train_df) == 0 or len(valid_df) == 0:
        raise InvalidInputError("training and validation data must both be non-empty")
    if transport not in ("object_store", "ray_data"):
        raise InvalidInputError(
            f"transport must be 'object_store' or 'ray_data', got {transport!r}",
            details={"field": "transport"},
        )
    chosen = _resolve_runner(runner, num_workers)
    full_params = {"nthread": cpus_per_worker, "eval_metric": ["logloss", "auc"], **params}
    started = time.perf_counter()
    config: dict[str, Any] = {
        "features": features,
        "label": label_column,
        "params": full_params,
        "num_boost_round": num_boost_round,
        "transport": transport,
    }
    if transport == "ray_data":
        _check_cpu_left_for_data(num_workers * cpus_per_worker)
    loaded = _load_in_worker(cpus=cpus_per_worker, run_name=run_name) if chosen == "task" else None
    inputs: dict[str, Any] = {}
    if transport == "object_store":
        for split, frame in (("train", train_df), ("valid", valid_df)):
            inputs[split] = _shards(frame, features, label_column, num_workers)
    else:
        import ray.data  # only this transport needs Ray Data (a second of import)

        for split, frame in (("train", train_df), ("valid", valid_df)):
            table = pa.Table.from_pandas(frame[columns], preserve_index=False)
            inputs[split] = ray.data.from_arrow(table)
    handed_over = time.perf_counter()
    log.info(
        "training xgboost with the %s runner",
        chosen,
        extra={
            "runner": chosen,
            "requested_runner": runner,
            "num_workers": num_workers,
            "cpus_per_worker": cpus_per_worker,
            "transport": transport,
        },
    )
    if chosen == "task":
        if transport == "object_store":
            inputs = {split: refs[0] for split, refs in inputs.items()}
        fitted = _fit_in_task(config, inputs, loaded, cpus=cpus_per_worker, run_name=run_name)
    else:
        if transport == "object_store":
            config["shards"] = inputs
        fitted = _fit_on_ray_train(
            config,
            None if transport == "object_store" else inputs,
            num_workers=num_workers,
            cpus=cpus_per_worker,
            storage_path=storage_path,
            run_name=run_name,
        )
    timings = {
        "handover_s": handed_over - started,
        "fit_s": fitted.fit_s,
        **fitted.worker,
        "fixed_overhead_s": fitted.fit_s - sum(fitted.worker.values()),
        "load_model_s": fitted.load_model_s,
    }
    log.info(
        "trained xgboost",
        extra={
            "runner": chosen,
            "rounds": num_boost_round,
            "timings": timings,
            "trained_where_loaded": fitted.trained_where_loaded,
        },
    )
    return TrainOutcome(
        booster=fitted.booster,
        evals=fitted.evals,
        feature_columns=tuple(features),
        timings=timings,
        runner=chosen,
        trained_where_loaded=fitted.trained_where_loaded,
    )


def evaluate_binary(
    labels: np.ndarray | pd.Series,
    scores: np.ndarray | pd.Series,
    *,
    prefix: str = "valid_",
    segments: pd.Series | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """AUC, log loss, Brier score, calibration and per-segment metrics of scores.

    Args:
        labels: 0/1 outcomes.
        scores: Predicted probabilities.
        prefix: Prefix of the metric names (``valid_auc``...).
        segments: A segment label per row (e.g. category); metrics per segment.
        bins: Equal-width probability bins of the calibration table.

    Returns:
        ``{"metrics": {...}, "calibration": [...], "segments": {...}}``; ``metrics``
        includes ``<prefix>ece``, the expected calibration error.
    """
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    if len(np.unique(y)) < 2:
        raise InvalidInputError(
            "evaluation needs both classes among the labels", details={"field": "labels"}
        )
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    table = (
        pd.DataFrame({"bin": which, "p": p, "y": y})
        .groupby("bin")
        .agg(mean_pred=("p", "mean"), frac_pos=("y", "mean"), count=("y", "size"))
        .reset_index()
    )
    ece = float((table["count"] * (table["mean_pred"] - table["frac_pos"]).abs()).sum() / len(y))
    metrics = {
        f"{prefix}auc": float(roc_auc_score(y, p)),
        f"{prefix}logloss": float(log_loss(y, p, labels=[0, 1])),
        f"{prefix}brier": float(brier_score_loss(y, p)),
        f"{prefix}ece": ece,
    }
    per_segment: dict[str, dict[str, float]] = {}
    if segments is not None:
        frame = pd.DataFrame({"s": np.asarray(segments), "y": y, "p": p})
        for segment, group in frame.groupby("s", sort=True):
            values = {"rows": float(len(group)), "label_rate": float(group["y"].mean())}
            if group["y"].nunique() == 2:
                values["auc"] = float(roc_auc_score(group["y"], group["p"]))
                values["logloss"] = float(log_loss(group["y"], group["p"], labels=[0, 1]))
            per_segment[str(segment)] = values
    return {
        "metrics": metrics,
        "calibration": table.to_dict(orient="records"),
        "segments": per_segment,
    }


BASELINES = ("logistic_regression", "hist_gradient_boosting")


def train_baselines(
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    label_column: str,
    names: Sequence[str] = ("logistic_regression",),
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Fit scikit-learn baselines; return each one's validation metrics.

    Args:
        names: Which of :data:`BASELINES` to fit.
        seed: Random state of the estimators.

    Returns:
        ``{name: {"valid_auc": ..., "valid_logloss": ..., ...}}``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise InvalidInputError(
            f"unknown baseline(s) {unknown}; choose from {BASELINES}",
            details={"field": "baselines", "unknown": unknown},
        )
    features = list(feature_columns)
    x_train = train_df[features].to_numpy(dtype=np.float64)
    x_valid = valid_df[features].to_numpy(dtype=np.float64)
    estimators: dict[str, Any] = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "hist_gradient_boosting": HistGradientBoostingClassifier(random_state=seed),
    }
    out: dict[str, dict[str, float]] = {}
    for name in names:
        model = estimators[name].fit(np.nan_to_num(x_train), train_df[label_column])
        scores = model.predict_proba(np.nan_to_num(x_valid))[:, 1]
        out[name] = evaluate_binary(valid_df[label_column], scores)["metrics"]
    return out
