"""Benchmark: XGBoost on Ray Train (entai) vs plain ``xgboost.train``, and registry latency.

Both sides train the same data with the same parameters and threads in one run:
1,000,000 rows x 20 features, 100 rounds (``--small``: 100,000 rows, 20 rounds).
entai's time is split into data hand-over, Ray Train fixed overhead (controller,
worker start, checkpoint) and the worker's own DMatrix build and training, so the
summary shows where the time goes. The older hand-over through Ray Data
(``transport="ray_data"``) is measured too. Ray cluster start is reported apart.

Then MLflow: log the model, register (entai's ModelRegistry vs a bare MlflowClient),
set an alias, load by alias.

    .venv/bin/python bench/train.py [--small] [--nthread 1]

The last line is JSON; ``ratio`` = entai wall time / plain xgboost wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_data(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features)
    logit = x @ w * 0.5 + 0.8 * x[:, 0] * x[:, 1] - 1.0
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    names = [f"f{i}" for i in range(features)]
    frame = pd.DataFrame(x, columns=names)
    frame["label"] = y
    cut = int(rows * 0.8)  # rows are in time order: the last 20% validate
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True), names


def plain_xgboost(
    train: pd.DataFrame, valid: pd.DataFrame, names: list[str], params: dict[str, Any], rounds: int
) -> dict[str, float]:
    import xgboost

    start = time.perf_counter()
    dtrain = xgboost.DMatrix(
        train[names].to_numpy(np.float32), label=train["label"], feature_names=names
    )
    dvalid = xgboost.DMatrix(
        valid[names].to_numpy(np.float32), label=valid["label"], feature_names=names
    )
    built = time.perf_counter()
    evals: dict[str, Any] = {}
    xgboost.train(
        params,
        dtrain,
        num_boost_round=rounds,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=evals,
        verbose_eval=False,
    )
    done = time.perf_counter()
    return {
        "total_s": done - start,
        "dmatrix_s": built - start,
        "train_s": done - built,
        "valid_auc": evals["valid"]["auc"][-1],
    }


def entai_train(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    names: list[str],
    params: dict[str, Any],
    rounds: int,
    nthread: int,
    storage: Path,
    transport: str,
) -> dict[str, float]:
    from entai.pipelines.training import train_xgboost

    start = time.perf_counter()
    outcome = train_xgboost(
        train,
        valid,
        feature_columns=names,
        label_column="label",
        params=params,
        num_boost_round=rounds,
        storage_path=storage,
        cpus_per_worker=nthread,
        transport=transport,  # type: ignore[arg-type]
    )
    total = time.perf_counter() - start
    return {"total_s": total, **outcome.timings, "valid_auc": outcome.evals["valid"]["auc"][-1]}


def registry_latency(
    tmp: Path, train: pd.DataFrame, names: list[str], params: dict[str, Any]
) -> dict[str, float]:
    import mlflow.xgboost
    import xgboost
    from mlflow.tracking import MlflowClient

    from entai.actors.models import ModelRegistry
    from entai.pipelines.training import TrainOutcome, log_xgboost_run
    from entai.shared.settings import MlflowSettings

    small = train.head(5_000)
    booster = xgboost.train(params, xgboost.DMatrix(small[names], label=small["label"]), 20)
    settings = MlflowSettings(
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        artifact_root=str(tmp / "artifacts"),
        experiment="bench",
    )
    out: dict[str, float] = {}
    t = time.perf_counter()
    registry = ModelRegistry(settings)
    out["open_store_s"] = time.perf_counter() - t
    evals = {"valid": {"auc": [0.5] * 100, "logloss": [0.6] * 100}}
    t = time.perf_counter()
    logged = log_xgboost_run(
        settings,
        TrainOutcome(booster, evals, tuple(names)),
        params=params,
        metrics={"valid_auc": 0.8},
        training_data=small,
        dataset_name="bench",
        tags={},
        run_name="bench",
        label_column="label",
    )
    out["log_run_and_model_s"] = time.perf_counter() - t
    t = time.perf_counter()
    info = registry.register(
        logged.model_uri,
        "bench",
        registrant="bench",
        run_id=logged.run_id,
        metrics={"valid_auc": 0.8},
        validation_dataset_id="v",
    )
    out["register_s"] = time.perf_counter() - t
    t = time.perf_counter()
    registry.set_alias("bench", "champion", info.version, by="bench", reason="bench")
    out["set_alias_s"] = time.perf_counter() - t
    t = time.perf_counter()
    mlflow.xgboost.load_model("models:/bench@champion")
    out["load_by_alias_s"] = time.perf_counter() - t
    client = MlflowClient(registry_uri=mlflow.get_registry_uri())
    client.create_registered_model("bench-raw")
    t = time.perf_counter()
    mv = client.create_model_version("bench-raw", logged.model_uri, run_id=logged.run_id)
    out["raw_register_s"] = time.perf_counter() - t
    t = time.perf_counter()
    client.set_registered_model_alias("bench-raw", "champion", mv.version)
    out["raw_set_alias_s"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100k rows, 20 rounds")
    parser.add_argument("--nthread", type=int, default=1, help="XGBoost threads on both sides")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows, rounds = (100_000, 20) if args.small else (1_000_000, 100)
    features = 20
    load_before = os.getloadavg()
    train, valid, names = make_data(rows, features, args.seed)
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.1,
        "eval_metric": ["logloss", "auc"],
        "nthread": args.nthread,
        "seed": args.seed,
    }

    import ray

    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    cluster_s = time.perf_counter() - t
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            reference = plain_xgboost(train, valid, names, params, rounds)
            entai = entai_train(
                train, valid, names, params, rounds, args.nthread, tmp / "a", "object_store"
            )
            entai_warm = entai_train(
                train, valid, names, params, rounds, args.nthread, tmp / "b", "object_store"
            )
            ray_data = entai_train(
                train, valid, names, params, rounds, args.nthread, tmp / "c", "ray_data"
            )
            registry = registry_latency(tmp, train, names, params)
    finally:
        ray.shutdown()
    load_after = os.getloadavg()

    ref_s, ent_s = reference["total_s"], entai["total_s"]
    budget = 1.5 * ref_s + 15.0
    print(f"data: {rows:,} rows x {features} features, {rounds} rounds, nthread={args.nthread}")
    print(
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (2 cores, shared)"
    )
    print(f"ray.init (not counted): {cluster_s:.1f}s")
    print(
        f"plain xgboost.train : {ref_s:7.2f}s  (DMatrix {reference['dmatrix_s']:.2f}s, "
        f"train {reference['train_s']:.2f}s)  valid AUC {reference['valid_auc']:.4f}"
    )
    for label, run in (
        ("entai (cold)", entai),
        ("entai (warm)", entai_warm),
        ("via Ray Data", ray_data),
    ):
        print(
            f"{label:20s}: {run['total_s']:7.2f}s  hand-over {run['handover_s']:.2f}s, "
            f"worker DMatrix {run['worker_data_s']:.2f}s, "
            f"worker train {run['worker_train_s']:.2f}s, "
            f"Ray Train fixed {run['fixed_overhead_s']:.2f}s, checkpoint load "
            f"{run['load_checkpoint_s']:.2f}s  valid AUC {run['valid_auc']:.4f}"
        )
    verdict = "within" if ent_s <= budget else "OVER"
    print(
        f"target 1.5 x {ref_s:.1f}s + 15s = {budget:.1f}s: entai {ent_s:.1f}s is {verdict} target"
    )
    print("MLflow (SQLite): " + ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in registry.items()))
    print(
        json.dumps(
            {
                "rows": rows,
                "features": features,
                "rounds": rounds,
                "nthread": args.nthread,
                "reference_s": round(ref_s, 3),
                "entai_s": round(ent_s, 3),
                "entai_warm_s": round(entai_warm["total_s"], 3),
                "ray_data_s": round(ray_data["total_s"], 3),
                "entai_fixed_overhead_s": round(entai["fixed_overhead_s"], 3),
                "target_s": round(budget, 3),
                "within_target": ent_s <= budget,
                "cluster_start_s": round(cluster_s, 3),
                "load_avg": [round(load_before[0], 2), round(load_after[0], 2)],
                "registry_ms": {k: round(v * 1000, 1) for k, v in registry.items()},
                "ratio": round(ent_s / ref_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
